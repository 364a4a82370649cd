#!/usr/bin/env bash
# Write the site drop-in of edge-qwq.service from the site's configuration:
#   write-dropin.sh [--config FILE [--save-config]] [--source URI] [--http HOST:PORT] [--allow ADDR]...
#                   [--device DEV]... [--token-file FILE | --no-token] [--args 'OPTIONS']
#                   [--mqtt URL [--device-name NAME] [--mqtt-user USER] [--mqtt-password-file FILE]
#                    [--mqtt-tls-ca FILE]] [--reject SPEC [--reject-delay-ms MS] [--reject-pulse-ms MS]]
#                   [--root DIR | --stdout] [--apply]
# Options given here replace the same settings from --config (--allow and --device: the whole list; an empty
# value, e.g. --mqtt '', removes a setting); --save-config writes the result back to FILE (mode 0600: it holds
# the camera source). The drop-in, ROOT/etc/systemd/system/edge-qwq.service.d/10-site.conf, only sets the
# service's options and adds to the unit's allow lists; the camera source, which may hold a user and password,
# and the outputs (MQTT, reject) go into ROOT/etc/edge-qwq/site.env (0600 root:root, the drop-in's
# EnvironmentFile=: EDGE_QWQ_SOURCE, EDGE_QWQ_OUTPUTS), never into the drop-in, whose Environment= any local
# user can read with systemctl show:
#   --source URI        camera: csi://0, v4l2:///dev/video0, rtsp://ADDR/..., http://ADDR/... (default csi://0);
#                       a network camera given by address is allowed through the firewall by itself
#   --http HOST:PORT    HTTP address (default 127.0.0.1:8080); any other than the loopback needs a token
#   --allow ADDR        an address or network the service may talk to (HTTP clients, a camera, broker or PLC
#                       gateway given by name): 192.168.10.0/24, 10.0.0.5, fd00::/64; names are not accepted
#   --device DEV        another device node it may open, e.g. /dev/gpiochip1 or char-gpiochip
#   --token-file FILE   HTTP token file, passed as --http-token-file (install.sh --token writes one)
#   --no-token          serve HTTP beyond the loopback without a token (not recommended)
#   --args 'OPTIONS'    more `edge-qwq run` options, split at spaces (no spaces inside one option)
#   --mqtt URL          publish decisions, events and status to the plant broker: mqtt://HOST[:PORT]/PREFIX or
#                       mqtts://... (TLS); no user or password in it. A broker given by address is allowed
#                       through the firewall by itself
#   --device-name NAME  this device's topic level (<prefix>/<NAME>/decisions; default: the host name)
#   --mqtt-user USER    broker user name
#   --mqtt-password-file FILE  a file with the broker password (root:edge-qwq 0640), e.g. /etc/edge-qwq/mqtt.pw
#   --mqtt-tls-ca FILE  the broker's CA certificate (needs mqtts://)
#   --reject SPEC       the reject output: gpio:CHIP:LINE[:active_low] (CHIP gpiochip0, /dev/gpiochip0 or 0;
#                       LINE an offset or a line name such as PQ.05), http(s)://HOST[:PORT]/PATH (a PLC
#                       gateway, a JSON POST a reject) or fake-gpio:FILE (a dry run: the edges go to FILE,
#                       under /var/lib/edge-qwq). A gpio chip is added to DeviceAllow= with the group gpio;
#                       a gateway given by address is allowed through the firewall by itself
#   --reject-delay-ms MS   from the frame's capture to the reject: camera-to-ejector travel (default 400)
#   --reject-pulse-ms MS   how long the output is driven (default 50)
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
# The outputs: MQTT to the plant broker and the reject signal (empty: none; the delay and pulse: run's default).
MQTT="" DEVICE_NAME="" MQTT_USER="" MQTT_PASSWORD_FILE="" MQTT_TLS_CA="" REJECT="" REJECT_DELAY_MS="" REJECT_PULSE_MS=""
OUTPUT_KEYS=(MQTT DEVICE_NAME MQTT_USER MQTT_PASSWORD_FILE MQTT_TLS_CA REJECT REJECT_DELAY_MS REJECT_PULSE_MS)
O_KEYS=() O_VALUES=()  # output settings given as options: they replace the configuration's
output() { O_KEYS+=("$1"); O_VALUES+=("$2"); }
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
    --mqtt) need "$@"; output MQTT "$2"; shift 2 ;;
    --device-name) need "$@"; output DEVICE_NAME "$2"; shift 2 ;;
    --mqtt-user) need "$@"; output MQTT_USER "$2"; shift 2 ;;
    --mqtt-password-file) need "$@"; output MQTT_PASSWORD_FILE "$2"; shift 2 ;;
    --mqtt-tls-ca) need "$@"; output MQTT_TLS_CA "$2"; shift 2 ;;
    --reject) need "$@"; output REJECT "$2"; shift 2 ;;
    --reject-delay-ms) need "$@"; output REJECT_DELAY_MS "$2"; shift 2 ;;
    --reject-pulse-ms) need "$@"; output REJECT_PULSE_MS "$2"; shift 2 ;;
    --root) need "$@"; ROOT="$2"; shift 2 ;;
    --stdout) STDOUT=1; shift ;;
    --apply) APPLY=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$SAVE" -eq 0 ] || [ -n "$CONFIG" ] || die "--save-config needs --config FILE"

