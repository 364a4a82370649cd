"""The public API: `DynamicInference(bundle_path, config).infer(image)`.

    >>> model = DynamicInference("bundle/", InferenceConfig(early_exit=[0.85, 0.92]))  # doctest: +SKIP
    >>> d = model.infer(cv2.imread("part.png"))                                         # doctest: +SKIP
    >>> d.label, d.confidence, d.exit_index, d.latency_ms                               # doctest: +SKIP
    ('scratch', 0.97, 0, 1.9)

For callers that preprocess elsewhere (the service does it in the source's decode thread):
`infer_tensor(x, prep_ms)`; for checks that need every exit and hidden state: `run_all_stages(x)`.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.backends import open_backend
from edge_runtime.bundle import Bundle
from edge_runtime.errors import BundleError, EdgeError
from edge_runtime.executor import EarlyExitExecutor, ExitPolicy
from edge_runtime.preprocess import preprocess, read_image


@dataclass
class InferenceConfig:
    """Runtime choices. None means: take the bundle's default."""

    backend: str = "onnxruntime"
    precision: str = "auto"  # "fp32", "quantized", or "auto" (quantized when the bundle has it)
    early_exit: list[float] | None = None  # confidence to exit early with a defect, per early exit
    early_exit_ok: list[float] | None = None  # confidence to exit early with "ok" (stricter)
    reuse_window: int | None = None  # frames a near-identical frame may reuse a decision (service); None: bundle's
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = the bundle's thread policy (see onnxruntime_backend)
    backend_options: dict = field(default_factory=dict)
    tiling: str = "auto"  # "auto": the bundle's input mode; "on": tiles (a tile bundle only); "off": resize
    tile_overlap: float | None = None  # None: the bundle's (manifest input.tile_overlap)
    roi: str | None = None  # "x0,y0,x1,y1" or a mask image: the area inspected in tile mode
    reuse_threshold: float | None = None  # grey levels; None: the bundle's (manifest dynamic.reuse_threshold)
    frame_threshold: float | None = None  # tile score for a defect frame; None: the bundle's fitted one
    trusted_key: str | None = None  # an Ed25519 public key (PEM): load only bundles it signed


@dataclass
class Decision:
    label: str
    confidence: float
    exit_index: int
    is_defect: bool
    latency_ms: float  # preprocess + stages, wall clock
    stage_ms: list[float]
    model_version: str
    reused: bool = False
    # tile mode only (None otherwise): where the defects are, the per-tile defect map, what the tiles cost
    defects: list[dict] | None = None  # [{"label", "confidence", "box": [x0, y0, x1, y1]}], frame pixels
    tile_map: list[list[float | None]] | None = None  # (rows, cols) tile defect scores
    tiles: dict | None = None  # {"tiles", "rows", "cols", "inferred", "reused", "stage_tiles", "cut_ms"}
    padded: bool | None = None  # the frame was smaller than one tile and was padded

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 5)
        d["latency_ms"] = round(self.latency_ms, 3)
        d["stage_ms"] = [round(x, 3) for x in self.stage_ms]
        for key in ("defects", "tile_map", "tiles", "padded"):
            if d[key] is None:
                del d[key]
        return d


