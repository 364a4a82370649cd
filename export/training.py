"""Shared training plumbing: image folders as tensors, augmentation, batches, evaluation, progress."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_runtime.image_folder import open_split


@dataclass
class Split:
    images: "torch.Tensor"  # (N, H, W, 3) uint8, RGB  # noqa: F821
    labels: "torch.Tensor"  # (N,) int64  # noqa: F821
    classes: list[str]


def load_split(data, split: str, size: int, classes: list[str] | None = None) -> Split:
    import torch

    folder = open_split(data, split, classes)
    rgb = folder.load_rgb(size, size)  # (N, H, W, 3) uint8, resized as the runtime resizes
    return Split(torch.from_numpy(rgb), torch.from_numpy(folder.labels), folder.classes)


def normalize(images_u8, mean, std, size: int | None = None):
    """(B, H, W, 3) uint8 -> (B, 3, size, size) float32 normalized (as edge_runtime.preprocess does)."""
    import torch
    import torch.nn.functional as F

    x = images_u8.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def augment(images_u8, generator):
    """Random flips and 90-degree turns: a surface and its defect keep their class under all eight."""
    import torch

    x = images_u8
    if torch.rand(1, generator=generator).item() < 0.5:
        x = x.flip(2)
    if torch.rand(1, generator=generator).item() < 0.5:
        x = x.flip(1)
    k = int(torch.randint(0, 4, (1,), generator=generator).item())
    return torch.rot90(x, k, dims=(1, 2)) if k else x


def batches(n: int, batch_size: int, generator=None, shuffle: bool = True) -> Iterator["torch.Tensor"]:  # noqa: F821
    import torch

    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def predict(fn, images_u8, batch_size: int = 128) -> np.ndarray:
    """Apply fn to (B, H, W, 3) uint8 batches under no_grad; concatenates the (B, C) outputs, or each
    exit's when fn returns a list. Returns (N, C), or a list of those."""
    import torch

    outs = []
    with torch.no_grad():
        for idx in batches(len(images_u8), batch_size, shuffle=False):
            outs.append(fn(images_u8[idx]))
    if isinstance(outs[0], (list, tuple)):
        return [torch.cat([o[k] for o in outs]).numpy() for k in range(len(outs[0]))]
    return torch.cat(outs).numpy()


def cosine_lr(optimizer, base_lr: float, step: int, total: int, warmup: int) -> None:
    lr = base_lr * min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + np.cos(np.pi * min(1.0, step / max(1, total))))
    for g in optimizer.param_groups:
        g["lr"] = lr


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """A rich progress bar; yields advance(n=1, **fields)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        yield lambda n=1, **kw: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False) as p:
        task = p.add_task(description, total=total, info="")
        yield lambda n=1, **kw: p.update(task, advance=n, info=" ".join(f"{k}={v}" for k, v in kw.items()))


def set_threads(processes: int = 1) -> None:
    """All cores for one process; an equal share each when `processes` train side by side."""
    import os

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, processes)))


def train_epochs(model, n: int, epochs: int, lr: float, loss_fn, name: str, show_progress: bool = True,
                 batch_size: int = 64, seed: int = 0, weight_decay: float = 0.05) -> None:
    """AdamW with a cosine learning rate (5 % warm-up) over `epochs` shuffled passes of n examples;
    `loss_fn(idx, generator)` returns the loss of the batch `idx` (a tensor of example indices)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    model.train()
    step = 0
    with progress_bar(name, steps, show_progress) as advance:
        for epoch in range(epochs):
            for idx in batches(n, batch_size, gen):
                cosine_lr(opt, lr, step, steps, warmup=steps // 20)
                loss = loss_fn(idx, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                advance(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    model.eval()