# The configuration file: KEY=VALUE lines (SOURCE, HTTP, ALLOW, DEVICE, TOKEN_FILE, NO_TOKEN, ARGS and the outputs:
# MQTT, DEVICE_NAME, MQTT_USER, MQTT_PASSWORD_FILE, MQTT_TLS_CA, REJECT, REJECT_DELAY_MS, REJECT_PULSE_MS),
# '#' comments; ALLOW and DEVICE may repeat or list several values. It is parsed, never run.
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
      MQTT|DEVICE_NAME|MQTT_USER|MQTT_PASSWORD_FILE|MQTT_TLS_CA|REJECT|REJECT_DELAY_MS|REJECT_PULSE_MS)
        printf -v "$key" '%s' "$value" ;;
      *) die "$CONFIG:$n: unknown setting $key (SOURCE, HTTP, ALLOW, DEVICE, TOKEN_FILE, NO_TOKEN, ARGS, ${OUTPUT_KEYS[*]})" ;;
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
for ((i = 0; i < ${#O_KEYS[@]}; i++)); do printf -v "${O_KEYS[$i]}" '%s' "${O_VALUES[$i]}"; done

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

url_host() {  # SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/...] -> HOST (an IPv6 address without its brackets)
  local h="${1#*://}"
  h="${h%%/*}"; h="${h##*@}"
  case "$h" in \[*\]*) h="${h#\[}"; h="${h%%\]*}" ;; *) h="${h%%:*}" ;; esac
  printf '%s' "$h"
}
# A network peer (camera, broker, PLC gateway) given by address: let it through; by name: say what to do.
SITE_ALLOW=(${ALLOW[@]+"${ALLOW[@]}"})  # what the configuration says, without the peers' addresses
PEER_ALLOW=()  # the broker's and the gateway's addresses, after the configured ones
allow_peer() {  # WHAT HOST [first]
  if is_ipv4 "$2" || is_ipv6 "$2"; then
    if [ "${3-}" = first ]; then ALLOW=("$2" ${ALLOW[@]+"${ALLOW[@]}"}); else PEER_ALLOW+=("$2"); fi
  elif [ "$2" != localhost ]; then
    warn "the $1 $2 is a name: allow its address with --allow (the unit blocks every other address)"
  fi
}
case "$SOURCE" in
  rtsp://*|rtsps://*|http://*|https://*) host="$(url_host "$SOURCE")"; [ -z "$host" ] || allow_peer camera "$host" first ;;
esac

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

# --- the outputs: MQTT and the reject signal. A URL is never printed (it might hold a password).
setting() { local o="${1,,}"; printf '%s (--%s)' "$1" "${o//_/-}"; }  # MQTT_USER -> MQTT_USER (--mqtt-user)
bad() { die "$(setting "$1") $2"; }
one_word() {  # KEY [show]: one word without quotes or backslashes; a URL is not shown
  case "${!1}" in *[[:space:]\"\\\$]*) bad "$1" "must be one word without quotes, backslashes or \$${2:+: '${!1}'}" ;; esac
}
abs_file() {  # KEY: an absolute path the service can see (ProtectHome=yes hides /home, /root and /run/user)
  one_word "$1" show
  case "${!1}" in
    /home/*|/root/*|/run/user/*) bad "$1" "${!1}: the service cannot see /home, /root or /run/user; put it in /etc/edge-qwq" ;;
    /*) ;;
    *) bad "$1" "must be an absolute path: ${!1}" ;;
  esac
  [ -e "${ROOT%/}${!1}" ] || warn "${!1} ($1) does not exist yet: the service will not start without it"
}
ms() {  # KEY MAX: milliseconds, 1 to MAX
  [ -z "${!1}" ] && return 0
  [[ "${!1}" =~ ^[0-9]{1,5}$ ]] && [ $((10#${!1})) -ge 1 ] && [ $((10#${!1})) -le "$2" ] \
    || bad "$1" "must be a whole number of milliseconds from 1 to $2, not '${!1}'"
}
OUTPUTS=()
if [ -n "$MQTT" ]; then
  one_word MQTT
  case "$MQTT" in
    mqtt://*|mqtts://*) ;;
    *) bad MQTT "must start with mqtt:// or mqtts:// (e.g. mqtts://10.20.0.5:8883/edge-qwq/line3)" ;;
  esac
  authority="${MQTT#*://}"; authority="${authority%%/*}"
  case "$authority" in
    *:*@*) bad MQTT "holds a password: it is refused in the URL; put it in a file named by MQTT_PASSWORD_FILE (--mqtt-password-file) and the user in MQTT_USER" ;;
    *@*) bad MQTT "holds a user: give it in MQTT_USER (--mqtt-user), not in the URL" ;;
  esac
  case "$MQTT" in *[#+?]*) bad MQTT "must not hold '+', '#' or '?': expected mqtt[s]://HOST[:PORT]/PREFIX" ;; esac
  mqtt_host="$(url_host "$MQTT")" mqtt_port="${authority##*\]}"
  case "$mqtt_port" in *:*) mqtt_port="${mqtt_port##*:}" ;; *) mqtt_port="" ;; esac
  [ -n "$mqtt_host" ] || bad MQTT "has no broker host: expected mqtt[s]://HOST[:PORT]/PREFIX"
  [[ -z "$mqtt_port" || "$mqtt_port" =~ ^[0-9]{1,5}$ ]] || bad MQTT "has a bad port: expected mqtt[s]://HOST[:PORT]/PREFIX"
  OUTPUTS+=(--mqtt "$MQTT")
  if [ -n "$DEVICE_NAME" ]; then
    [[ "$DEVICE_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
      || bad DEVICE_NAME "must be letters, digits, '.', '_' or '-' (one topic level), not '$DEVICE_NAME'"
    OUTPUTS+=(--device-name "$DEVICE_NAME")
  fi
  if [ -n "$MQTT_USER" ]; then one_word MQTT_USER show; OUTPUTS+=(--mqtt-user "$MQTT_USER"); fi
  if [ -n "$MQTT_PASSWORD_FILE" ]; then
    [ -n "$MQTT_USER" ] || bad MQTT_PASSWORD_FILE "needs MQTT_USER (--mqtt-user)"
    abs_file MQTT_PASSWORD_FILE; OUTPUTS+=(--mqtt-password-file "$MQTT_PASSWORD_FILE")
  fi
  if [ -n "$MQTT_TLS_CA" ]; then
    case "$MQTT" in mqtts://*) ;; *) bad MQTT_TLS_CA "needs an mqtts:// broker URL in MQTT (--mqtt)" ;; esac
    abs_file MQTT_TLS_CA; OUTPUTS+=(--mqtt-tls-ca "$MQTT_TLS_CA")
  fi
  allow_peer "MQTT broker" "$mqtt_host"
else
  for k in DEVICE_NAME MQTT_USER MQTT_PASSWORD_FILE MQTT_TLS_CA; do
    [ -z "${!k}" ] || bad "$k" "needs MQTT (--mqtt), the broker URL"
  done
fi
GPIO_CHIP=""
case "$REJECT" in
  '') for k in REJECT_DELAY_MS REJECT_PULSE_MS; do [ -z "${!k}" ] || bad "$k" "needs REJECT (--reject)"; done ;;
  gpio:*)
    one_word REJECT show
    IFS=: read -r chip line flag extra <<<"${REJECT#gpio:}"
    [[ "$line" =~ ^[A-Za-z0-9_.-]+$ && "$REJECT" != *: && ( -z "$flag" || "$flag" == active_low ) && -z "$extra" \
       && "$chip" =~ ^(/dev/gpiochip|gpiochip)?([0-9]{1,4})$ ]] \
      || bad REJECT "'$REJECT': expected gpio:CHIP:LINE[:active_low] (gpio:gpiochip0:PQ.05, gpio:0:105:active_low)"
    GPIO_CHIP="/dev/gpiochip$((10#${BASH_REMATCH[2]}))" ;;
  fake-gpio:*)
    one_word REJECT show
    file="${REJECT#fake-gpio:}"
    case "$file" in
      ''|*..*) bad REJECT "'$REJECT': expected fake-gpio:FILE" ;;
      /var/lib/edge-qwq/*|[!/]*) ;;
      *) bad REJECT "'$REJECT': the service may only write under /var/lib/edge-qwq (a relative FILE is there)" ;;
    esac ;;
  http://*|https://*)
    one_word REJECT
    authority="${REJECT#*://}"; authority="${authority%%/*}"
    case "$authority" in *@*) bad REJECT "holds a user or password: the PLC gateway URL must not carry credentials" ;; esac
    gw_host="$(url_host "$REJECT")"
    [[ -n "$gw_host" && "${REJECT#*://}" == */* && "$authority" =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$ ]] \
      || bad REJECT "must be http(s)://HOST[:PORT]/PATH for a PLC gateway"
    allow_peer "PLC gateway" "$gw_host" ;;
  *) bad REJECT "must be gpio:CHIP:LINE[:active_low], http(s)://HOST[:PORT]/PATH or fake-gpio:FILE" ;;
