"""A bundle cannot load files from outside itself, nor a model file it does not hash (issue 11, findings 1
and 2). The edits here re-seal the manifest (a new digest over the edited content, as anyone can compute),
so what refuses them is the path and hash checks, not the digest (tests/edge_runtime/test_bundle_seal.py)."""
import json
import os
import shutil

import pytest

from edge_qwq.cli import main
from edge_runtime.bundle import Bundle
from edge_runtime.bundle.seal import digest_of
from edge_runtime.errors import BundleError


def edit(bundle, change):
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    m["digest"] = digest_of(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_a_stage_outside_the_bundle_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(tiny_bundle / "stages" / "stage0.onnx", outside)
    for path in ("../elsewhere.onnx", str(outside)):
        edit(tiny_bundle, lambda m, path=path: m["stages"][0].update(file=path))
        with pytest.raises(BundleError, match="leaves the bundle"):
            Bundle.open(tiny_bundle)


def test_a_symlink_out_of_the_bundle_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    stage = tiny_bundle / "stages" / "stage0.onnx"
    shutil.copy(stage, outside)
    stage.unlink()
    os.symlink(outside, stage)  # same bytes, same sha256: only the link gives it away
    with pytest.raises(BundleError, match="outside the bundle"):
        Bundle.open(tiny_bundle)


def test_a_stage_missing_from_the_hashed_files_is_refused_with_one_line(tiny_bundle, capsys):
    edit(tiny_bundle, lambda m: m.update(files={}))
    with pytest.raises(BundleError, match="no sha256"):
        Bundle.open(tiny_bundle)
    rc = main(["run", "--bundle", str(tiny_bundle), "--source", str(tiny_bundle / "manifest.json")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "no sha256" in err and len(err.splitlines()) == 1
