"""The bundle: one folder, one manifest, the only contract between the packages.

Layout::

    bundle/
      manifest.json            schema below; a sha256 for every file it names
      stages/stage{k}.onnx     FP32 stage graphs (stage 0 takes the image, stage k the hidden state)
      stages/stage{k}.q.onnx   quantized stages (calib)
      engines/<fingerprint>/   TensorRT engines (engine_builder, on the device)

The manifest is versioned. A reader refuses a bundle whose schema it does not know, a file whose
sha256 differs from the manifest (edited or truncated) and a file that is missing, each with one line
that names the problem. Writers save atomically (temp file + rename), so a crash never leaves half a
manifest behind.

    >>> b = Bundle.open("bundle/")          # doctest: +SKIP
    >>> b.classes, b.ok_class, len(b.stages)  # doctest: +SKIP
    (['crack', 'ok', 'scratch', 'spot'], 'ok', 3)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("schema_version", "classes", "ok_class", "input", "stages", "exit_policy", "files")


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


@dataclass(frozen=True)
class InputSpec:
    """How the runtime turns a frame into the stage-0 tensor (B, 3, H, W) float32."""

    height: int
    width: int
    mean: tuple[float, float, float]  # per channel, on [0, 1] pixels, RGB order
    std: tuple[float, float, float]
    layout: str = "NCHW"
    color: str = "RGB"

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        h, w = d["size"]
        return cls(int(h), int(w), tuple(d["mean"]), tuple(d["std"]), d.get("layout", "NCHW"),
                   d.get("color", "RGB"))

    def to_dict(self) -> dict:
        return {"size": [self.height, self.width], "mean": list(self.mean), "std": list(self.std),
                "layout": self.layout, "color": self.color}


@dataclass(frozen=True)
class StageSpec:
    """Stage k: `input` in, `hidden` and `logits` out. `quantized` is the .q.onnx file, if any."""

    index: int
    file: str
    input: str
    flops: int  # multiply-adds x 2, batch 1
    quantized: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "StageSpec":
        return cls(int(d["index"]), d["file"], d["input"], int(d.get("flops", 0)), d.get("quantized"))


class Bundle:
    """A bundle folder and its manifest. Open with `Bundle.open`, create with `Bundle.create`."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest

    # ---------- reading ----------
    @classmethod
    def open(cls, root: str | os.PathLike, verify: bool = True) -> "Bundle":
        root = Path(root)
        if not root.is_dir():
            raise BundleError(f"{root} is not a bundle: no such folder")
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{root} is not a bundle: it has no {MANIFEST}")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{mpath} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath} is not a bundle manifest")
        check_schema(manifest, mpath)
        bundle = cls(root, manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check every file the manifest names: present, and with the recorded sha256."""
        for rel, digest in self.manifest["files"].items():
            path = self.root / rel
            if not path.is_file():
                raise BundleError(f"bundle {self.root}: {rel} is missing")
            if sha256_file(path) != digest:
                raise BundleError(
                    f"bundle {self.root}: {rel} was changed after the bundle was written "
                    f"(sha256 mismatch); re-export it or restore the original file")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def ok_class(self) -> str:
        return self.manifest["ok_class"]

    @property
    def ok_index(self) -> int:
        return self.classes.index(self.ok_class)

    @property
    def input(self) -> InputSpec:
        return InputSpec.from_dict(self.manifest["input"])

    @property
    def stages(self) -> list[StageSpec]:
        return [StageSpec.from_dict(s) for s in self.manifest["stages"]]

    @property
    def exit_policy(self) -> dict:
        return dict(self.manifest["exit_policy"])

    @property
    def version(self) -> str:
        """Model version: a short digest of the stage files, so two bundles of one model agree."""
        return self.manifest.get("model_version", "unknown")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def section(self, name: str) -> dict:
        """A package-owned section (``quantization``, ``calibration``, ``engines``, ...); {} if absent."""
        return dict(self.manifest.get(name) or {})

    # ---------- writing ----------
    @classmethod
    def create(cls, root: str | os.PathLike, manifest: dict[str, Any]) -> "Bundle":
        """A new bundle object for a folder being written; call `save()` once its files exist."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        manifest = {"schema_version": SCHEMA_VERSION, "files": {}, **manifest}
        return cls(root, manifest)

    def add_file(self, rel: str) -> None:
        """Record `rel` (relative to the bundle root) and its sha256 in the manifest."""
        self.manifest["files"][rel] = sha256_file(self.root / rel)

    def remove_file(self, rel: str) -> None:
        self.manifest["files"].pop(rel, None)

    def set_section(self, name: str, value: dict) -> None:
        self.manifest[name] = value

    def save(self) -> None:
        check_schema(self.manifest, self.root / MANIFEST)
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=False) + "\n")


def check_schema(manifest: dict, where: os.PathLike | str) -> None:
    version = manifest.get("schema_version")
    if version is None:
        raise BundleError(f"{where}: no schema_version; this is not an edge-qwq bundle manifest")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "upgrade edge-qwq on this machine" if newer else "re-export the bundle with this edge-qwq"
        raise BundleError(f"{where}: bundle schema {version} is not supported by this edge-qwq "
                          f"(schema {SCHEMA_VERSION}); {hint}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{where}: manifest lacks {', '.join(missing)}")
    if manifest["ok_class"] not in manifest["classes"]:
        raise BundleError(f"{where}: ok_class {manifest['ok_class']!r} is not one of the classes")