esac
ms REJECT_DELAY_MS 60000; ms REJECT_PULSE_MS 10000  # run takes a pulse of 10 s at most
if [ -n "$REJECT" ]; then
  OUTPUTS+=(--reject "$REJECT")
  [ -z "$REJECT_DELAY_MS" ] || OUTPUTS+=(--reject-delay-ms "$((10#$REJECT_DELAY_MS))")
  [ -z "$REJECT_PULSE_MS" ] || OUTPUTS+=(--reject-pulse-ms "$((10#$REJECT_PULSE_MS))")
fi
ALLOW+=(${PEER_ALLOW[@]+"${PEER_ALLOW[@]}"})

# --- the drop-in
esc() { local v="${1//%/%%}"; printf '%s' "$v"; }  # systemd expands % specifiers in Environment=
run_args="$ARGS"
[ -z "$TOKEN_FILE" ] || run_args="--http-token-file $TOKEN_FILE${run_args:+ $run_args}"
render() {
  echo "# Written by write-dropin.sh${CONFIG:+ from $CONFIG}: change the configuration and run it again"
  echo "# (jetson/README.md). It sets the service's options and adds to the unit's allow lists; the"
  echo "# hardening itself stays in edge-qwq.service. The camera source and the outputs (MQTT, reject) are in"
  echo "# $ENV_FILE (root only): a URL may hold a password, and Environment= is readable by every local"
  echo "# user (systemctl show)."
  echo "[Service]"
  echo "EnvironmentFile=$ENV_FILE"
  echo "Environment=\"EDGE_QWQ_HTTP=$(esc "$HTTP")\""
  echo "Environment=\"EDGE_QWQ_ARGS=$(esc "$run_args")\""
  local seen=" " a d
  for a in ${ALLOW[@]+"${ALLOW[@]}"}; do
    case "$seen" in *" $a "*) continue ;; esac
    seen="$seen$a "; echo "IPAddressAllow=$a"
  done
  seen=" "
  for d in ${DEVICE[@]+"${DEVICE[@]}"} $GPIO_CHIP; do
    case "$seen" in *" $d "*) continue ;; esac
    seen="$seen$d "; echo "DeviceAllow=$d rw"
  done
  # a gpio reject: the chip's node belongs to the group gpio (install.sh's udev rule)
  [ -z "$GPIO_CHIP" ] || echo "SupplementaryGroups=gpio"
  # a reject output: its worker process asks for real-time priority (SCHED_FIFO 10) so that it fires on time
  # while inference keeps every core busy (measured: p99 0.1 ms of error with it, 3.5 ms at nice -10);
  # the unit's RestrictRealtime=yes would refuse it, LimitRTPRIO= lets the unprivileged user take up to 10
  if [ -n "$REJECT" ]; then
    echo "RestrictRealtime=no"
    echo "LimitRTPRIO=10"
  fi
}

