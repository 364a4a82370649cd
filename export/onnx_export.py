"""Staged ONNX export: one graph per stage, the manifest, and a check of each stage against torch.

Stage 0: image (B, 3, H, W) -> hidden (B, T, dim), logits (B, classes)
Stage k: hidden_in (B, T, dim) -> hidden (B, T, dim), logits (B, classes)

Opset 17 and the TorchScript exporter: opset 17 is the newest that TensorRT 8.6 (JetPack 6.0, the oldest supported)
parse, and the dynamo exporter in this torch emits opset 18 and fails to convert down.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edge_runtime.bundle import (AwqGroup, Bundle, DynamicSpec, ExitPolicySpec, InputSpec, Manifest, StageSpec,
                                 StudentSpec)
from edge_runtime.onnx_cost import graph_flops
from edge_runtime.bundle.sections import INPUT_MODES
from export.errors import ExportError

# tile mode: a tile whose pixels stay the same keeps its result for up to 5 frames (a static belt costs
# almost nothing); resize mode keeps reuse off unless the user turns it on
TILE_REUSE_WINDOW = 5

OPSET = 17
TOLERANCE = 1e-4  # max abs difference between torch and ONNX Runtime, per output


def export_bundle(student, out: str | Path, force: bool = False, progress=None, input_mode: str | None = None,
                  tile_overlap: float = 0.25) -> Bundle:
    """Write `student` as a bundle at `out`. The bundle is written beside it and moved into place only
    when every stage has passed its checks, so a failure never destroys an existing bundle.

    input_mode: how the runtime shows a frame to the model, "resize" or "tile"; None: "tile" for a student
    fine-tuned on frame tiles (export/frame_training.py), else "resize"."""
    out = Path(out)
    input_mode = input_mode or student.config.extra.get("input_mode", "resize")
    if input_mode not in INPUT_MODES:
        raise ExportError(f"--input-mode must be one of {', '.join(INPUT_MODES)}, not {input_mode!r}")
    if not 0.0 <= tile_overlap < 1.0:
        raise ExportError(f"--tile-overlap must lie in [0, 1), got {tile_overlap}")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_bundle(student, tmp, progress, input_mode, tile_overlap)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Bundle.open(out)


def _swap_into_place(new: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write_bundle(student, root: Path, progress, input_mode: str = "resize", tile_overlap: float = 0.25) -> Bundle:
    import torch

    cfg = student.config
    student = student.eval()
    (root / "stages").mkdir()
    stages = []
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    for k in range(len(cfg.stage_ends)):
        rel = f"stages/stage{k}.onnx"
        name = "image" if k == 0 else "hidden_in"
        _export_stage(student, k, x, root / rel, name)
        with torch.no_grad():
            hidden, logits = student.run_stage(k, x)  # (B, T, dim), (B, classes)
        err = check_stage(root / rel, name, x.numpy(), {"hidden": hidden.numpy(), "logits": logits.numpy()})
        stages.append(StageSpec(k, rel, name, graph_flops(root / rel), blocks=[0 if k == 0 else cfg.stage_ends[k - 1],
                                                                            cfg.stage_ends[k]],
                                hidden_shape=list(hidden.shape[1:]), max_abs_error_vs_torch=err))
        x = hidden
        if progress:
            progress(k, len(cfg.stage_ends))
    bundle = Bundle.create(root, _manifest(student, stages, input_mode, tile_overlap))
    for s in stages:
        bundle.add_file(s.file)
    bundle.save()
    return bundle


def _manifest(student, stages: list[StageSpec], input_mode: str = "resize", tile_overlap: float = 0.25) -> Manifest:
    cfg = student.config
    policy = ExitPolicySpec.default(len(stages) - 1)
    policy.temperatures = cfg.extra.get("exit_temperatures")
    groups = [AwqGroup(norm, list(linears)) for norm, linears in student.awq_groups()]
    return Manifest(
        classes=list(cfg.classes), ok_class=cfg.ok_class,
        input=InputSpec(cfg.image_size, cfg.image_size, tuple(cfg.mean), tuple(cfg.std), mode=input_mode,
                        tile_overlap=float(tile_overlap)),
        stages=stages, exit_policy=policy, producer="edge-qwq export",
        student=StudentSpec(cfg.dim, cfg.depth, cfg.heads, cfg.patch, list(cfg.exits), groups,
                            None if cfg.block_heads is None else list(cfg.block_heads), _pruning(cfg),
                            cfg.stem_width),
        dynamic=DynamicSpec(reuse_window=TILE_REUSE_WINDOW if input_mode == "tile" else 0))


def _pruning(cfg):
    """The pruning record export/prune.py left in the student's config, as the manifest's typed section."""
    from edge_runtime.bundle import PruningSpec

    p = cfg.extra.get("pruning")
    return None if p is None else PruningSpec.from_dict(p)


def _export_stage(student, k: int, x, path: Path, input_name: str) -> None:
    import torch

    from export.student import StageModule

    axes = {input_name: {0: "batch"}, "hidden": {0: "batch"}, "logits": {0: "batch"}}
    # The TorchScript exporter folds BatchNorm into the conv weights in place: export a copy.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(StageModule(copy.deepcopy(student), k), (x,), str(path), input_names=[input_name],
                          output_names=["hidden", "logits"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)


def check_stage(path: Path, input_name: str, x: np.ndarray, expected: dict[str, np.ndarray]) -> float:
    """onnx.checker plus ONNX Runtime vs torch; ExportError if any output differs by more than TOLERANCE."""
    import onnx

    from edge_runtime.backends.onnxruntime_backend import make_session

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path.name} fails onnx.checker: {str(e).splitlines()[0]}") from None
    sess = make_session(path)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {input_name: x.astype(np.float32)})))
    worst = 0.0
    for name, ref in expected.items():
        err = float(np.abs(got[name] - ref).max())
        if err > TOLERANCE:
            raise ExportError(f"{path.name}: output {name} differs from torch by {err:.2e} (> {TOLERANCE:g})")
        worst = max(worst, err)
    return worst
