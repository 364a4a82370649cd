"""Distillation: the student learns the teacher's soft labels and the true labels, on every exit.

loss = sum_k w_k * [ alpha * T^2 * KL(softmax(teacher / T) || softmax(exit_k / T)) + (1 - alpha) * CE(exit_k, y) ]

The teacher's logits are computed once per training image (un-augmented) and reused for its flipped and
turned views: the teacher was trained with the same symmetries, and this keeps distillation on a
2-core CPU to minutes.
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
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the teacher's soft labels vs the true labels
    exit_weights: tuple[float, ...] | None = None  # per exit; default all 1
    seed: int = 0


def distill(teacher_dir, data, out, student_config: dict | None = None, config: DistillConfig | None = None,
            show_progress: bool = True) -> dict:
    """Train a student from TEACHER on DATA/train; save to OUT; return per-exit val accuracies."""
    import torch

    set_threads()
    config = config or DistillConfig()
    torch.manual_seed(config.seed)
    train = load_split(data, "train", size=_data_size(data, student_config))
    val = load_split(data, "val", size=train.images.shape[1], classes=train.classes)
    teacher = load_teacher(teacher_dir, classes=train.classes)
    to_teacher = [teacher.classes.index(c) for c in train.classes]  # teacher label order -> data order
    scfg = StudentConfig(classes=train.classes, image_size=train.images.shape[1], **(student_config or {}))
    student = Student(scfg)

    t_logits = torch.from_numpy(_teacher_logits(teacher, train.images, to_teacher))  # (N, C)
    teacher_val = _teacher_logits(teacher, val.images, to_teacher)
    _train(student, train, t_logits, config, show_progress)

    held_out = _calibration_split(data, train)
    temps = calibrate_exits(student, held_out.images, held_out.labels, lambda u8: normalize(u8, scfg.mean, scfg.std))
    scfg.extra["exit_temperatures"] = temps
    exits = predict(lambda u8: student(normalize(u8, scfg.mean, scfg.std)), val.images)
    y = val.labels.numpy()
    metrics = {"val_accuracy_per_exit": [float((e.argmax(1) == y).mean()) for e in exits],
               "exit_temperatures": temps,
               "teacher_val_accuracy": float((teacher_val.argmax(1) == y).mean()),
               "epochs": config.epochs, "classes": train.classes}
    save_student(student, out, metrics)
    return metrics


def _calibration_split(data, train):
    """Held-out labelled images to calibrate the exits on: DATA/calib, else DATA/val."""
    from pathlib import Path

    split = "calib" if (Path(data) / "calib").is_dir() else "val"
    return load_split(data, split, size=train.images.shape[1], classes=train.classes)


def _teacher_logits(teacher, images_u8, to_teacher: list[int]) -> np.ndarray:
    fn = lambda u8: teacher.logits(normalize(u8, teacher.mean, teacher.std, size=teacher.image_size))  # noqa: E731
    return predict(fn, images_u8, batch_size=64)[:, to_teacher]


def _train(student: Student, train, t_logits, config: DistillConfig, show_progress: bool) -> None:
    import torch
    import torch.nn.functional as F

    cfg = student.config
    weights = config.exit_weights or (1.0,) * len(cfg.stage_ends)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    n, T = len(train.labels), config.temperature
    steps = config.epochs * ((n + config.batch_size - 1) // config.batch_size)
    student.train()
    step = 0
    with progress_bar("distill", steps, show_progress) as advance:
        for epoch in range(config.epochs):
            for idx in batches(n, config.batch_size, gen):
                cosine_lr(opt, config.lr, step, steps, warmup=steps // 20)
                x = normalize(augment(train.images[idx], gen), cfg.mean, cfg.std)
                soft = F.log_softmax(t_logits[idx] / T, dim=-1)
                loss = 0.0
                for w, logits in zip(weights, student(x)):
                    kd = F.kl_div(F.log_softmax(logits / T, dim=-1), soft, log_target=True, reduction="batchmean")
                    ce = F.cross_entropy(logits, train.labels[idx])
                    loss = loss + w * (config.alpha * T * T * kd + (1 - config.alpha) * ce)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                advance(epoch=epoch + 1, loss=f"{loss.item():.3f}")


def _data_size(data, student_config: dict | None) -> int:
    if student_config and "image_size" in student_config:
        return int(student_config.pop("image_size"))
    from export.teacher_train import _size

    return _size(data)
