#!/usr/bin/env bash
# Write the site drop-in of edge-qwq.service from the site's configuration:
#   write-dropin.sh [--config FILE [--save-config]] [--source URI] [--http HOST:PORT] [--allow ADDR]...
#                   [--device DEV]... [--token-file FILE | --no-token] [--args 'OPTIONS'] [--root DIR | --stdout]
#                   [--apply]
# Options given here replace the same settings from --config (--allow and --device: the whole list);
# --save-config writes the result back to FILE (mode 0600: it holds the camera source). The drop-in,
# ROOT/etc/systemd/system/edge-qwq.service.d/10-site.conf, only sets the service's options and adds to the unit's
# allow lists; the camera source, which may hold a user and password, goes into ROOT/etc/edge-qwq/site.env
# (0600 root:root, the drop-in's EnvironmentFile=), never into the drop-in, whose Environment= any local user
# can read with systemctl show:
#   --source URI        camera: csi://0, v4l2:///dev/video0, rtsp://ADDR/..., http://ADDR/... (default csi://0);
#                       a network camera given by address is allowed through the firewall by itself
#   --http HOST:PORT    HTTP address (default 127.0.0.1:8080); any other than the loopback needs a token
#   --allow ADDR        an address or network the service may talk to (HTTP clients, a camera given by name,
#                       an MQTT broker): 192.168.10.0/24, 10.0.0.5, fd00::/64; names are not accepted
#   --device DEV        another device node it may open, e.g. /dev/gpiochip0 (a reject line) or char-gpiochip
#   --token-file FILE   HTTP token file, passed as --http-token-file (install.sh --token writes one)
#   --no-token          serve HTTP beyond the loopback without a token (not recommended)
#   --args 'OPTIONS'    more `edge-qwq run` options, split at spaces (no spaces inside one option)
#   --root DIR          write under DIR instead of / (for tests and images); --stdout: print it instead
#   --apply             then systemctl daemon-reload and restart the service if it runs
set -euo pipefail

SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
die() { printf 'write-dropin.sh: %s\n' "$*" >&2; exit 2; }
warn() { printf 'write-dropin.sh: warning: %s\n' "$*" >&2; }

SOURCE=csi://0 HTTP=127.0.0.1:8080 TOKEN_FILE="" NO_TOKEN=no ARGS=""
ALLOW=() DEVICE=()
CONFIG="" SAVE=0 ROOT=/ STDOUT=0 APPLY=0
O_SOURCE="" O_HTTP="" O_TOKEN_FILE="" O_NO_TOKEN="" O_ARGS="" O_ALLOW=0 O_DEVICE=0 O_ALLOWS=() O_DEVICES=()
SET_ARGS=0
ENV_FILE=/etc/edge-qwq/site.env
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) need "$@"; CONFIG="$2"; shift 2 ;;
    --save-config) SAVE=1; shift ;;
    --source) need "$@"; O_SOURCE="$2"; shift 2 ;;
    --http) need "$@"; O_HTTP="$2"; shift 2 ;;
    --allow) need "$@"; O_ALLOW=1; O_ALLOWS+=("$2"); shift 2 ;;
    --device) need "$@"; O_DEVICE=1; O_DEVICES+=("$2"); shift 2 ;;
    --token-file) need "$@"; O_TOKEN_FILE="$2"; O_NO_TOKEN=no; shift 2 ;;
    --no-token) O_NO_TOKEN=yes; shift ;;
    --args) need "$@"; O_ARGS="$2"; SET_ARGS=1; shift 2 ;;
    --root) need "$@"; ROOT="$2"; shift 2 ;;
    --stdout) STDOUT=1; shift ;;
    --apply) APPLY=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$SAVE" -eq 0 ] || [ -n "$CONFIG" ] || die "--save-config needs --config FILE"

# The configuration file: KEY=VALUE lines (SOURCE, HTTP, ALLOW, DEVICE, TOKEN_FILE, NO_TOKEN, ARGS), '#' comments;
# ALLOW and DEVICE may repeat or list several values. It is parsed, never run.
if [ -n "$CONFIG" ] && [ -e "$CONFIG" ]; then
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line#"${line%%[![:space:]]*}"}"; line="${line%"${line##*[![:space:]]}"}"
    case "$line" in ''|'#'*) continue ;; esac
    case "$line" in *=*) ;; *) die "$CONFIG:$n: expected KEY=VALUE, got: $line" ;; esac
    key="${line%%=*}" value="${line#*=}"
    case "$value" in \"*\") value="${value#\"}"; value="${value%\"}" ;; esac
    case "$key" in
      SOURCE) SOURCE="$value" ;;
      HTTP) HTTP="$value" ;;
      TOKEN_FILE) TOKEN_FILE="$value" ;;
      NO_TOKEN) NO_TOKEN="$value" ;;
      ARGS) ARGS="$value" ;;
      ALLOW) read -r -a words <<<"$value"; ALLOW+=(${words[@]+"${words[@]}"}) ;;
      DEVICE) read -r -a words <<<"$value"; DEVICE+=(${words[@]+"${words[@]}"}) ;;
      *) die "$CONFIG:$n: unknown setting $key (SOURCE, HTTP, ALLOW, DEVICE, TOKEN_FILE, NO_TOKEN, ARGS)" ;;
    esac
  done <"$CONFIG"
