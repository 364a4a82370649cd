"""The bundle: one folder, one manifest, the only contract between the packages.

Layout::

    bundle/
      manifest.json            schema below; a sha256 for every file it names
      stages/stage{k}.onnx     FP32 stage graphs (stage 0 takes the image, stage k the hidden state)
      stages/stage{k}.q.onnx   quantized stages (calib)
      engines/<fingerprint>/   TensorRT engines (engine_builder, on the device)

The manifest is versioned. A reader refuses a bundle whose schema it does not know, a manifest whose own
digest does not match its content, a file whose sha256 differs from the manifest (edited or truncated), a
file that is missing and a path that leaves the bundle, each with one line that names the problem. The
version users see is the manifest's digest (`edge_runtime.bundle.seal`), and a device given a trusted key
loads only bundles signed with it. Writers save atomically (temp file + rename), so a crash never leaves
half a manifest behind.

    >>> b = Bundle.open("bundle/")          # doctest: +SKIP
    >>> b.classes, b.ok_class, len(b.stages)  # doctest: +SKIP
    (['crack', 'ok', 'scratch', 'spot'], 'ok', 3)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from edge_runtime.bundle.manifest import SCHEMA_VERSION, Manifest
from edge_runtime.bundle.migrate import STEPS, migrate
from edge_runtime.bundle.seal import check_signature, digest_of, sign_digest, version_of
from edge_runtime.bundle.sections import (
    AwqGroup,
    CalibrationSpec,
    DynamicSpec,
    EngineEntry,
    EngineStage,
    ExitPolicySpec,
    FrameSpec,
    InputSpec,
    InputStat,
    PruningSpec,
    QuantizationSpec,
    StageSpec,
    StudentSpec,
    TuningSpec,
)
from edge_runtime.errors import BundleError

__all__ = ["SCHEMA_VERSION", "MANIFEST", "Bundle", "Manifest", "AwqGroup", "CalibrationSpec", "DynamicSpec",
           "EngineEntry", "EngineStage", "ExitPolicySpec", "FrameSpec", "InputSpec", "InputStat", "QuantizationSpec",
           "PruningSpec", "StageSpec", "StudentSpec", "TuningSpec", "sha256_file", "atomic_write_text"]

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Bundle:
    """A bundle folder and its typed manifest. Open with `Bundle.open`, create with `Bundle.create`.

    `bundle.manifest` is a `Manifest`; writers change its sections (typed records from
    `edge_runtime.bundle.sections`), record new files with `add_file` and call `save()`."""

    def __init__(self, root: Path, manifest: Manifest, schema_read: int = SCHEMA_VERSION, digest: str | None = None):
        self.root = Path(root)
        self.manifest = manifest
        self.schema_read = schema_read  # the schema the manifest on disk is in (older ones are migrated)
        # the digest of the manifest as read (or as last saved); a new bundle's is that of its manifest now
        self.digest = digest or digest_of(manifest.to_dict())
        self.key_id: str | None = None  # the trusted key that verified the signature, when one was asked for

    # ---------- reading ----------
    @classmethod
    def open(cls, root: str | os.PathLike, verify: bool = True,
             trusted_key: str | os.PathLike | None = None) -> "Bundle":
        """Read and check a bundle. With `trusted_key` (an Ed25519 public key, PEM) it must also carry that
        key's signature of its digest."""
        root = Path(root)
        if not root.is_dir():
            raise BundleError(f"{root} is not a bundle: no such folder")
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{root} is not a bundle: it has no {MANIFEST}")
        try:
            raw = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{mpath} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
        digest = digest_of(raw) if isinstance(raw, dict) else None
        bundle = cls(root, *parse_manifest(raw, mpath), digest=digest)
        written = raw.get("digest")
        if written is not None and written != digest:
            raise BundleError(f"{mpath} was changed after the bundle was written (its digest does not match its "
                              "content); re-export the bundle or restore the original manifest")
        if verify:
            bundle.verify()
        if trusted_key is not None:
            bundle.key_id = check_signature(digest, bundle.manifest.signature, trusted_key, f"bundle {root}")
        return bundle

    def verify(self) -> None:
        """Check every file the manifest names: inside the bundle, present, and with the recorded sha256; and
        that every model file the runtime loads (stages, quantized stages, stored calibration inputs) is one
        of the hashed files, so no file can be swapped or added without the check seeing it."""
        for rel in [*self.manifest.files, *self.loaded_files()]:
            self.inside(rel)
        unhashed = [rel for rel in self.loaded_files() if rel not in self.manifest.files]
        if unhashed:
            raise BundleError(f"bundle {self.root}: {unhashed[0]} is loaded by the runtime but has no sha256 in the "
                              "manifest's files; the bundle was edited by hand: re-export it")
        for rel, digest in self.manifest.files.items():
            path = self.root / rel
            if not path.is_file():
                raise BundleError(f"bundle {self.root}: {rel} is missing")
            if sha256_file(path) != digest:
                raise BundleError(
                    f"bundle {self.root}: {rel} was changed after the bundle was written "
                    f"(sha256 mismatch); re-export it or restore the original file")

    def loaded_files(self) -> list[str]:
        """Every file of the model the runtime may load (engines excepted: the device adds those)."""
        m = self.manifest
        rels = [s.file for s in m.stages] + [s.quantized for s in m.stages if s.quantized]
        if m.calibration is not None and m.calibration.samples:
            rels.append(m.calibration.samples)
        return rels

    def inside(self, rel: str) -> Path:
        """The path of `rel` if it lies inside the bundle (relative, no `..`, no symlink out); else BundleError."""
        pure = Path(rel)
        if pure.is_absolute() or ".." in pure.parts or not str(rel).strip():
            raise BundleError(f"bundle {self.root}: the path {rel!r} leaves the bundle (absolute or with '..'); "
                              "every file of a bundle lies inside its folder")
        path = self.root / pure
        root = self.root.resolve()
        if path.exists() and root not in path.resolve().parents:
            raise BundleError(f"bundle {self.root}: {rel} is a link to a file outside the bundle")
        return path

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def ok_class(self) -> str:
        return self.manifest.ok_class

    @property
    def ok_index(self) -> int:
        return self.classes.index(self.ok_class)

    @property
    def input(self) -> InputSpec:
        return self.manifest.input

    @property
    def stages(self) -> list[StageSpec]:
        return self.manifest.stages

    @property
    def exit_policy(self) -> ExitPolicySpec:
        return self.manifest.exit_policy

    @property
    def version(self) -> str:
        """Model version: the manifest digest's first 12 hex digits, computed, never read from the file, so
        bundles that differ in any file or setting the runtime uses have different versions."""
        return version_of(self.digest)

    @property
    def signed(self) -> bool:
        return self.manifest.signature is not None

    def path(self, rel: str) -> Path:
        return self.inside(rel)

    # ---------- writing ----------
    @classmethod
    def create(cls, root: str | os.PathLike, manifest: Manifest) -> "Bundle":
        """A new bundle object for a folder being written; call `save()` once its files exist."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, manifest)

    def add_file(self, rel: str) -> None:
        """Record `rel` (relative to the bundle root) and its sha256 in the manifest."""
        self.manifest.files[rel] = sha256_file(self.root / rel)

    def remove_file(self, rel: str) -> None:
        self.manifest.files.pop(rel, None)

    def save(self) -> str | None:
        """Write the manifest (always in the current schema) with its new digest, atomically. A signature
        that no longer holds (the model's configuration changed) is dropped; the returned line says so (None
        when nothing needs saying). Device-added engines leave the digest, and so a signature, as it was."""
        where = self.root / MANIFEST
        m = self.manifest
        try:
            m.check()
        except ValueError as e:
            raise BundleError(f"{where}: {e}") from None
        m.schema_version = SCHEMA_VERSION
        old, new = self.digest, digest_of(m.to_dict())
        note = None
        if m.signature is not None and new != old:
            m.signature = None
            note = (f"bundle {self.root}: its configuration changed (version {version_of(old)} -> "
                    f"{version_of(new)}), so its signature no longer holds and was removed; sign it again with "
                    "`edge-qwq sign` before installing it on devices that require a trusted key")
            import sys

            print(f"edge-qwq: note: {note}", file=sys.stderr, flush=True)
        m.digest, m.model_version = new, version_of(new)
        atomic_write_text(where, json.dumps(m.to_dict(), indent=2) + "\n")
        self.digest, self.schema_read = new, SCHEMA_VERSION
        return note

    def sign(self, private_key: str | os.PathLike) -> dict:
        """Sign the bundle's digest with an Ed25519 private key (PEM) and save; the signature record."""
        self.verify()
        self.manifest.signature = sign_digest(self.digest, private_key)
        self.save()
        return self.manifest.signature


def parse_manifest(raw, where: os.PathLike | str) -> tuple[Manifest, int]:
    """(typed manifest, schema it was written in) from a manifest's JSON; BundleError (one line) if it is not
    an edge-qwq manifest, is of a schema this edge-qwq cannot read, or is malformed."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where} is not a bundle manifest")
    version = raw.get("schema_version")
    if version is None:
        raise BundleError(f"{where}: no schema_version; this is not an edge-qwq bundle manifest")
    if version != SCHEMA_VERSION and version not in STEPS:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "upgrade edge-qwq on this machine" if newer else "re-export the bundle with this edge-qwq"
        raise BundleError(f"{where}: bundle schema {version} is not supported by this edge-qwq "
                          f"(schema {SCHEMA_VERSION}); {hint}")
    try:
        d, start = migrate(raw)
        return Manifest.from_dict(d), start
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BundleError(f"{where}: {e}") from None
