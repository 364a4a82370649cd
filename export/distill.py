"""Distillation: the student learns the teacher's soft labels and the true labels, on every exit.

loss = sum_k w_k * [ alpha * T^2 * KL(softmax(teacher / T) || softmax(exit_k / T)) + (1 - alpha) * CE(exit_k, y) ]

The teacher's logits are computed once per training image (un-augmented) and reused for its flipped and
turned views: the teacher was trained with the same symmetries, and this keeps distillation on a
2-core CPU to minutes. Under torch.distributed (export/distributed.py) each rank computes the teacher's
logits for its own share of the images and the ranks exchange them, so every image still meets the
teacher once; each step, every rank trains on its own disjoint slice of the global batch and DDP averages
the gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export.exit_calibration import calibrate_exits
from export.student import Student, StudentConfig, save_student
from export.teacher import load_teacher
from export.training import augment, batches, cosine_lr, load_split, normalize, predict, progress_bar, set_threads


@dataclass
class DistillConfig:
    epochs: int = 45
    batch_size: int = 64  # global: split across ranks when distributed
    lr: float = 2e-3
    weight_decay: float = 0.05
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the teacher's soft labels vs the true labels
    exit_weights: tuple[float, ...] | None = None  # per exit; default all 1
    seed: int = 0
    device: str = "cpu"


def distill(teacher_dir, data, out, student_config: dict | None = None, config: DistillConfig | None = None,
            show_progress: bool = True, ranks=None, on_trained=None) -> dict:
    """Train a student from TEACHER on DATA/train; save to OUT; return per-exit val accuracies.

    `ranks` (export.distributed.Ranks) when this process is one of several; rank 0 writes OUT.
    `on_trained(student)` is called on every rank once training ends."""
    import torch

    set_threads(1 if ranks is None else ranks.local_world)
    config = config or DistillConfig()
    torch.manual_seed(config.seed)
    student_config = dict(student_config or {})
    train = load_split(data, "train", size=_data_size(data, student_config))
    val = load_split(data, "val", size=train.images.shape[1], classes=train.classes)
    teacher = load_teacher(teacher_dir, classes=train.classes)
    to_teacher = [teacher.classes.index(c) for c in train.classes]  # teacher label order -> data order
    scfg = StudentConfig(classes=train.classes, image_size=train.images.shape[1], **student_config)
    student = Student(scfg)

    t_logits = torch.from_numpy(teacher_logits(teacher, train.images, to_teacher, ranks))  # (N, C)
    train_student(student, train, t_logits, config, show_progress and _is_main(ranks), ranks)
    if on_trained is not None:
        on_trained(student)
    if not _is_main(ranks):
        return {}
    teacher_val = teacher_logits(teacher, val.images, to_teacher)
    metrics = finish_student(student, data, train, val, out, teacher_val_logits=teacher_val,
                             extra={"epochs": config.epochs})
    return metrics


def finish_student(student: Student, data, train, val, out, teacher_val_logits=None, extra: dict | None = None) -> dict:
    """Calibrate the exits on held-out images, measure every exit on val, save the student with its metrics."""
    scfg = student.config
    held_out = _calibration_split(data, train)
    temps = calibrate_exits(student, held_out.images, held_out.labels, lambda u8: normalize(u8, scfg.mean, scfg.std))
    scfg.extra["exit_temperatures"] = temps
    y = val.labels.numpy()
    metrics = {**val_metrics(student, val), "exit_temperatures": temps, "classes": train.classes,
               "val_images": int(len(y)), **(extra or {})}
    if teacher_val_logits is not None:
        metrics["teacher_val_accuracy"] = float((teacher_val_logits.argmax(1) == y).mean())
    save_student(student, out, metrics)
    return metrics


def val_metrics(student: Student, val) -> dict:
    """Accuracy per exit, and with early exit (default policy) and its exit rates, on the val split."""
    cfg = student.config
    exits = predict(lambda u8: student(normalize(u8, cfg.mean, cfg.std)), val.images)
    y = val.labels.numpy()
    return {"val_accuracy_per_exit": [float((e.argmax(1) == y).mean()) for e in exits],
            **early_exit_metrics(exits, y, cfg.classes.index(cfg.ok_class))}


def early_exit_metrics(exits: list[np.ndarray], y: np.ndarray, ok_index: int) -> dict:
    """Accuracy and exit rates on val under the default exit policy (what a fresh bundle runs with)."""
    from edge_runtime.executor import ExitPolicy, simulate_exits

    pred, exit_at = simulate_exits(exits, ExitPolicy.build(len(exits) - 1), ok_index)
    return {"val_early_exit_accuracy": float((pred == y).mean()),
            "val_exit_rates": [float((exit_at == k).mean()) for k in range(len(exits))]}


def _calibration_split(data, train):
    """Held-out labelled images to calibrate the exits on: DATA/calib, else DATA/val."""
    from pathlib import Path

    split = "calib" if (Path(data) / "calib").is_dir() else "val"
    return load_split(data, split, size=train.images.shape[1], classes=train.classes)


def teacher_logits(teacher, images_u8, to_teacher: list[int], ranks=None) -> np.ndarray:
    """(N, C) teacher logits in the data's class order; with `ranks`, each rank computes its share."""
    fn = lambda u8: teacher.logits(normalize(u8, teacher.mean, teacher.std, size=teacher.image_size))  # noqa: E731
    if ranks is None or ranks.world == 1:
        return predict(fn, images_u8, batch_size=64)[:, to_teacher]
    mine = np.arange(len(images_u8))[ranks.rank::ranks.world]
    part = predict(fn, images_u8[mine], batch_size=64)[:, to_teacher]
    return ranks.gather_rows(part, len(images_u8))


