"""The device fingerprint: what a TensorRT engine is tied to, and the check that an engine may be loaded.

A serialized engine only runs on the GPU, TensorRT and CUDA version it was built with, so engines live
under ``engines/<fingerprint id>/`` and the runtime loads only the folder whose id matches this device.

    >>> parse_nv_tegra_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, ...")
    L4TRelease(major=36, revision='4.3', board='generic')
    >>> parse_nv_tegra_release("# R36 (release), REVISION: 4.3").version
    '36.4.3'

This module imports without TensorRT, pycuda or anything else from the repo: each probe is lazy and
returns None when its library is absent.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"

# First line of /etc/nv_tegra_release, e.g. (JetPack 5.1, L4T 35.2.1):
#   "# R35 (release), REVISION: 2.1, GCID: 32413640, BOARD: t186ref, EABI: aarch64, DATE: Tue Jan 24 ..."
_L4T_LINE = re.compile(r"#\s*R(\d+)\s*\(release\)\s*,\s*REVISION:\s*([\d.]+)(?:.*?BOARD:\s*([\w.-]+))?")

# L4T release -> JetPack, from NVIDIA's JetPack archive (developer.nvidia.com/embedded/jetpack-archive).
JETPACK_OF_L4T = {
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}


@dataclass(frozen=True)
class L4TRelease:
    major: int  # 35 = JetPack 5, 36 = JetPack 6
    revision: str  # "4.3"
    board: str | None = None

    @property
    def version(self) -> str:
        """Full L4T version, e.g. '36.4.3'."""
        return f"{self.major}.{self.revision}"

    @property
    def jetpack(self) -> str | None:
        return JETPACK_OF_L4T.get(self.version)


def parse_nv_tegra_release(text: str) -> L4TRelease | None:
    """Parse the contents of /etc/nv_tegra_release; None if it has no '# R<major> (release)' line."""
    for line in text.splitlines():
        m = _L4T_LINE.search(line)
        if m:
            rev = m.group(2).rstrip(".")
            return L4TRelease(int(m.group(1)), rev, m.group(3))
    return None


@dataclass(frozen=True)
class DeviceFingerprint:
    """Everything a serialized engine depends on. Fields are None when unknown (library absent)."""

    tensorrt: str | None  # "10.3.0.30"
    cuda: str | None  # "12.6"
    gpu_name: str | None  # "Orin"
    compute_capability: str | None  # "8.7"
    l4t: str | None  # "36.4.3"; None off a Jetson

    @property
    def id(self) -> str:
        """Folder name under engines/, readable and unique, e.g. 'sm87-trt10.3.0.30-cuda12.6-l4t36.4.3-1a2b3c'."""
        cc = (self.compute_capability or "unknown").replace(".", "")
        parts = [f"sm{cc}", f"trt{self.tensorrt or 'none'}", f"cuda{self.cuda or 'none'}"]
        if self.l4t:
            parts.append(f"l4t{self.l4t}")
        digest = hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:6]
        return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts + [digest]))

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.id}

    def describe(self) -> str:
        gpu = f"{self.gpu_name or 'unknown GPU'} (sm {self.compute_capability or '?'})"
        l4t = f", L4T {self.l4t}" if self.l4t else ""
        return f"{gpu}, TensorRT {self.tensorrt or 'absent'}, CUDA {self.cuda or 'absent'}{l4t}"


def read_l4t(path: str = NV_TEGRA_RELEASE) -> L4TRelease | None:
    try:
        return parse_nv_tegra_release(Path(path).read_text(errors="replace"))
    except OSError:
        return None


def tensorrt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def cuda_gpu() -> tuple[str | None, str | None, str | None]:
    """(CUDA driver version "12.6", GPU name, compute capability "8.7") through pycuda; Nones without it."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return None, None, None
    try:
        cuda.init()
        v = cuda.get_driver_version()  # e.g. 12060
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return f"{v // 1000}.{(v % 1000) // 10}", dev.name(), f"{major}.{minor}"
    except Exception:  # noqa: BLE001 - no GPU or driver: pycuda raises its own LogicError/RuntimeError
        return None, None, None


def detect(tegra_release: str = NV_TEGRA_RELEASE) -> DeviceFingerprint:
    """This machine's fingerprint. Never raises: missing libraries give None fields."""
    l4t = read_l4t(tegra_release)
    cuda, name, cc = cuda_gpu()
    return DeviceFingerprint(tensorrt_version(), cuda, name, cc, l4t.version if l4t else None)


# ---------- may an engine folder be loaded? (shared by the runtime and engine_builder) ----------

def engine_status(engines_section: dict, fingerprint_id: str, precision: str,
                  stage_sources: list[str], source_digests: dict[str, str]) -> tuple[str, str]:
    """Whether the manifest's engines for this device can be loaded.

    engines_section: the manifest's "engines" section, {fingerprint id: EngineEntry}.
    stage_sources: the ONNX file each stage must come from, in stage order (for this precision).
    source_digests: the manifest's "files" (sha256 of each file).
    Returns (status, reason), status one of "ok", "missing", "other-device", "stale", "rejected".
    """
    entry = engines_section.get(fingerprint_id)
    if entry is None:
        others = sorted(engines_section)
        if others:
            return "other-device", (f"engines were built for {', '.join(others)}, not for this device "
                                    f"({fingerprint_id})")
        return "missing", f"the bundle has no TensorRT engines for this device ({fingerprint_id})"
    if entry.precision != precision:
        return "stale", (f"the engines for this device are {entry.precision}, "
                         f"but {precision} was asked for")
    if [s.source for s in entry.stages] != list(stage_sources):
        return "stale", "the engines were built from other stage files than the bundle's"
    for s in entry.stages:
        if s.source_sha256 != source_digests.get(s.source):
            return "stale", f"{s.source} changed after its engine was built"
    if not entry.active:
        why = entry.failure or "it did not pass verification"
        return "rejected", f"the engines for this device were not activated: {why}"
    return "ok", "engines match this device"
