#!/usr/bin/env bash
# Run the TensorRT-marked tests on the device and print a summary:
#   jetson/run-device-tests.sh [--venv /opt/edge-qwq/venv] [extra pytest args]
# Exit status: pytest's (0 = all passed). A test that skips here means TensorRT or pycuda is not importable.
set -uo pipefail

VENV=/opt/edge-qwq/venv
if [ "${1:-}" = "--venv" ]; then VENV="$2"; shift 2; fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "run-device-tests.sh: no virtualenv at $VENV; run jetson/install.sh first" >&2; exit 2; }
"$PY" -c "import pytest" 2>/dev/null || "$VENV/bin/pip" install -q "pytest>=8"

cd "$REPO"
echo "== device"
head -n1 /etc/nv_tegra_release 2>/dev/null || echo "(no /etc/nv_tegra_release: not a Jetson)"
"$PY" -c "from edge_runtime.fingerprint import detect; d = detect(); print(d.describe()); print('engines folder:', d.id)"

echo "== TensorRT-marked tests"
LOG="$(mktemp)"
"$PY" -m pytest -m tensorrt -rA -q -p no:cacheprovider "$@" tests/engine_builder/test_device.py tests/edge_runtime/test_tensorrt_backend.py 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}

echo "== summary"
PASSED=$(grep -c '^PASSED' "$LOG" || true)
FAILED=$(grep -c '^FAILED\|^ERROR' "$LOG" || true)
SKIPPED=$(grep -c '^SKIPPED' "$LOG" || true)
echo "passed: $PASSED  failed: $FAILED  skipped: $SKIPPED"
if [ "$SKIPPED" -gt 0 ]; then
  echo "skipped tests mean TensorRT or pycuda could not be imported: see the reasons above"
fi
[ "$STATUS" -eq 0 ] && echo "RESULT: OK" || echo "RESULT: FAILED (exit $STATUS)"
rm -f "$LOG"
exit "$STATUS"
