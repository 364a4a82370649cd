"""The whole manifest as one typed record: `Manifest.from_dict` checks a manifest's shape, `to_dict` writes it.

Sections that a newer edge-qwq adds without a schema change are kept in `extra`, untouched, so an older
runtime can still open (and re-save) the bundle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edge_runtime.bundle.sections import (
    CalibrationSpec,
    DynamicSpec,
    EngineEntry,
    ExitPolicySpec,
    FrameSpec,
    InputSpec,
    QuantizationSpec,
    StageSpec,
    StudentSpec,
    TuningSpec,
)

SCHEMA_VERSION = 2
REQUIRED_KEYS = ("schema_version", "classes", "ok_class", "input", "stages", "exit_policy", "files")
KNOWN_KEYS = REQUIRED_KEYS + ("producer", "model_version", "student", "dynamic", "quantization", "calibration",
                              "engines", "frames", "tuning", "digest", "signature")


@dataclass
class Manifest:
    classes: list[str]
    ok_class: str
    input: InputSpec
    stages: list[StageSpec]
    exit_policy: ExitPolicySpec
    files: dict[str, str] = field(default_factory=dict)  # path in the bundle -> sha256
    model_version: str = "unknown"  # the digest's first 12 hex digits (written for readers; never trusted)
    producer: str = "edge-qwq"
    student: StudentSpec | None = None
    dynamic: DynamicSpec = field(default_factory=DynamicSpec)
    quantization: QuantizationSpec | None = None
    calibration: CalibrationSpec | None = None
    engines: dict[str, EngineEntry] = field(default_factory=dict)  # device fingerprint id -> engines
    frames: FrameSpec | None = None  # tile mode's fitted frame-level decision
    tuning: TuningSpec | None = None  # the study and trial the dynamic configuration came from (tune --apply)
    extra: dict = field(default_factory=dict)  # sections this version does not know (kept as they are)
    schema_version: int = SCHEMA_VERSION
    digest: str | None = None  # sha256 of the manifest itself (edge_runtime.bundle.seal), written by save()
    signature: dict | None = None  # {"alg": "ed25519", "key_id", "value"}: the owner's signature of the digest

    @property
    def early_exits(self) -> int:
        return len(self.stages) - 1

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        """Raises ValueError naming the section for a manifest of the wrong shape."""
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise ValueError(f"manifest lacks {', '.join(missing)}")
        parts = {}
        for key, build in (("input", InputSpec.from_dict), ("exit_policy", ExitPolicySpec.from_dict),
                           ("stages", lambda v: [StageSpec.from_dict(s) for s in _list(v)]),
                           ("student", lambda v: None if v is None else StudentSpec.from_dict(v)),
                           ("dynamic", lambda v: DynamicSpec.from_dict(v or {})),
                           ("quantization", lambda v: None if v is None else QuantizationSpec.from_dict(v)),
                           ("calibration", lambda v: None if v is None else CalibrationSpec.from_dict(v)),
                           ("engines", lambda v: {str(k): EngineEntry.from_dict(e) for k, e in (v or {}).items()}),
                           ("frames", lambda v: None if v is None else FrameSpec.from_dict(v)),
                           ("tuning", lambda v: None if v is None else TuningSpec.from_dict(v))):
            try:
                parts[key] = build(d.get(key))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"section {key!r} is malformed ({type(e).__name__}: {e})") from None
        classes = [str(c) for c in _list(d["classes"])]
        if not isinstance(d["files"], dict):
            raise ValueError("section 'files' is malformed (not a mapping)")
        m = cls(classes, str(d["ok_class"]), files={str(k): str(v) for k, v in d["files"].items()},
                model_version=str(d.get("model_version", "unknown")), producer=str(d.get("producer", "edge-qwq")),
                extra={k: v for k, v in d.items() if k not in KNOWN_KEYS},
                digest=None if d.get("digest") is None else str(d["digest"]),
                signature=d.get("signature") if isinstance(d.get("signature"), dict) else None, **parts)
        m.check()
        return m

    def check(self) -> None:
        if self.ok_class not in self.classes:
            raise ValueError(f"ok_class {self.ok_class!r} is not one of the classes")
        if not self.stages:
            raise ValueError("the manifest names no stages")
        n = self.early_exits
        for name, values in (("early_exit", self.exit_policy.early_exit),
                             ("early_exit_ok", self.exit_policy.early_exit_ok)):
            if len(values) != n:
                raise ValueError(f"exit_policy.{name} has {len(values)} thresholds for {n} early exits")

    def to_dict(self) -> dict:
        d = {"schema_version": self.schema_version, "producer": self.producer, "model_version": self.model_version,
             "classes": list(self.classes), "ok_class": self.ok_class, "input": self.input.to_dict(),
             "stages": [s.to_dict() for s in self.stages], "exit_policy": self.exit_policy.to_dict(),
             "dynamic": self.dynamic.to_dict(),
             "student": self.student.to_dict() if self.student else None,
             "quantization": self.quantization.to_dict() if self.quantization else None,
             "calibration": self.calibration.to_dict() if self.calibration else None,
             "engines": {k: e.to_dict() for k, e in self.engines.items()},
             "frames": self.frames.to_dict() if self.frames else None,
             "tuning": self.tuning.to_dict() if self.tuning else None,
             "files": dict(self.files), "digest": self.digest, "signature": self.signature}
        d.update(self.extra)
        return d


def _list(v) -> list:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {type(v).__name__}")
    return v
