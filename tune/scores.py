"""Every exit's top-1 class and confidence for every image of a split, computed once and cached on disk.

A trial's exit policy is then a few vectorised comparisons (`tune.simulate`), not a model run. The cache
key is the bundle's digest, the precision and the exact list of image files, so an edited bundle or another
data set never reuses stale scores.

    >>> s = split_scores(model, "data/", "calib", cache_dir="tune_out/cache")   # doctest: +SKIP
    >>> s.top.shape, s.conf.shape, s.labels.shape                               # doctest: +SKIP
    ((3, 148), (3, 148), (148,))
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.executor import softmax


@dataclass
class ExitScores:
    """Per exit k and image i: top-1 class top[k, i] and its softmax probability conf[k, i]."""

    top: np.ndarray  # (K, N) int64
    conf: np.ndarray  # (K, N) float32, the executor's softmax of the exit logits
    labels: np.ndarray | None  # (N,) int64 true classes, None for unlabelled frames
    source: str  # what the images were, for reports

    @classmethod
    def from_logits(cls, logits: list[np.ndarray], labels: np.ndarray | None, source: str) -> "ExitScores":
        """From every exit's logits [(N, C)] * K."""
        probs = [softmax(lg) for lg in logits]
        top = np.stack([p.argmax(1) for p in probs]).astype(np.int64)  # (K, N)
        conf = np.stack([p[np.arange(len(p)), t] for p, t in zip(probs, top)]).astype(np.float32)
        return cls(top, conf, labels, source)

    @property
    def stages(self) -> int:
        return self.top.shape[0]

    def __len__(self) -> int:
        return self.top.shape[1]


def exit_scores_of(model, x: np.ndarray, labels: np.ndarray | None, source: str, batch: int = 64) -> ExitScores:
    """Run every stage of `model` (a DynamicInference) on x (N, 3, H, W) once."""
    from edge_runtime.evaluate import exit_logits

    return ExitScores.from_logits(exit_logits(model.executor, x, batch), labels, source)


def split_scores(model, data: str | os.PathLike, split: str, cache_dir: str | os.PathLike | None = None,
                 progress=None) -> ExitScores:
    """Exit scores of every image in DATA/<split>/<class>/ (labels in the bundle's class order), from the
    cache when the same bundle, precision and files were scored before."""
    from edge_runtime.image_folder import open_split

    folder = open_split(data, split, classes=model.classes, allow_empty_classes=True)
    source = f"{len(folder)} images of {Path(data) / split}"
    key = hashlib.sha256("\n".join([model.bundle.digest, model.precision, *map(str, folder.paths)]).encode())
    path = Path(cache_dir) / f"scores-{split}-{key.hexdigest()[:20]}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return ExitScores(z["top"], z["conf"], z["labels"], source)
    x = _preprocessed(folder.paths, model.spec, progress)  # (N, 3, H, W)
    scores = exit_scores_of(model, x, folder.labels, source)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, top=scores.top, conf=scores.conf, labels=scores.labels)
        os.replace(tmp, path)
    return scores


def _preprocessed(paths: list[Path], spec, progress=None) -> np.ndarray:
    from edge_runtime.preprocess import preprocess, read_image

    out = np.empty((len(paths), 3, spec.height, spec.width), np.float32)
    for i, p in enumerate(paths):
        out[i] = preprocess(read_image(p), spec)[0]
        if progress:
            progress(i + 1, len(paths))
    return out
