"""`edge-qwq inspect`: every section read through the typed manifest, without torch."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.edge_runtime.service_helpers import cli_run


def test_inspect_reads_every_section_of_a_quantized_bundle_without_torch(tiny_bundle, tmp_path):
    # a quantized bundle made by calib itself (tests/calib's fixture lives elsewhere: make a small one here)
    from tests.calib.conftest import write_images

    write_images(tmp_path / "data")
    from calib import quantize_bundle

    quantize_bundle(tiny_bundle, tmp_path / "data", mode="int8", max_drop=100.0)
    code = ("import sys; from edge_qwq.cli import main; "
            f"rc = main(['inspect', '--bundle', {str(tiny_bundle)!r}]); "
            "assert 'torch' not in sys.modules, 'inspect imported torch'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for words in ("classes: crack, ok, scratch, spot (ok class: ok)", "stage 2: stages/stage2.onnx",
                  "exit policy: early exit as a defect at [0.85, 0.92], as ok at [0.925, 0.96]",
                  "measured exit fractions", "dynamic: reuse window 0 frames", "6 AWQ groups",
                  "quantization: int8 for TensorRT >= 10.3", "decisions equal to FP32's",
                  "16 stored inputs in calib/samples.npy", "engines: none yet"):
        assert words in out, words
    j = cli_run("inspect", "--bundle", str(tiny_bundle), "--json")
    assert json.loads(j.stdout)["quantization"]["mode"] == "int8"


def test_inspect_of_a_damaged_bundle_is_one_line(tiny_bundle):
    (tiny_bundle / "stages/stage1.onnx").write_bytes(b"truncated")
    r = cli_run("inspect", "--bundle", str(tiny_bundle))
    assert r.returncode != 0 and "stages/stage1.onnx was changed" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
