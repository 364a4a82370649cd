"""The bundle is authenticated as a whole (issue 11, finding 1): the manifest's own digest covers every field
and, through `files`, every model file; the version users see is that digest; an Ed25519 signature makes a
device load only bundles its owner built. Device-built engines stay outside the digest."""
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_qwq.cli import main
from edge_runtime import installer
from edge_runtime.bundle import Bundle, sha256_file
from edge_runtime.bundle.seal import digest_of, generate_keypair
from edge_runtime.errors import BundleError
from edge_runtime.inference import DynamicInference, InferenceConfig


def manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def write(bundle, m, reseal=False):
    if reseal:  # what anyone can do: a fresh digest over the edited content
        m["digest"] = digest_of(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def swap_classes(m):
    c = m["classes"]
    c[0], c[2] = c[2], c[0]


def bias_ok_by_100(bundle):
    """The attack of the report: +100 on the ok logit's bias of stage 0's exit head."""
    path = bundle / "stages" / "stage0.onnx"
    model = onnx.load(str(path))
    ok = manifest(bundle)["classes"].index("ok")
    bias = next(t for t in model.graph.initializer if numpy_helper.to_array(t).shape == (4,))
    arr = numpy_helper.to_array(bias).copy()
    arr[ok] += 100.0
    bias.CopyFrom(numpy_helper.from_array(arr, bias.name))
    onnx.save(model, str(path))


@pytest.fixture
def keys(tmp_path):
    return generate_keypair(tmp_path / "owner"), generate_keypair(tmp_path / "stranger")


def test_an_edited_manifest_is_refused(tiny_bundle):
    good = Bundle.open(tiny_bundle)
    assert good.manifest.digest == good.digest and good.version == good.digest[:12]
    m = manifest(tiny_bundle)
    swap_classes(m)
    write(tiny_bundle, m)
    with pytest.raises(BundleError, match="changed after the bundle was written"):
        Bundle.open(tiny_bundle)


@pytest.mark.parametrize("edit", [swap_classes, lambda m: m["exit_policy"]["early_exit"].__setitem__(0, 0.01)])
@pytest.mark.parametrize("digest", ["resealed", "removed"])
def test_an_edit_with_a_new_or_no_digest_cannot_pose_as_the_good_bundle(tiny_bundle, edit, digest):
    good = Bundle.open(tiny_bundle).version
    m = manifest(tiny_bundle)
    edit(m)
    if digest == "removed":
        del m["digest"]
    write(tiny_bundle, m, reseal=digest == "resealed")
    assert Bundle.open(tiny_bundle).version != good  # the version is computed from the content, never read


def test_a_manifest_without_its_digest_keeps_its_version(tiny_bundle):
    good = Bundle.open(tiny_bundle).version
    m = manifest(tiny_bundle)
    del m["digest"], m["model_version"]
    write(tiny_bundle, m)
    assert Bundle.open(tiny_bundle).version == good


def test_the_reported_attack_bias_plus_100_with_empty_files(tiny_bundle, keys):
    (owner_key, owner_pub), _ = keys
    Bundle.open(tiny_bundle).sign(owner_key)
    good = Bundle.open(tiny_bundle).version
    bias_ok_by_100(tiny_bundle)
    m = manifest(tiny_bundle)
    m["files"] = {}
    write(tiny_bundle, m, reseal=True)
    with pytest.raises(BundleError, match="no sha256"):
        Bundle.open(tiny_bundle)
    # the attacker re-hashes the stage and reseals: it opens, but under another version, and never signed
    m["files"] = {"stages/" + p.name: sha256_file(p) for p in (tiny_bundle / "stages").glob("*.onnx")}
    write(tiny_bundle, m, reseal=True)
    assert Bundle.open(tiny_bundle).version != good
    with pytest.raises(BundleError, match="does not verify with the trusted key"):
        DynamicInference(tiny_bundle, InferenceConfig(trusted_key=str(owner_pub)))


def test_a_signed_bundle_loads_with_its_key_only(tiny_bundle, keys, tmp_path):
    (owner_key, owner_pub), (_, stranger_pub) = keys
    with pytest.raises(BundleError, match="is not signed"):
        Bundle.open(tiny_bundle, trusted_key=owner_pub)
    sig = Bundle.open(tiny_bundle).sign(owner_key)
    b = Bundle.open(tiny_bundle, trusted_key=owner_pub)
    assert b.key_id == sig["key_id"] and b.signed
    with pytest.raises(BundleError, match="not the trusted"):
        Bundle.open(tiny_bundle, trusted_key=stranger_pub)
    d = DynamicInference(tiny_bundle, InferenceConfig(trusted_key=str(owner_pub)))
    assert d.infer(np.zeros((40, 40, 3), np.uint8)).model_version == b.version


def test_engines_the_device_adds_leave_digest_and_signature_alone(tiny_bundle, keys):
    from edge_runtime.bundle import EngineEntry, EngineStage

    (owner_key, owner_pub), _ = keys
    b = Bundle.open(tiny_bundle)
    b.sign(owner_key)
    digest = b.digest
    (tiny_bundle / "engines" / "fp1").mkdir(parents=True)
    (tiny_bundle / "engines" / "fp1" / "stage0.engine").write_bytes(b"engine bytes")
    b.add_file("engines/fp1/stage0.engine")
    b.manifest.engines["fp1"] = EngineEntry("fp32", [EngineStage("engines/fp1/stage0.engine", "stages/stage0.onnx",
                                                                 b.manifest.files["stages/stage0.onnx"])])
    assert b.save() is None
    again = Bundle.open(tiny_bundle, trusted_key=owner_pub)
    assert again.digest == digest and "fp1" in again.manifest.engines


def test_a_configuration_change_drops_the_signature_and_says_so(tiny_bundle, keys, capsys):
    (owner_key, owner_pub), _ = keys
    b = Bundle.open(tiny_bundle)
    b.sign(owner_key)
    old = b.version
    b.manifest.exit_policy.early_exit = [0.5, 0.5]
    note = b.save()
    assert note and "sign it again" in note and "sign it again" in capsys.readouterr().err
    b = Bundle.open(tiny_bundle)
    assert b.version != old and not b.signed


def test_cli_keygen_sign_inspect_install(tiny_bundle, tmp_path, capsys):
    assert main(["sign", "--new-key", str(tmp_path / "owner")]) == 0
    assert (tmp_path / "owner.key").stat().st_mode & 0o777 == 0o600
    assert main(["sign", "--new-key", str(tmp_path / "owner")]) != 0  # never overwritten
    assert main(["sign", "--new-key", str(tmp_path / "other")]) == 0
    assert main(["sign", str(tiny_bundle), "--key", str(tmp_path / "owner.key")]) == 0
    capsys.readouterr()
    assert main(["inspect", "--bundle", str(tiny_bundle)]) == 0
    assert "signed by key" in capsys.readouterr().out
    root = tmp_path / "root"
    rc = main(["install", str(tiny_bundle), "--root", str(root), "--trusted-key", str(tmp_path / "other.pub")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "does not verify" in err and len(err.splitlines()) == 1
    assert not (root / "current").exists()
    assert main(["install", str(tiny_bundle), "--root", str(root), "--trusted-key", str(tmp_path / "owner.pub")]) == 0
    assert (root / "current").is_symlink()


def test_a_copy_edited_after_install_is_refused_at_load(tiny_bundle, tmp_path):
    root = tmp_path / "root"
    dest = installer.install(tiny_bundle, root)
    shutil.copy(dest / "manifest.json", tmp_path / "m.json")
    m = manifest(dest)
    swap_classes(m)
    write(dest, m)
    with pytest.raises(BundleError, match="changed after"):
        DynamicInference(root / "current")
