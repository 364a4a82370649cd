#!/usr/bin/env bash
# Install edge-qwq on a Jetson Orin with JetPack 6.0 or newer (L4T R36), run from a checkout of the repository:
#   sudo jetson/install.sh [--prefix /opt/edge-qwq] [--bundle DIR] [--no-packages] [--no-service] [--dry-run]
#                          [--source URI] [--http HOST:PORT] [--allow ADDR]... [--device DEV]...
#                          [--token | --no-token] [--args 'OPTIONS']
#                          [--mqtt URL] [--device-name NAME] [--mqtt-user USER] [--mqtt-password-file FILE]
#                          [--mqtt-tls-ca FILE] [--reject SPEC] [--reject-delay-ms MS] [--reject-pulse-ms MS]
# 1. packages: a virtualenv in PREFIX/venv that sees JetPack's TensorRT Python bindings, with pycuda and
#    edge-qwq (--no-packages: keep the installed ones);
# 2. the group gpio (groupadd -f -r gpio) and the udev rule /etc/udev/rules.d/60-edge-qwq-gpio.rules that gives
#    it the GPIO chips (/dev/gpiochip*, 0660) for a reject output; the system user edge-qwq (groups video,
#    gpio and those of the --device nodes) and its state folder /var/lib/edge-qwq;
# 3. --bundle DIR: installs that bundle (from edge-qwq build) into /var/lib/edge-qwq as the user;
# 4. --token: a random HTTP token in /etc/edge-qwq/http-token (root:edge-qwq 0640), kept if it is there;
# 5. the hardened unit edge-qwq.service and its site drop-in, written by write-dropin.sh from
#    /etc/edge-qwq/site.conf (0600); the site options here (see write-dropin.sh --help) replace those settings
#    there, or make the file; the camera source and the outputs (--mqtt ..., --reject ...) go into
#    /etc/edge-qwq/site.env (0600 root:root), not into the drop-in; then enables the service and restarts it
#    if it runs.
# --dry-run prints the commands and files and changes nothing. Safe to run again (it updates).
set -euo pipefail

PREFIX=/opt/edge-qwq
SERVICE=1 PACKAGES=1 DRY=0 TOKEN=0 BUNDLE=""
SITE_OPTS=()
USER_NAME=edge-qwq
STATE=/var/lib/edge-qwq
ETC=/etc/edge-qwq
UNIT_NAME=edge-qwq.service
DEVICES=()
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) need "$@"; PREFIX="$2"; shift 2 ;;
    --bundle) need "$@"; BUNDLE="$2"; shift 2 ;;
    --no-service) SERVICE=0; shift ;;
    --no-packages) PACKAGES=0; shift ;;
    --dry-run) DRY=1; shift ;;
    --token) TOKEN=1; shift ;;
    --no-token) SITE_OPTS+=(--no-token); shift ;;
    --device) need "$@"; DEVICES+=("$2"); SITE_OPTS+=("$1" "$2"); shift 2 ;;
    --source|--http|--allow|--args|--mqtt|--device-name|--mqtt-user|--mqtt-password-file|--mqtt-tls-ca|--reject\
    |--reject-delay-ms|--reject-pulse-ms) need "$@"; SITE_OPTS+=("$1" "$2"); shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$PREFIX/venv"