def train_student(student: Student, train, t_logits, config: DistillConfig, show_progress: bool,
                  ranks=None) -> None:
    """Distil for config.epochs: every exit learns the teacher's soft labels and the true labels."""
    import torch

    cfg = student.config
    device = torch.device(config.device)
    student.to(device)
    model = ranks.wrap(student) if ranks is not None else student
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)  # the same on every rank: the same global batches
    n = len(train.labels)
    steps = config.epochs * ((n + config.batch_size - 1) // config.batch_size)
    student.train()
    step = 0
    with progress_bar("distill", steps, show_progress) as advance:
        for epoch in range(config.epochs):
            for idx in batches(n, config.batch_size, gen):
                cosine_lr(opt, config.lr, step, steps, warmup=steps // 20)
                if ranks is not None:
                    idx = ranks.shard(idx)  # this rank's disjoint slice of the global batch
                view = augment(train.images[idx], gen)
                x = normalize(view, cfg.mean, cfg.std).to(device)
                loss = distill_loss(model(x), t_logits[idx].to(device), train.labels[idx].to(device), config)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if ranks is not None:
                    ranks.after_step(step, idx, student)
                advance(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    student.to("cpu")


def distill_loss(exit_logits, t_logits, labels, config: DistillConfig):
    """Sum over exits of the soft-label KL (at the temperature) and the hard-label cross entropy."""
    import torch.nn.functional as F

    T = config.temperature
    weights = config.exit_weights or (1.0,) * len(exit_logits)
    soft = F.log_softmax(t_logits / T, dim=-1)
    loss = 0.0
    for w, logits in zip(weights, exit_logits):
        kd = F.kl_div(F.log_softmax(logits / T, dim=-1), soft, log_target=True, reduction="batchmean")
        ce = F.cross_entropy(logits, labels)
        loss = loss + w * (config.alpha * T * T * kd + (1 - config.alpha) * ce)
    return loss


def _is_main(ranks) -> bool:
    return ranks is None or ranks.rank == 0


def _data_size(data, student_config: dict) -> int:
    if "image_size" in student_config:
        return int(student_config.pop("image_size"))
    from export.teacher_train import _size

    return _size(data)
