"""`install` runs a bundle before making it current (issue 11, finding 3): a bundle that cannot run is one
line, and the bundle that was current stays current (the service never restarts into a broken one)."""
import json

import numpy as np
import pytest

from edge_qwq.cli import main
from edge_runtime import installer
from edge_runtime.bundle import sha256_file
from edge_runtime.bundle.seal import digest_of


def reseal(bundle, change):
    m = json.loads((bundle / "manifest.json").read_text())
    change(m, bundle)
    m["digest"] = digest_of(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def garbage_stage(m, bundle):
    (bundle / "stages" / "stage1.onnx").write_bytes(b"\x08\x07not a graph" * 50)
    m["files"]["stages/stage1.onnx"] = sha256_file(bundle / "stages" / "stage1.onnx")


def huge_input(m, bundle):
    m["input"]["size"] = [4096, 4096]


def wrong_samples(m, bundle):
    (bundle / "calib").mkdir(exist_ok=True)
    np.save(bundle / "calib" / "samples.npy", np.zeros((4, 3, 8, 8), np.float32))
    m["files"]["calib/samples.npy"] = sha256_file(bundle / "calib" / "samples.npy")
    m["calibration"] = {"samples": "calib/samples.npy", "samples_count": 4, "method": "minmax", "images": 4}


def nan_weights(m, bundle):
    import onnx
    from onnx import numpy_helper

    path = bundle / "stages" / "stage2.onnx"
    model = onnx.load(str(path))
    t = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    arr = numpy_helper.to_array(t).copy()
    arr[...] = np.nan
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    onnx.save(model, str(path))
    m["files"]["stages/stage2.onnx"] = sha256_file(path)


@pytest.mark.parametrize("change, words", [
    (garbage_stage, "cannot load it"),
    (huge_input, "stage 0 takes 32x32 images"),
    (lambda m, b: m.update(stages="stages/stage0.onnx"), "section 'stages' is malformed"),
    (lambda m, b: m.update(classes=m["classes"][:3]), "names 3 classes but stage 0's exit scores 4"),
    (nan_weights, "non-finite"),
])
def test_a_bundle_that_does_not_run_is_not_installed(tiny_bundle, tiny_bundle_template, tmp_path, capsys,
                                                     change, words):
    root = tmp_path / "root"
    good = installer.install(tiny_bundle_template, root)
    reseal(tiny_bundle, change)
    rc = main(["install", str(tiny_bundle), "--root", str(root)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and words in err and len(err.splitlines()) == 1, err
    assert installer.link_target(root, "current") == good.resolve()
    assert [p.name for p in installer.installed(root)] == [good.name]  # no half-installed copy either


def test_the_trial_uses_the_stored_calibration_inputs(tiny_bundle, tmp_path, capsys):
    reseal(tiny_bundle, wrong_samples)
    assert main(["install", str(tiny_bundle), "--root", str(tmp_path / "r")]) != 0
    assert "(N, 3, 32, 32)" in capsys.readouterr().err


def test_a_bundle_that_runs_is_installed_and_says_what_ran(tiny_bundle, tmp_path, capsys):
    assert main(["install", str(tiny_bundle), "--root", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "trial run: ran a mid-grey frame" in out and "3 stages (fp32): all finite" in out