EDGE_QWQ="$VENV/bin/edge-qwq"
say() { printf '\n== %s\n' "$*"; }
# run CMD...: runs it, or prints it in a dry run
run() {
  if [ "$DRY" -eq 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
# put FILE MODE OWNER [WHAT]: writes stdin to FILE (atomically); a dry run prints WHAT, or else the content
put() {
  if [ "$DRY" -eq 1 ]; then
    printf '+ write %s (%s %s)' "$1" "$2" "$3"
    if [ $# -ge 4 ]; then printf ': %s\n' "$4"; cat >/dev/null; else printf ':\n'; sed 's/^/    /'; fi
  else
    local tmp; tmp="$(mktemp "$(dirname "$1")/.$(basename "$1").XXXXXX")"
    cat >"$tmp"; chown "$3" "$tmp"; chmod "$2" "$tmp"; mv -f "$tmp" "$1"
  fi
}
[ -z "$BUNDLE" ] || [ -d "$BUNDLE" ] || die "--bundle $BUNDLE: no such folder"
case " ${SITE_OPTS[*]-} " in *" --no-token "*) [ "$TOKEN" -eq 0 ] || die "--token or --no-token, not both" ;; esac
[ "$SERVICE" -eq 1 ] || { [ -z "$BUNDLE" ] && [ "$TOKEN" -eq 0 ] && [ ${#SITE_OPTS[@]} -eq 0 ]; } \
  || die "--no-service goes without --bundle, --token and the site options (they are for the service)"

# JetPack 6.0 (L4T R36, TensorRT 8.6, Python 3.10) or newer. JetPack 5 (R35) cannot run edge-qwq: Python 3.8,
# an ONNX parser without LayerNormalization, a TensorRT 8.5 that breaks on NumPy >= 1.24.
# EDGE_QWQ_TEGRA_RELEASE: another release file (tests); a dry run checks it only where it exists.
TEGRA_RELEASE="${EDGE_QWQ_TEGRA_RELEASE:-/etc/nv_tegra_release}"
check_jetpack() {
  L4T="$(head -n1 "$TEGRA_RELEASE")"
  case "$L4T" in
    "# R36 "*|"# R3"[7-9]" "*|"# R[4-9]"[0-9]" "*) echo "L4T: $L4T" ;;
    "# R35 "*|"# R3"[0-4]" "*|"# R2"*) die "JetPack 5 or older (L4T $(printf '%s' "$L4T" | cut -d' ' -f2)) is not supported: edge-qwq needs JetPack 6.0 or newer (L4T R36: Python 3.10, TensorRT 8.6+); reflash the device with JetPack 6" ;;
    *) die "unsupported L4T release: $L4T (JetPack 6.0 or newer expected)" ;;
  esac
}
if [ "$DRY" -eq 1 ]; then
  echo "dry run: nothing is changed; the root check is skipped"
  [ ! -r "$TEGRA_RELEASE" ] || check_jetpack
else
  [ -r "$TEGRA_RELEASE" ] || die "$TEGRA_RELEASE is missing: this is not a Jetson with JetPack"
  check_jetpack
  [ "$(id -u)" -eq 0 ] || die "run it with sudo (it installs packages, a user and the service)"
fi

if [ "$PACKAGES" -eq 1 ]; then
  say "system packages (TensorRT Python bindings, build tools for pycuda)"
  run apt-get update
  # python3-libgpiod: the reject output on a GPIO line; gpiod: gpiodetect, gpioinfo, gpioset to check its wiring
  run apt-get install -y python3-venv python3-dev python3-pip build-essential python3-libnvinfer python3-libgpiod gpiod
  export CUDA_ROOT=/usr/local/cuda PATH="/usr/local/cuda/bin:$PATH"
  [ "$DRY" -eq 1 ] || [ -x /usr/local/cuda/bin/nvcc ] \
    || die "CUDA toolkit not found in /usr/local/cuda: install it with 'sudo apt-get install nvidia-jetpack'"

  say "virtualenv in $VENV (sees JetPack's tensorrt)"
  run mkdir -p "$PREFIX"
  run python3 -m venv --system-site-packages "$VENV"
  run "$VENV/bin/pip" install --upgrade pip wheel
  run "$VENV/bin/python" -c "import tensorrt; print('TensorRT', tensorrt.__version__)" \
    || die "the virtualenv cannot import tensorrt; check that python3-libnvinfer is installed"

  say "pycuda, polygraphy and edge-qwq"
  run "$VENV/bin/pip" install pycuda "polygraphy>=0.49"
  # Not the [jetson] extra: its 'tensorrt' would come from PyPI; JetPack's own bindings are the ones to use.
  run "$VENV/bin/pip" install "$REPO"
  run "$VENV/bin/python" -c 'import pycuda.autoprimaryctx
from edge_runtime.fingerprint import detect
print("device:", detect().describe())'
  run ln -sf "$EDGE_QWQ" /usr/local/bin/edge-qwq
else
  [ "$DRY" -eq 1 ] || [ -x "$EDGE_QWQ" ] || die "--no-packages: $EDGE_QWQ is not installed; run it without --no-packages first"
fi

if [ "$SERVICE" -eq 0 ]; then
  say "done (no service)"
  exit 0
fi

say "group gpio and its udev rule, user $USER_NAME and $STATE"
# The GPIO chips of a reject output: a system group gpio (JetPack's Jetson.GPIO rules may have made it already)
# owns /dev/gpiochip*, so the service opens them through SupplementaryGroups=gpio without root.
run groupadd -f -r gpio
GPIO_RULE=/etc/udev/rules.d/60-edge-qwq-gpio.rules
printf '%s\n' '# edge-qwq (jetson/install.sh): the GPIO character devices belong to the group gpio, for a reject output' \
  'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' | put "$GPIO_RULE" 0644 root:root
# (a system without a running udev, an image being built, takes the rule at its next boot)
run udevadm control --reload-rules || echo "warning: udev did not reload its rules; they apply at the next boot"
run udevadm trigger --subsystem-match=gpio --action=change || true
# Groups: the cameras (video), the GPIO chips (gpio), and whatever group owns a --device node.
groups=video,gpio
for d in ${DEVICES[@]+"${DEVICES[@]}"}; do
  case "$d" in /dev/*) [ -e "$d" ] || continue ;; *) continue ;; esac
  g="$(stat -L -c %G "$d")"
  case ",$groups,root," in *",$g,"*) ;; *) groups="$groups,$g" ;; esac
done
if id -u "$USER_NAME" >/dev/null 2>&1; then
  run usermod --append --groups "$groups" "$USER_NAME"
else
  run useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
    --groups "$groups" "$USER_NAME"
fi
run install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$STATE"

if [ -n "$BUNDLE" ]; then
  say "bundle $BUNDLE -> $STATE (as $USER_NAME)"
  # The user may not read the technician's folder: install from a copy it owns.
  if [ "$DRY" -eq 1 ]; then stage=/var/tmp/edge-qwq-bundle.XXXXXX; else
    stage="$(mktemp -d /var/tmp/edge-qwq-bundle.XXXXXX)"; trap 'rm -rf "$stage"' EXIT
  fi
  run cp -a "$BUNDLE/." "$stage/"
  run chown -R "$USER_NAME:$USER_NAME" "$stage"
  run runuser -u "$USER_NAME" -- "$EDGE_QWQ" install "$stage" --root "$STATE"
  run rm -rf "$stage"
fi

run install -d -m 0755 "$ETC"
if [ "$TOKEN" -eq 1 ]; then
  say "HTTP token $ETC/http-token"
  if [ -s "$ETC/http-token" ]; then
    echo "kept the token that is there"
  else
    # 256 random bits, URL-safe; only root writes it, the service reads it through its group
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))' | put "$ETC/http-token" 0640 "root:$USER_NAME" "a random token"
  fi
  SITE_OPTS+=(--token-file "$ETC/http-token")
fi

say "systemd unit $UNIT_NAME and its site drop-in"
run install -m 0755 "$REPO/jetson/write-dropin.sh" "$PREFIX/write-dropin.sh"
run install -m 0644 "$REPO/jetson/README.md" "$PREFIX/README.md"  # the unit's Documentation=
# The unit names the default prefix; another one is put in its ExecStart.
sed "s#/opt/edge-qwq/venv/bin/edge-qwq#$EDGE_QWQ#" "$REPO/jetson/$UNIT_NAME" \
  | put "/etc/systemd/system/$UNIT_NAME" 0644 root:root "jetson/$UNIT_NAME, ExecStart=$EDGE_QWQ run ..."
SITE="$ETC/site.conf"
if [ "$DRY" -eq 1 ]; then
  cfg=(); [ ! -e "$SITE" ] || cfg=(--config "$SITE")
  # A URL may hold a user and password: the printed command shows it without them (write-dropin.sh refuses
  # them in --mqtt and --reject, but only after this line).
  shown=() prev=""
  for o in ${SITE_OPTS[@]+"${SITE_OPTS[@]}"}; do
    case "$prev:$o" in --source:*://*@*|--mqtt:*://*@*|--reject:*://*@*) o="${o%%://*}://***@${o##*@}" ;; esac
    shown+=("$o"); prev="$o"
  done
  echo "+ $PREFIX/write-dropin.sh --config $SITE${shown[*]+ ${shown[*]}} would write:"
  bash "$REPO/jetson/write-dropin.sh" ${cfg[@]+"${cfg[@]}"} ${SITE_OPTS[@]+"${SITE_OPTS[@]}"} --stdout | sed 's/^/    /'
  echo "+ write $ETC/site.env (0600 root:root): the camera source and the outputs (EDGE_QWQ_SOURCE, EDGE_QWQ_OUTPUTS), not shown"
elif [ ${#SITE_OPTS[@]} -gt 0 ] || [ ! -e "$SITE" ]; then
  "$PREFIX/write-dropin.sh" --config "$SITE" --save-config ${SITE_OPTS[@]+"${SITE_OPTS[@]}"}
else
  chmod 0600 "$SITE"  # it holds the camera source; an older install left it 0644
  "$PREFIX/write-dropin.sh" --config "$SITE"
fi
if [ "$DRY" -eq 0 ] && command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "/etc/systemd/system/$UNIT_NAME" || echo "warning: systemd-analyze verify complained (above)"
fi
run systemctl daemon-reload
run systemctl enable "$UNIT_NAME"
run systemctl try-restart "$UNIT_NAME"

say "done"
echo "start it:          sudo systemctl start edge-qwq"
echo "its settings:      $SITE (then: sudo $PREFIX/write-dropin.sh --config $SITE --apply)"
echo "its sandbox:       systemd-analyze security edge-qwq"
[ -n "$BUNDLE" ] || echo "install a bundle:  sudo jetson/install.sh --no-packages --bundle <bundle>"
echo "build the engines: edge-qwq build --target orin --bundle <bundle>"
echo "check the device:  jetson/run-device-tests.sh"