class DynamicInference:
    def __init__(self, bundle_path: str | os.PathLike, config: InferenceConfig | dict | None = None):
        if isinstance(config, dict):
            config = InferenceConfig(**config)
        self.config = config = config or InferenceConfig()
        self.bundle = Bundle.open(bundle_path, trusted_key=config.trusted_key)
        self.spec = self.bundle.input
        self.classes = self.bundle.classes
        self.ok_index = self.bundle.ok_index
        self.precision = self._resolve_precision(config.precision)
        self.backend = open_backend(config.backend, self.bundle, precision=self.precision,
                                    **({"threads": config.threads} if config.backend == "onnxruntime" else {}),
                                    **config.backend_options)
        self._check_graphs()
        self.policy = ExitPolicy.from_spec(self.bundle.exit_policy, self.backend.num_stages - 1,
                                           config.early_exit, config.early_exit_ok)
        self.executor = EarlyExitExecutor(self.backend, self.policy, self.ok_index)
        self.tiled = self._open_tiling(config)

    def _check_graphs(self) -> None:
        """The manifest must fit its graphs: the input size stage 0 takes, and one class per exit output (with
        fewer, decisions would carry wrong labels). Checked where the backend tells (ONNX Runtime)."""
        size = [d for d in getattr(self.backend, "image_size", None) or [] if isinstance(d, int)]
        if len(size) == 2 and size != [self.spec.height, self.spec.width]:
            raise BundleError(f"bundle {self.bundle.root}: the manifest's input is {self.spec.height}x"
                              f"{self.spec.width} but stage 0 takes {size[0]}x{size[1]} images; the manifest does "
                              "not belong to these stages: re-export the bundle")
        for k, n in enumerate(getattr(self.backend, "exit_classes", None) or []):
            if n is not None and n != len(self.classes):
                raise BundleError(f"bundle {self.bundle.root}: the manifest names {len(self.classes)} classes "
                                  f"but stage {k}'s exit scores {n}; the manifest does not belong to these "
                                  "stages: re-export the bundle")

    def _open_tiling(self, config: InferenceConfig):
        """A TiledInference when frames are cut into tiles (the bundle's input mode, or --tiling), else None."""
        from edge_runtime.reuse import TileReuse

        mode = self.spec.mode
        if config.tiling not in ("auto", "on", "off"):
            raise EdgeError(f"tiling must be auto, on or off, not {config.tiling!r}")
        if config.tiling == "on" and mode != "tile":
            raise EdgeError(f"--tiling on: this bundle's input mode is {mode!r} (each frame scaled whole to "
                            f"{self.spec.width}x{self.spec.height}), so its model never saw native-scale tiles; "
                            "export it with --input-mode tile, or leave --tiling at auto")
        if config.tiling == "off" or mode != "tile":
            if config.roi:
                raise EdgeError("--roi limits the tiles inspected: it needs tile mode (--tiling auto on a tile "
                                "bundle, or --tiling on)")
            return None
        from edge_runtime.frame_inference import TiledInference
        from edge_runtime.tiling import parse_roi

        reuse = TileReuse(self.reuse_window, self.reuse_threshold)
        return TiledInference(self.backend, self.spec, self.policy, self.ok_index, self.classes,
                              self.frame_threshold, config.tile_overlap, parse_roi(config.roi), reuse)

    @property
    def frame_threshold(self) -> float:
        """Tile score that makes a frame a defect: the config's, else the bundle's fitted one for this
        precision, else 0.5 (a bundle whose frame threshold was never fitted)."""
        from edge_runtime.frame_inference import UNFITTED_THRESHOLD

        if self.config.frame_threshold is not None:
            return float(self.config.frame_threshold)
        frames = self.bundle.manifest.frames
        fitted = frames.threshold_for(self.precision) if frames else None
        return UNFITTED_THRESHOLD if fitted is None else fitted

    @property
    def reuse_threshold(self) -> float:
        own = self.config.reuse_threshold
        return float(own) if own is not None else self.bundle.manifest.dynamic.reuse_threshold

    @property
    def reuse_window(self) -> int:
        """Frames that may reuse a near-identical frame's decision: the config's, else the bundle's
        (manifest dynamic.reuse_window)."""
        own = self.config.reuse_window
        return int(own) if own is not None else self.bundle.manifest.dynamic.reuse_window

    def _resolve_precision(self, precision: str) -> str:
        has_q = all(s.quantized for s in self.bundle.stages)
        if precision == "auto":
            return "quantized" if has_q else "fp32"
        if precision not in ("fp32", "quantized"):
            raise EdgeError(f"precision must be fp32, quantized or auto, not {precision!r}")
        return precision

    @property
    def num_stages(self) -> int:
        """Stages (= exits) of the model; the last one always answers."""
        return self.executor.num_stages

    def set_policy(self, policy: ExitPolicy) -> None:
        self.policy = self.executor.policy = policy
        if self.tiled is not None:
            self.tiled.set_policy(policy)

    def infer(self, image: np.ndarray | str | os.PathLike, max_stage: int | None = None) -> Decision:
        """One frame (BGR uint8 (H, W, 3) as OpenCV gives it, or an image path) -> Decision. In tile mode
        the frame is cut into tiles and the decision says where its defects are."""
        if isinstance(image, (str, Path)):
            image = read_image(image)
        if self.tiled is not None:
            return self.infer_tiles(image)
        t0 = time.perf_counter()
        x = preprocess(image, self.spec)  # (1, 3, H, W)
        return self.infer_tensor(x, (time.perf_counter() - t0) * 1e3, max_stage)

    def infer_tiles(self, image: np.ndarray, compact: bool = True) -> Decision:
        """One frame in tile mode: every tile through per-tile early exit, one verdict with its boxes."""
        t0 = time.perf_counter()
        verdict, info = self.tiled.infer(image, compact=compact)
        latency = (time.perf_counter() - t0) * 1e3
        return Decision(self.classes[verdict.label_index], verdict.confidence, info.deepest_exit,
                        verdict.label_index != self.ok_index, latency, info.stage_ms, self.bundle.version,
                        reused=info.inferred == 0, defects=verdict.defects, tile_map=verdict.tile_map,
                        tiles=info.to_dict(), padded=info.grid.padded)

    def infer_tensor(self, x: np.ndarray, prep_ms: float = 0.0, max_stage: int | None = None) -> Decision:
        """One preprocessed frame x (1, 3, H, W) float32 -> Decision; latency_ms = prep_ms + the stages."""
        t0 = time.perf_counter()
        r = self.executor.run(x, max_stage=max_stage)
        latency = prep_ms + (time.perf_counter() - t0) * 1e3
        return Decision(self.classes[r.label_index], r.confidence, r.exit_index, r.label_index != self.ok_index,
                        latency, r.stage_ms, self.bundle.version)

    def run_all_stages(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every exit's logits [(1, classes)] and every stage's hidden state (on the host) for x (1, 3, H, W),
        on the stages in use, whatever the exit policy (the health monitor's checks)."""
        return stage_outputs(self.backend, x)


def stage_outputs(backend, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every exit's logits and every stage's hidden state (host arrays) of a StageBackend for x (1, 3, H, W)."""
    h, logits, hidden = x, [], []
    for k in range(backend.num_stages):
        h, lg = backend.run_stage(k, h)
        logits.append(lg)
        hidden.append(backend.hidden_to_host(h))
    return logits, hidden
