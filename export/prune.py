"""Attention-head pruning: measure each head, remove the weak ones structurally, recover by distillation.

Importance: the head's gradient contribution to the loss (Michel, Levy and Neubig, "Are Sixteen Heads
Really Better than One?", 2019). For head h of block b,
    I(b, h) = sum over calibration images x of | sum over tokens and channels of dL/dy_h * y_h |
where y_h (T, head_dim) is the head's output before the output projection and L is the distillation loss
of every exit against the teacher (export/distill.py). The inner sum is the first-order change of the loss
when the head is masked (the derivative by a gate on the head); its absolute value is taken per image, so
what one image gains does not cancel what another loses. (The element-wise variant, sum |dL/dy * y|,
bounds it from above and ranks every head of a trained student as nearly equal.) I is normalised by the
block's most important head, so that head scores 1 and is always kept; a head below the threshold goes.

The removal is structural: the head's rows of the Q/K/V projection and its columns of the output
projection are cut (torch-pruning's channel functions do the cutting), so the pruned stage graphs are
smaller static graphs; TensorRT engines built from them stay static.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from export.errors import ExportError

SCORE = ("gradient contribution to the loss (Michel et al. 2019): per image |sum of dL/dy * y over the head's "
         "output|, summed over the calibration images; L = distillation loss of all exits")


@dataclass
class PruneResult:
    importance: list[list[float]]  # per block, per original head: normalised to the block's maximum
    kept: list[list[int]]  # per block: original indices of the heads kept
    threshold: float


def check_threshold(threshold: float) -> None:
    if not 0 < threshold < 1:
        raise ExportError(f"--prune-threshold {threshold:g}: the threshold is a fraction of each block's most "
                          "important head and lies strictly between 0 and 1")


def head_importance(student, images_u8, labels, t_logits, config, batch_size: int = 64) -> list[np.ndarray]:
    """Raw importance per block: (heads,) arrays of per-image |gradient contribution| (see the module doc)."""
    import torch

    from export.distill import distill_loss
    from export.training import normalize

    student.eval()  # BatchNorm statistics stay as trained
    attns = [b.attn for b in student.blocks]
    scores = [torch.zeros(a.heads, dtype=torch.float64) for a in attns]
    for a in attns:
        a.keep_heads = True
    try:
        for i in range(0, len(labels), batch_size):
            x = normalize(images_u8[i:i + batch_size], student.config.mean, student.config.std)
            n = len(x)  # the loss is a batch mean: times n, each image's own loss and gradient
            loss = n * distill_loss(student(x), t_logits[i:i + batch_size], labels[i:i + batch_size], config)
            student.zero_grad(set_to_none=True)
            loss.backward()
            for s, a in zip(scores, attns):
                y = a.head_out  # (B, heads, T, head_dim)
                s += (y.grad * y).sum(dim=(2, 3)).abs().sum(dim=0).detach().double()  # (B, heads) -> (heads,)
    finally:
        for a in attns:
            a.keep_heads, a.head_out = False, None
        student.zero_grad(set_to_none=True)
    return [s.numpy() for s in scores]


def select_heads(raw: list[np.ndarray], threshold: float) -> PruneResult:
    """Normalise each block's importance by its maximum; keep the heads at or above the threshold."""
    check_threshold(threshold)
    norm = [r / r.max() if r.max() > 0 else np.ones_like(r) for r in raw]
    kept = [[int(h) for h in np.flatnonzero(n >= threshold)] for n in norm]
    return PruneResult([[round(float(v), 4) for v in n] for n in norm], kept, threshold)


def prune_heads(student, kept: list[list[int]]):
    """A copy of `student` keeping only the heads `kept[b]` of each block b, cut structurally."""
    import torch_pruning as tp

    pruned = copy.deepcopy(student)
    cfg = pruned.config
    hd = cfg.head_dim
    for block, keep in zip(pruned.blocks, kept):
        attn = block.attn
        drop = [h for h in range(attn.heads) if h not in keep]
        if not drop:
            continue
        # qkv output channels: [q | k | v], each `heads` blocks of head_dim; proj input: the heads' channels
        cut_qkv = [part * attn.heads * hd + h * hd + j for part in range(3) for h in drop for j in range(hd)]
        cut_proj = [h * hd + j for h in drop for j in range(hd)]
        tp.prune_linear_out_channels(attn.qkv, cut_qkv)
        tp.prune_linear_in_channels(attn.proj, cut_proj)
        attn.heads = len(keep)
    cfg.block_heads = tuple(b.attn.heads for b in pruned.blocks)
    cfg.validate()
    return pruned.eval()


