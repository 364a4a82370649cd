#!/usr/bin/env bash
# Install edge-qwq on a Jetson Orin with JetPack 6 (L4T R36), run from a checkout of the repository:
#   sudo jetson/install.sh [--prefix /opt/edge-qwq] [--no-service]
# Makes a virtualenv that sees JetPack's TensorRT Python bindings (--system-site-packages), adds pycuda and
# edge-qwq, and installs the systemd unit when the repository has one. Safe to run again (it updates).
set -euo pipefail

PREFIX=/opt/edge-qwq
SERVICE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --no-service) SERVICE=0; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$PREFIX/venv"
say() { printf '\n== %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run it with sudo (it installs packages and the service)"
[ -r /etc/nv_tegra_release ] || die "/etc/nv_tegra_release is missing: this is not a Jetson with JetPack"
L4T="$(head -n1 /etc/nv_tegra_release)"
case "$L4T" in
  "# R36 "*) ;;
  "# R35 "*) echo "warning: JetPack 5 (L4T R35) detected; this script targets JetPack 6. INT4 stages need JetPack 6.1+." ;;
  *) die "unsupported L4T release: $L4T (JetPack 6 expected)" ;;
esac
echo "L4T: $L4T"

say "system packages (TensorRT Python bindings, build tools for pycuda)"
apt-get update
apt-get install -y python3-venv python3-dev python3-pip build-essential python3-libnvinfer
export CUDA_ROOT=/usr/local/cuda PATH="/usr/local/cuda/bin:$PATH"
[ -x /usr/local/cuda/bin/nvcc ] || die "CUDA toolkit not found in /usr/local/cuda: install it with 'sudo apt-get install nvidia-jetpack'"

say "virtualenv in $VENV (sees JetPack's tensorrt)"
mkdir -p "$PREFIX"
python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --upgrade pip wheel
"$VENV/bin/python" -c "import tensorrt; print('TensorRT', tensorrt.__version__)" \
  || die "the virtualenv cannot import tensorrt; check that python3-libnvinfer is installed"

say "pycuda, polygraphy and edge-qwq"
"$VENV/bin/pip" install pycuda "polygraphy>=0.49"
# Not the [jetson] extra: its 'tensorrt' would come from PyPI; JetPack's own bindings are the ones to use.
"$VENV/bin/pip" install "$REPO"
"$VENV/bin/python" - <<'PY'
import pycuda.autoinit  # noqa: F401
from edge_runtime.fingerprint import detect
print("device:", detect().describe())
PY
ln -sf "$VENV/bin/edge-qwq" /usr/local/bin/edge-qwq

UNIT="$(ls "$REPO"/jetson/*.service 2>/dev/null | head -n1 || true)"
if [ "$SERVICE" -eq 1 ] && [ -n "$UNIT" ]; then
  say "systemd unit $(basename "$UNIT")"
  install -m 0644 "$UNIT" /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable "$(basename "$UNIT")"
  echo "enabled; start it with: sudo systemctl start $(basename "$UNIT")"
elif [ "$SERVICE" -eq 1 ]; then
  echo "no systemd unit in $REPO/jetson/; skipped the service"
fi

say "done"
echo "next: build the engines on this device:  edge-qwq build --target orin --bundle <bundle>"
echo "      check it:                          jetson/run-device-tests.sh"
