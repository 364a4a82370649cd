"""Train a teacher from a config, for users (and the demo) who bring none."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from export.teacher import build_teacher, save_teacher
from export.training import augment, load_split, normalize, predict, set_threads, train_epochs


def train_teacher(data, out, arch: str = "resnet", epochs: int = 8, batch_size: int = 64, lr: float | None = None,
                  seed: int = 0, tiny: bool = False, show_progress: bool = True) -> dict:
    """Train on DATA/train, report on DATA/val, save_pretrained to OUT. Returns {"val_accuracy", ...}."""
    import torch

    set_threads()
    torch.manual_seed(seed)
    train = load_split(data, "train", size=_size(data))
    val = load_split(data, "val", size=_size(data), classes=train.classes)
    size = train.images.shape[1]
    teacher = build_teacher(arch, train.classes, size, tiny=tiny)
    model = teacher.model.train()
    lr = lr or (5e-4 if arch == "vit" else 1e-3)

    def loss(idx, gen):
        x = normalize(augment(train.images[idx], gen), teacher.mean, teacher.std)
        return torch.nn.functional.cross_entropy(model(pixel_values=x).logits, train.labels[idx],
                                                 label_smoothing=0.1)

    train_epochs(model, len(train.labels), epochs, lr, loss, f"teacher ({arch})", show_progress, batch_size, seed)
    logits = predict(lambda u8: teacher.logits(normalize(u8, teacher.mean, teacher.std)), val.images)
    acc = float((logits.argmax(1) == val.labels.numpy()).mean())
    save_teacher(teacher, out)
    (Path(out) / "train_metrics.json").write_text(f'{{"val_accuracy": {acc:.4f}, "arch": "{arch}"}}\n')
    return {"val_accuracy": acc, "arch": arch, "classes": train.classes}


def _size(data) -> int:
    """The data's image side: taken from its first training image."""
    from edge_runtime.image_folder import open_split
    from edge_runtime.preprocess import read_image

    first = open_split(data, "train").paths[0]
    h, w = read_image(first).shape[:2]
    return int(np.round((h + w) / 2))