# The environment file: systemd reads it as root before it drops to the service's user; no % specifiers in it,
# and an unquoted value is taken as it is but for backslashes (refused) and a leading quote (escaped here).
render_env() {
  echo "# Written by write-dropin.sh: the camera source and the outputs of edge-qwq.service (its drop-in's"
  echo "# EnvironmentFile=). EDGE_QWQ_OUTPUTS is expanded on ExecStart, split at spaces."
  case "$SOURCE" in \'*) echo "EDGE_QWQ_SOURCE=\\$SOURCE" ;; *) echo "EDGE_QWQ_SOURCE=$SOURCE" ;; esac
  [ ${#OUTPUTS[@]} -eq 0 ] || echo "EDGE_QWQ_OUTPUTS=${OUTPUTS[*]}"
}

save_config() {
  echo "# edge-qwq site configuration; write-dropin.sh turns it into edge-qwq.service.d/10-site.conf. After a change:"
  echo "#   sudo $SELF --config $CONFIG --apply"
  echo "# SOURCE      the camera (csi://0, v4l2:///dev/video0, rtsp://ADDR/...)"
  echo "# HTTP        HOST:PORT; beyond the loopback it needs TOKEN_FILE (or NO_TOKEN=yes)"
  echo "# ALLOW       an address or network the service may talk to: its HTTP clients, an MQTT broker (one a line)"
  echo "# DEVICE      another device node it may open: /dev/gpiochip0 for a reject line (one a line)"
  echo "# ARGS        more \`edge-qwq run\` options"
  echo "# MQTT        the plant broker: mqtt://HOST[:PORT]/PREFIX or mqtts://... (no user or password in it);"
  echo "#             DEVICE_NAME its topic level, MQTT_USER, MQTT_PASSWORD_FILE (root:edge-qwq 0640), MQTT_TLS_CA"
  echo "# REJECT      gpio:CHIP:LINE[:active_low], http(s)://HOST[:PORT]/PATH (PLC gateway) or fake-gpio:FILE;"
  echo "#             REJECT_DELAY_MS camera-to-ejector travel (empty: 400), REJECT_PULSE_MS (empty: 50)"
  echo "SOURCE=$SOURCE"
  echo "HTTP=$HTTP"
  echo "TOKEN_FILE=$TOKEN_FILE"
  echo "NO_TOKEN=$NO_TOKEN"
  echo "ARGS=$ARGS"
  local a d
  for a in ${SITE_ALLOW[@]+"${SITE_ALLOW[@]}"}; do echo "ALLOW=$a"; done
  for d in ${DEVICE[@]+"${DEVICE[@]}"}; do echo "DEVICE=$d"; done
  local k
  for k in "${OUTPUT_KEYS[@]}"; do echo "$k=${!k}"; done
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