elif [ -n "$CONFIG" ] && [ "$SAVE" -eq 0 ]; then
  die "$CONFIG: no such file"
fi
[ -z "$O_SOURCE" ] || SOURCE="$O_SOURCE"
[ -z "$O_HTTP" ] || HTTP="$O_HTTP"
[ -z "$O_TOKEN_FILE" ] || TOKEN_FILE="$O_TOKEN_FILE"
[ -z "$O_NO_TOKEN" ] || NO_TOKEN="$O_NO_TOKEN"
[ "$O_NO_TOKEN" != yes ] || TOKEN_FILE=""
[ "$SET_ARGS" -eq 0 ] || ARGS="$O_ARGS"
[ "$O_ALLOW" -eq 0 ] || ALLOW=("${O_ALLOWS[@]}")
[ "$O_DEVICE" -eq 0 ] || DEVICE=("${O_DEVICES[@]}")

# --- checks: a bad value must fail here, not be dropped by systemd with a warning in the journal
no_space() {  # OPTION VALUE [SHOWN]: SHOWN replaces ': VALUE' in the message
  case "$2" in *[[:space:]\"\\]*|'') die "$1 must be one word without quotes or backslashes${3-: '$2'}" ;; esac
}
no_space --source "$SOURCE" ""  # never print it: it may hold a password
no_space --http "$HTTP"
case "$NO_TOKEN" in yes|no) ;; *) die "NO_TOKEN must be yes or no, not '$NO_TOKEN'" ;; esac
case "$ARGS" in *[\"\\]*|*$'\n'*) die "--args must not hold quotes, backslashes or newlines" ;; esac
if [ -n "$TOKEN_FILE" ]; then
  no_space --token-file "$TOKEN_FILE"
  case "$TOKEN_FILE" in /*) ;; *) die "--token-file must be an absolute path: $TOKEN_FILE" ;; esac
  [ -e "${ROOT%/}$TOKEN_FILE" ] || warn "$TOKEN_FILE does not exist yet: the service will not start without it"
fi

is_ipv4() {  # ADDR or ADDR/PREFIX
  local a="${1%%/*}" p="" o
  case "$1" in */*) p="${1#*/}" ;; esac
  [[ "$a" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
  IFS=. read -r -a o <<<"$a"
  for x in "${o[@]}"; do [ $((10#$x)) -le 255 ] || return 1; done
  [ -z "$p" ] || { [[ "$p" =~ ^[0-9]{1,2}$ ]] && [ $((10#$p)) -le 32 ]; }
}
is_ipv6() {
  local a="${1%%/*}" p=""
  case "$1" in */*) p="${1#*/}" ;; esac
  [[ "$a" =~ ^[0-9A-Fa-f:.]+$ && "$a" == *:* ]] || return 1
  [ -z "$p" ] || { [[ "$p" =~ ^[0-9]{1,3}$ ]] && [ $((10#$p)) -le 128 ]; }
}
check_allow() {
  case "$1" in
    any|0.0.0.0/0|::/0) die "--allow $1 would lift the service's address policy; give the networks it talks to" ;;
    localhost|link-local|multicast) return 0 ;;
  esac
  is_ipv4 "$1" || is_ipv6 "$1" \
    || die "--allow $1: give an address or network (10.0.0.5, 192.168.10.0/24, fd00::/64), not a name"
}
for a in ${ALLOW[@]+"${ALLOW[@]}"}; do check_allow "$a"; done
for d in ${DEVICE[@]+"${DEVICE[@]}"}; do
  [[ "$d" =~ ^(/dev/[A-Za-z0-9._+/-]+|char-[A-Za-z0-9._+-]+|block-[A-Za-z0-9._+-]+)$ && "$d" != *..* ]] \
    || die "--device $d: give a device node (/dev/gpiochip0) or a device class (char-gpiochip)"
  case "$d" in
    block-*|/dev/mem|/dev/kmem|/dev/port|char-mem) die "--device $d: the service has no use for it" ;;
  esac
done

# A network camera given by address: let it through; by name: say what to do.
SITE_ALLOW=(${ALLOW[@]+"${ALLOW[@]}"})  # what the configuration says, without the camera
host=""
case "$SOURCE" in
  rtsp://*|rtsps://*|http://*|https://*)
    host="${SOURCE#*://}"; host="${host%%/*}"; host="${host##*@}"
    case "$host" in \[*\]*) host="${host#\[}"; host="${host%%\]*}" ;; *) host="${host%%:*}" ;; esac ;;
esac
if [ -n "$host" ]; then
  if is_ipv4 "$host" || is_ipv6 "$host"; then
    ALLOW=("$host" ${ALLOW[@]+"${ALLOW[@]}"})
  elif [ "$host" != localhost ]; then
    warn "the camera $host is a name: allow its address with --allow (the unit blocks every other address)"
  fi
fi

http_host="${HTTP%:*}"; http_port="${HTTP##*:}"
[[ "$HTTP" == *:* && "$http_port" =~ ^[0-9]{1,5}$ && -n "$http_host" ]] || die "--http $HTTP: give HOST:PORT"
case "$http_host" in
  127.*|localhost|::1|\[::1\]) loopback=1 ;;
  *) loopback=0 ;;
esac
if [ "$loopback" -eq 0 ]; then
  if [ -z "$TOKEN_FILE" ] && [ "$NO_TOKEN" != yes ]; then
    die "--http $HTTP serves beyond this device: give --token-file FILE (install.sh --token makes one), or --no-token"
  fi
  [ ${#ALLOW[@]} -gt 0 ] || warn "--http $HTTP: only this device can reach it until its clients are allowed (--allow)"
fi

# --- the drop-in
esc() { local v="${1//%/%%}"; printf '%s' "$v"; }  # systemd expands % specifiers in Environment=
run_args="$ARGS"
[ -z "$TOKEN_FILE" ] || run_args="--http-token-file $TOKEN_FILE${run_args:+ $run_args}"
render() {
  echo "# Written by write-dropin.sh${CONFIG:+ from $CONFIG}: change the configuration and run it again"
  echo "# (jetson/README.md). It sets the service's options and adds to the unit's allow lists; the"
  echo "# hardening itself stays in edge-qwq.service. The camera source is in $ENV_FILE (root only):"
  echo "# it may hold a password, and Environment= is readable by every local user (systemctl show)."
  echo "[Service]"
  echo "EnvironmentFile=$ENV_FILE"
  echo "Environment=\"EDGE_QWQ_HTTP=$(esc "$HTTP")\""
  echo "Environment=\"EDGE_QWQ_ARGS=$(esc "$run_args")\""
  local seen=" " a d
  for a in ${ALLOW[@]+"${ALLOW[@]}"}; do
    case "$seen" in *" $a "*) continue ;; esac
    seen="$seen$a "; echo "IPAddressAllow=$a"
  done
  for d in ${DEVICE[@]+"${DEVICE[@]}"}; do echo "DeviceAllow=$d rw"; done
}

# The environment file: systemd reads it as root before it drops to the service's user; no % specifiers in it,
# and an unquoted value is taken as it is but for backslashes (refused) and a leading quote (escaped here).
render_env() {
  echo "# Written by write-dropin.sh: the camera source of edge-qwq.service (its drop-in's EnvironmentFile=)."
  case "$SOURCE" in \'*) echo "EDGE_QWQ_SOURCE=\\$SOURCE" ;; *) echo "EDGE_QWQ_SOURCE=$SOURCE" ;; esac
}

save_config() {
  echo "# edge-qwq site configuration; write-dropin.sh turns it into edge-qwq.service.d/10-site.conf. After a change:"
  echo "#   sudo $SELF --config $CONFIG --apply"
  echo "# SOURCE      the camera (csi://0, v4l2:///dev/video0, rtsp://ADDR/...)"
  echo "# HTTP        HOST:PORT; beyond the loopback it needs TOKEN_FILE (or NO_TOKEN=yes)"
  echo "# ALLOW       an address or network the service may talk to: its HTTP clients, an MQTT broker (one a line)"
  echo "# DEVICE      another device node it may open: /dev/gpiochip0 for a reject line (one a line)"
  echo "# ARGS        more \`edge-qwq run\` options"
  echo "SOURCE=$SOURCE"
  echo "HTTP=$HTTP"
  echo "TOKEN_FILE=$TOKEN_FILE"
  echo "NO_TOKEN=$NO_TOKEN"
  echo "ARGS=$ARGS"
  local a d
  for a in ${SITE_ALLOW[@]+"${SITE_ALLOW[@]}"}; do echo "ALLOW=$a"; done
  for d in ${DEVICE[@]+"${DEVICE[@]}"}; do echo "DEVICE=$d"; done
}

write_atomic() {  # FILE MODE, content on stdin
  local dir tmp
  dir="$(dirname "$1")"
  mkdir -p "$dir"
  tmp="$(mktemp "$dir/.$(basename "$1").XXXXXX")"
  cat >"$tmp"
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}

if [ "$STDOUT" -eq 1 ]; then
  render
else
  out="${ROOT%/}/etc/systemd/system/edge-qwq.service.d/10-site.conf"
  env="${ROOT%/}$ENV_FILE"
  render_env | write_atomic "$env" 0600  # before the drop-in that names it
  echo "wrote $env"
  render | write_atomic "$out" 0644
  echo "wrote $out"
fi
if [ "$SAVE" -eq 1 ]; then
  save_config | write_atomic "$CONFIG" 0600
  echo "wrote $CONFIG"
fi
if [ "$APPLY" -eq 1 ]; then
  systemctl daemon-reload
  systemctl try-restart edge-qwq.service
fi
