"""Installing bundles: atomic switch of `current`, keep N, `previous`, rollback; the CLI."""
from __future__ import annotations

import os

import pytest

from edge_runtime import installer
from edge_runtime.errors import BundleError
from tests.edge_runtime.service_helpers import cli_run


def test_install_switch_keep_and_rollback(tiny_bundle, tmp_path):
    root = tmp_path / "root"
    a = installer.install(tiny_bundle, root, keep=2)
    assert installer.link_target(root, "current") == a.resolve() and installer.link_target(root, "previous") is None
    b = installer.install(tiny_bundle, root, keep=2)
    c = installer.install(tiny_bundle, root, keep=2)
    assert installer.link_target(root, "current") == c.resolve()
    assert installer.link_target(root, "previous") == b.resolve()
    assert not a.exists() and installer.installed(root) == [b, c]  # keep=2 pruned the oldest
    assert os.readlink(root / "current") == f"bundles/{c.name}"  # relative: the root can move
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp links left
    assert installer.resolve(root) == (c.resolve(), root)
    bad, good = installer.rollback(root, "test")
    assert (bad, good) == (c.resolve(), b.resolve()) and (c / installer.REJECTED).exists()
    assert installer.link_target(root, "current") == b.resolve() and installer.link_target(root, "previous") is None
    with pytest.raises(installer.InstallError, match="no previous bundle"):
        installer.rollback(root)


def test_a_damaged_copy_is_not_installed(tiny_bundle, tmp_path):
    (tiny_bundle / "stages" / "stage0.onnx").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="sha256"):
        installer.install(tiny_bundle, tmp_path / "root")
    assert installer.installed(tmp_path / "root") == [] and not (tmp_path / "root" / "current").exists()


def test_cli_install_and_not_a_bundle(tiny_bundle, tmp_path):
    r = cli_run("install", str(tiny_bundle), "--root", str(tmp_path / "root"), "--keep", "2")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith("trial run: ran ") and lines[1].startswith("installed ")
    assert "current ->" in r.stdout
    r = cli_run("install", str(tmp_path), "--root", str(tmp_path / "root"))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0
    assert "is not a bundle" in r.stderr and "Traceback" not in r.stderr
    r = cli_run("install", "--rollback", "--root", str(tmp_path / "root"))
    assert r.returncode != 0 and "no previous bundle" in r.stderr
