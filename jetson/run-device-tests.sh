#!/usr/bin/env bash
# Run the TensorRT-marked tests on the device and print a one-page result to paste into an issue:
#   jetson/run-device-tests.sh [--venv /opt/edge-qwq/venv] [extra pytest args]
# The page names the device and its versions, and says for each area what happened:
#   build and verification of FP32 engines on the stored calibration inputs (TF32 off);
#   INT8 engines, and FP16 + INT4 (W4A16) engines on TensorRT 10;
#   the DLA (FP16 from the FP32 stages, on its core; skipped on an Orin Nano);
#   health checks on TensorRT: the service rolls back damaged quantized stages;
#   the backend against ONNX Runtime (hidden state on the GPU), and Polygraphy's comparison.
# The full pytest log is kept (its path is printed). Exit status: pytest's (0 = all passed).
set -uo pipefail

VENV=/opt/edge-qwq/venv
if [ "${1:-}" = "--venv" ]; then VENV="$2"; shift 2; fi
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "run-device-tests.sh: no virtualenv at $VENV; run jetson/install.sh first" >&2; exit 2; }
"$PY" -c "import pytest" 2>/dev/null || "$VENV/bin/pip" install -q "pytest>=8"

cd "$REPO"
OUT="$(mktemp -d /tmp/edge-qwq-device-tests.XXXXXX)"
LOG="$OUT/pytest.log"
XML="$OUT/junit.xml"
START=$(date +%s)
echo "running the TensorRT-marked tests (a few minutes: every engine is built on this device); log: $LOG"
"$PY" -m pytest -m tensorrt -rA -q -p no:cacheprovider --junitxml="$XML" -o junit_logging=system-out "$@" \
  tests/engine_builder/test_device.py tests/edge_runtime/test_tensorrt_backend.py >"$LOG" 2>&1
STATUS=$?
ELAPSED=$(( $(date +%s) - START ))

"$PY" - "$XML" "$STATUS" "$ELAPSED" "$LOG" <<'EOF'
"""The one-page result: device, versions, each area's outcome, the first line of each failure."""
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

xml_path, status, elapsed, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
AREAS = [  # (title, substrings of the test names that belong to it)
    ("build + verification on the stored calibration inputs (FP32, TF32 off)",
     ["verification_on_the_stored", "build_verifies_activates"]),
    ("INT8 engines (Q/DQ)", ["quantized_engines_build_verify_and_run[int8]"]),
    ("FP16 and INT4 (W4A16) engines, TensorRT 10", ["quantized_engines_build_verify_and_run[fp16-int4]"]),
    ("DLA: FP16 from the FP32 stages, on its core", ["dla_builds_fp16"]),
    ("health on TensorRT: rollback of damaged stages", ["health_on_tensorrt"]),
    ("backend vs ONNX Runtime, Polygraphy comparison", ["load_and_run_matches", "compare_engine",
                                                        "load_engines_and_run", "fingerprint_sees"]),
]


def version(module):
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", getattr(mod, "VERSION_TEXT", "?")))
    except Exception as e:  # noqa: BLE001
        return f"not importable ({type(e).__name__})"


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip() and not line.lstrip().startswith("---"):  # pytest's "--- Captured Out ---" header
            return line.strip()[:160]
    return ""


cases = []
try:
    for tc in ET.parse(xml_path).getroot().iter("testcase"):
        name = tc.get("name", "")
        outcome, why = "PASS", ""
        for tag, label in (("failure", "FAIL"), ("error", "FAIL"), ("skipped", "SKIP")):
            el = tc.find(tag)
            if el is not None:
                outcome, why = label, first_line(el.get("message") or el.text)
                break
        out = tc.find("system-out")
        printed = first_line(out.text) if out is not None and outcome == "PASS" else ""
        cases.append((name, outcome, why, printed))
except (OSError, ET.ParseError) as e:
    print(f"(no test report: {e}; see {log})")

try:
    release = open("/etc/nv_tegra_release").readline().strip()
except OSError:
    release = "(no /etc/nv_tegra_release: not a Jetson)"
try:
    from edge_runtime.fingerprint import detect
    fp = detect()
    device, fp_id = fp.describe(), fp.id
except Exception as e:  # noqa: BLE001
    device, fp_id = f"(fingerprint failed: {e})", "?"
try:
    import tensorrt as trt
    dla = trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores
except Exception:  # noqa: BLE001
    dla = "?"
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            timeout=5).stdout.strip() or "?"
except Exception:  # noqa: BLE001
    commit = "?"

print("=" * 100)
print("edge-qwq device test result (jetson/run-device-tests.sh); paste this page into an issue")
print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}   commit: {commit}   tests took {elapsed} s")
print(f"L4T: {release}")
print(f"device: {device}   engines folder: {fp_id}   DLA cores: {dla}")
print(f"python {platform.python_version()}, numpy {version('numpy')}, tensorrt {version('tensorrt')}, "
      f"pycuda {version('pycuda')}, polygraphy {version('polygraphy')}, onnxruntime {version('onnxruntime')}")
print("-" * 100)
seen = set()
for title, keys in AREAS:
    mine = [c for c in cases if any(k in c[0] for k in keys)]
    seen.update(c[0] for c in mine)
    if not mine:
        print(f"{'NOT RUN':8} {title}")
        continue
    outcomes = {c[1] for c in mine}
    verdict = "FAIL" if "FAIL" in outcomes else "PASS" if "PASS" in outcomes else "SKIP"
    print(f"{verdict:8} {title}")
    for name, outcome, why, printed in mine:
        note = why or printed
        print(f"         {outcome:4} {name}" + (f": {note}" if note else ""))
rest = [c for c in cases if c[0] not in seen]
for name, outcome, why, _ in rest:
    print(f"{outcome:8} {name}" + (f": {why}" if why else ""))
print("-" * 100)
n = {k: sum(1 for c in cases if c[1] == k) for k in ("PASS", "FAIL", "SKIP")}
print(f"passed: {n['PASS']}  failed: {n['FAIL']}  skipped: {n['SKIP']}   full log: {log}")
if any("importable" in c[2] or "needs TensorRT" in c[2] or "needs pycuda" in c[2] for c in cases if c[1] == "SKIP"):
    print("tests skipped because TensorRT or pycuda could not be imported: rerun jetson/install.sh and read it")
print("RESULT: OK" if status == 0 else f"RESULT: FAILED (pytest exit {status})")
print("=" * 100)
EOF
exit "$STATUS"
