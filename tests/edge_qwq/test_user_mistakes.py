"""What a new user gets wrong: one clear line, a non-zero exit, no traceback, nothing destroyed."""
import json
import shutil

import pytest

from edge_qwq.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err.strip()


@pytest.fixture
def data(tmp_path):
    from export.sample_data import make_sample

    make_sample(tmp_path / "data", size=32, per_class=8, seed=0)
    return tmp_path / "data"


def test_non_image_file_in_data(capsys, data, tmp_path):
    (data / "train" / "ok" / "notes.txt").write_text("not an image")
    code, err = run_cli(capsys, "distill", "--teacher", str(tmp_path / "t"), "--data", str(data),
                        "--out", str(tmp_path / "s"))
    assert code != 0 and "notes.txt: not an image file" in err and len(err.splitlines()) == 1


def test_corrupt_png_in_data(capsys, data, tmp_path):
    bad = data / "train" / "ok" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, err = run_cli(capsys, "teacher", "train", "--data", str(data), "--out", str(tmp_path / "t"), "--tiny")
    assert code != 0 and "broken.png: not a readable image" in err
    assert not (tmp_path / "t").exists()


def test_empty_class_folder(capsys, data, tmp_path):
    shutil.rmtree(data / "train" / "spot")
    (data / "train" / "spot").mkdir()
    code, err = run_cli(capsys, "teacher", "train", "--data", str(data), "--out", str(tmp_path / "t"), "--tiny")
    assert code != 0 and "spot: class folder is empty" in err


def test_teacher_folder_without_config(capsys, data, tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"x")
    code, err = run_cli(capsys, "distill", "--teacher", str(tmp_path / "teacher"), "--data", str(data),
                        "--out", str(tmp_path / "s"))
    assert code != 0 and "has no config.json" in err


def test_truncated_onnx_in_bundle(capsys, tiny_bundle, tmp_path):
    stage = tiny_bundle / "stages" / "stage0.onnx"
    stage.write_bytes(stage.read_bytes()[:100])
    img = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    code, err = run_cli(capsys, "run", "--bundle", str(tiny_bundle), "--source", str(img))
    assert code != 0 and "stage0.onnx was changed" in err


def test_truncated_onnx_is_named_even_without_hash_check(tiny_bundle):
    from edge_runtime.backends.onnxruntime_backend import make_session
    from edge_runtime.errors import BundleError

    stage = tiny_bundle / "stages" / "stage1.onnx"
    stage.write_bytes(stage.read_bytes()[:100])
    with pytest.raises(BundleError, match="stage1.onnx: ONNX Runtime cannot load it"):
        make_session(stage)


def test_edited_bundle_file_and_existing_bundle_kept(capsys, tiny_bundle, tmp_path):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    stage = tiny_bundle / "stages" / "stage2.onnx"
    stage.write_bytes(stage.read_bytes() + b"\0")
    code, err = run_cli(capsys, "bench", "--bundle", str(tiny_bundle), "--data", str(tmp_path))
    assert code != 0 and "stage2.onnx was changed" in err
    assert json.loads((tiny_bundle / "manifest.json").read_text()) == manifest


def test_export_over_an_existing_bundle_is_refused(capsys, tiny_bundle, tmp_path):
    from export.student import save_student
    from tests.conftest import make_tiny_student

    save_student(make_tiny_student(seed=5), tmp_path / "student")
    before = (tiny_bundle / "manifest.json").read_text()
    code, err = run_cli(capsys, "export", "--student", str(tmp_path / "student"), "--out", str(tiny_bundle))
    assert code != 0 and "--force" in err
    assert (tiny_bundle / "manifest.json").read_text() == before


def test_not_a_bundle(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--bundle", str(tmp_path), "--source", str(tmp_path))
    assert code != 0 and "is not a bundle" in err


def test_help_lists_commands_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from edge_qwq.cli import main; rc = main(['--help']); "
            "assert 'torch' not in sys.modules, 'help imported torch'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "distill" in r.stdout and "run" in r.stdout


def test_run_never_imports_torch(tiny_bundle, tmp_path):
    """`edge-qwq run` is what runs on the device: it must not load torch (or transformers)."""
    import subprocess
    import sys

    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "part.png"), np.full((32, 32, 3), 128, np.uint8))
    code = ("import sys; from edge_qwq.cli import main; "
            f"rc = main(['run', '--bundle', {str(tiny_bundle)!r}, '--source', {str(tmp_path / 'part.png')!r}]); "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    decision = json.loads(r.stdout.strip().splitlines()[-1])
    assert decision["label"] in ("crack", "ok", "scratch", "spot") and decision["exit_index"] in (0, 1, 2)


def test_build_fails_when_even_the_estimate_exceeds_the_budget(capsys, tiny_bundle):
    code, err = run_cli(capsys, "build", "--bundle", str(tiny_bundle), "--budget-ms", "0.001")
    assert code != 0 and "exceeds the 0.001 ms budget on orin" in err.splitlines()[-1]
    code, err = run_cli(capsys, "build", "--bundle", str(tiny_bundle), "--budget-ms", "15")
    assert code == 0 and "engines will be built on the device" in err


def test_build_needs_a_teacher_or_a_bundle(capsys):
    code, err = run_cli(capsys, "build", "--target", "orin")
    assert code != 0 and "--bundle" in err
