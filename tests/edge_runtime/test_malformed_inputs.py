"""Malformed manifests and source URIs are one line, never a traceback or a silent wrong answer (issue 11,
finding 11, in part)."""
import json

import pytest

from edge_qwq.cli import main
from edge_runtime.errors import InputError
from edge_runtime.sources import csi_pipeline


@pytest.mark.parametrize("change, words", [
    (lambda m: m["input"].update(size="96"), "size must be [height, width]"),  # read as a 9x6 input before
    (lambda m: m["input"].update(size=[96, 0]), "size must be [height, width]"),
    (lambda m: m.update(stages="stage0.onnx"), "section 'stages' is malformed"),
    (lambda m: m.update(files=None), "section 'files' is malformed"),
])
def test_malformed_manifest_is_one_line(tiny_bundle, tmp_path, capsys, change, words):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    change(m)
    (tiny_bundle / "manifest.json").write_text(json.dumps(m))
    rc = main(["run", "--bundle", str(tiny_bundle), "--source", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and words in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("uri, words", [
    ("csi://0?width=abc", "width must be a whole number"),
    ("csi://0?fps=0", "fps must be a whole number"),
    ("csi://0?colour=red", "unknown parameter 'colour'"),
])
def test_bad_csi_parameters_are_one_clear_error(uri, words):
    with pytest.raises(InputError, match=words):
        csi_pipeline(uri)
    assert "width=1920, height=1080, framerate=60/1" in csi_pipeline("csi://1?width=1920&height=1080&fps=60")