def prune_student(student_dir, teacher_dir, data, threshold: float, out, epochs: int = 5, lr: float = 5e-4,
                  show_progress: bool = True, log=print) -> dict:
    """Measure, prune, recover (a short distillation from the teacher), calibrate the exits, save to OUT.

    Returns metrics: importance, heads kept, per-exit accuracy before and after, attention FLOPs."""
    import torch

    from export.distill import DistillConfig, finish_student, teacher_logits, train_student, val_metrics
    from export.shapes import Shape, shape_cost
    from export.student import load_student
    from export.teacher import load_teacher
    from export.training import load_split, set_threads

    check_threshold(threshold)
    set_threads()
    student = load_student(student_dir)
    cfg = student.config
    if cfg.block_heads is not None:
        raise ExportError(f"{student_dir} is already pruned (heads per block {list(cfg.block_heads)}); prune "
                          "the unpruned student with the threshold you want")
    teacher = load_teacher(teacher_dir)
    _check_classes(cfg.classes, teacher.classes, student_dir, teacher_dir)
    train = load_split(data, "train", cfg.image_size, classes=cfg.classes)
    val = load_split(data, "val", cfg.image_size, classes=cfg.classes)
    calib = load_split(data, "calib" if (_split_exists(data, "calib")) else "train", cfg.image_size,
                       classes=cfg.classes)
    to_teacher = [teacher.classes.index(c) for c in cfg.classes]
    dcfg = DistillConfig(epochs=epochs, lr=lr)

    log(f"importance ({SCORE}) on {len(calib.labels)} calibration images")
    raw = head_importance(student, calib.images, calib.labels,
                          torch.from_numpy(teacher_logits(teacher, calib.images, to_teacher)), dcfg)
    sel = select_heads(raw, threshold)
    before = val_metrics(student, val)
    pruned = prune_heads(student, sel.kept)
    after_cut = val_metrics(pruned, val)
    log(f"heads kept per block: {[len(k) for k in sel.kept]} of {cfg.heads}; recovering for {epochs} epochs")
    unfold_temperatures(pruned)  # train at the logit scale distillation trained at; finish_student refits them
    train_student(pruned, train, torch.from_numpy(teacher_logits(teacher, train.images, to_teacher)), dcfg,
                  show_progress)
    full, cut = shape_cost(Shape.of(cfg), cfg.image_size, cfg.num_classes), \
        shape_cost(Shape.of(pruned.config), cfg.image_size, cfg.num_classes)
    pruning = {"threshold": threshold, "score": SCORE, "importance": sel.importance, "heads_kept": sel.kept,
               "heads_per_block_before": cfg.heads, "recovery_epochs": epochs,
               "attention_flops_before": full.attention_flops, "attention_flops_after": cut.attention_flops,
               "flops_before": full.flops, "flops_after": cut.flops}
    pruned.config.extra["pruning"] = pruning
    metrics = finish_student(pruned, data, train, val, out, extra={
        "pruning": pruning, "before": before, "after_cut": after_cut})
    return metrics


def unfold_temperatures(student) -> None:
    """Undo the exit temperatures export/exit_calibration.py folded into the heads (logits x T again)."""
    import torch

    temps = student.config.extra.pop("exit_temperatures", None)
    if not temps:
        return
    with torch.no_grad():
        for head, t in zip(student.heads, temps):
            head.fc.weight *= t
            head.fc.bias *= t


def _check_classes(student_classes, teacher_classes, student_dir, teacher_dir) -> None:
    missing = [c for c in student_classes if c not in teacher_classes]
    if missing:
        raise ExportError(f"the teacher {teacher_dir} has labels {list(teacher_classes)}, the student {student_dir} "
                          f"has classes {list(student_classes)}: {missing} are not the teacher's; recovery needs "
                          "the teacher the student was distilled from")


def _split_exists(data, split: str) -> bool:
    from pathlib import Path

    return (Path(data) / split).is_dir()

