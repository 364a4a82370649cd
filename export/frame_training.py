"""Training the student for whole frames (tile mode): native-scale tiles cut from training frames.

Crops alone do not make a frame inspector. Over the 234 tiles of a 1280x960 frame a 1 % per-tile false
alarm rate flags most good frames, and the crops never show a defect cut by a tile border or the surface
between defects. So after distillation the student is fine-tuned on tiles cut from the `train` frames
(never the frames the threshold is fitted on or scored on), exactly as the runtime cuts them:

* positives: tiles holding most (>= 60 %) of a defect's box, plus crops at random offsets around each
  defect (a defect can sit anywhere in a tile at run time);
* hard negatives: the defect-free tiles the current student scores as most defect-like (mined with the
  student itself), plus as many random defect-free tiles;
* tiles holding only a sliver of a defect are left out (neither label is true for them);
* the crop training set is replayed, so the student stays a crop classifier too.

    >>> stats = fine_tune_for_frames(student, crops, "data/frames/train")   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSIDE = 0.6  # a tile is a positive when it holds at least this share of a defect's box
AROUND = 8  # extra crops per defect at random offsets
SUBTLE_WEIGHT = 2  # subtle defects (marked in boxes.json) get this many times as many crops: they are rarer
#                    in what the student learnt from the crops, and the hardest to see


@dataclass
class TileSet:
    positives: np.ndarray  # (P, T, T, 3) uint8 RGB
    positive_labels: np.ndarray  # (P,) int64
    negatives: np.ndarray  # (Q, T, T, 3) uint8 RGB: defect-free tiles kept (hard and random)
    ambiguous: int  # tiles left out
    negatives_seen: int = 0  # defect-free tiles looked at


def _inter(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def tile_label(rect, defects: list[dict], classes: list[str]) -> int | None:
    """A grid tile's training label: the class of the defect it mostly holds, ok (the ok class index is
    not needed here: -1) when it touches none, None when it holds only a sliver of one."""
    best, share_best, touched = None, 0.0, False
    for d in defects:
        b = d["box"]
        inter = _inter(rect, b)
        if not inter:
            continue
        touched = True
        share = inter / max(1, (b[2] - b[0]) * (b[3] - b[1]))
        if share >= INSIDE and share > share_best:
            best, share_best = classes.index(d["label"]), share
    if best is not None:
        return best
    return None if touched else -1


def _around(frame_rgb: np.ndarray, box, tile: int, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """n crops of tile x tile holding the whole box (or its centre part when it is larger), inside the frame."""
    h, w = frame_rgb.shape[:2]
    out = []
    for _ in range(n):
        lo_x, hi_x = max(0, box[2] - tile), min(box[0], w - tile)
        lo_y, hi_y = max(0, box[3] - tile), min(box[1], h - tile)
        x = int(rng.integers(min(lo_x, hi_x), max(lo_x, hi_x) + 1))
        y = int(rng.integers(min(lo_y, hi_y), max(lo_y, hi_y) + 1))
        out.append(frame_rgb[y:y + tile, x:x + tile])
    return out


def collect_tiles(frames_dir, classes: list[str], spec, score=None, hard_per_frame: int = 16,
                  random_per_frame: int = 16, seed: int = 0, limit: int | None = None) -> TileSet:
    """Label every grid tile of the training frames and add crops around each defect. Of each frame's
    defect-free tiles, keep the `hard_per_frame` that `score` (tiles u8 (n, T, T, 3) -> (n,) defect score)
    rates most defect-like and `random_per_frame` others at random: memory stays bounded on many frames."""
    import cv2

    from edge_runtime.frame_eval import load_frames
    from edge_runtime.tiling import TileGrid

    frames = load_frames(frames_dir, limit)
    rng = np.random.default_rng([seed, 7])
    tile = spec.height
    pos, pos_y, neg, ambiguous, seen = [], [], [], 0, 0
    for i in range(len(frames)):
        rgb = cv2.cvtColor(frames.image(i), cv2.COLOR_BGR2RGB)  # (H, W, 3)
        grid = TileGrid.for_frame(rgb.shape[:2], (spec.height, spec.width), spec.tile_overlap)
        truth, free = frames.truth[i], []
        for x0, y0, x1, y1 in grid.rects.tolist():
            label = tile_label((x0, y0, x1, y1), truth, classes)
            if label is None:
                ambiguous += 1
            elif label < 0:
                free.append(rgb[y0:y1, x0:x1])
            else:
                pos.append(rgb[y0:y1, x0:x1])
                pos_y.append(label)
        for d in truth:
            crops = _around(rgb, d["box"], tile, rng, AROUND * (SUBTLE_WEIGHT if d.get("subtle") else 1))
            pos += crops
            pos_y += [classes.index(d["label"])] * len(crops)
        if free:
            free_arr = np.stack(free)  # (n, T, T, 3)
            seen += len(free_arr)
            neg.append(free_arr[_pick(free_arr, score, hard_per_frame, random_per_frame, rng)])
    shape = (0, tile, tile, 3)
    return TileSet(np.stack(pos) if pos else np.zeros(shape, np.uint8), np.asarray(pos_y, np.int64),
                   np.concatenate(neg) if neg else np.zeros(shape, np.uint8), ambiguous, seen)


def _pick(tiles: np.ndarray, score, hard: int, random: int, rng: np.random.Generator) -> np.ndarray:
    """Indices: the `hard` highest-scoring tiles (when a scorer is given) and `random` of the rest."""
    top = np.argsort(score(tiles))[::-1][:hard] if score is not None else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(tiles)), top)
    return np.concatenate([top, rng.choice(rest, size=min(random, len(rest)), replace=False)]).astype(np.int64)


def student_scorer(student):
    """tiles u8 (n, T, T, 3) -> (n,) the student's defect score (1 - p(ok)) at its last exit."""
    import torch

    from export.training import normalize

    cfg = student.config
    ok = cfg.classes.index(cfg.ok_class)

    def score(tiles: np.ndarray) -> np.ndarray:
        student.eval()
        with torch.no_grad():
            p = torch.softmax(student(normalize(torch.from_numpy(tiles), cfg.mean, cfg.std))[-1], dim=1)
        return (1.0 - p[:, ok]).numpy()

    return score


def fine_tune_for_frames(student, crops, frames_dir, epochs: int = 3, lr: float = 5e-4, hard_per_frame: int = 16,
                         random_per_frame: int = 8, seed: int = 0, show_progress: bool = True, log=print,
                         rounds: int = 3) -> dict:
    """Fine-tune `student` (its exit temperatures unfolded) on crops + frame tiles, in `rounds` rounds of
    `epochs` epochs: each round mines its hard negatives again with the student as the last round left it
    (what it still calls a defect on good surface). Returns what it used."""
    spec = _spec(student.config)
    used = []
    for r in range(rounds):
        tiles = collect_tiles(frames_dir, student.config.classes, spec, student_scorer(student), hard_per_frame,
                              random_per_frame, seed + r)
        log(f"round {r + 1}/{rounds}: {len(tiles.positives)} defect tiles, {len(tiles.negatives)} defect-free "
            f"tiles ({hard_per_frame} hardest and {random_per_frame} random per frame, of {tiles.negatives_seen}), "
            f"{tiles.ambiguous} border tiles left out, {len(crops.labels)} crops replayed")
        _train(student, crops, tiles, epochs, lr * (0.5 ** r), seed + r, show_progress, f"frame tiles {r + 1}/{rounds}")
        used.append({"defect_tiles": int(len(tiles.positives)), "defect_free_tiles": int(len(tiles.negatives)),
                     "negatives_seen": int(tiles.negatives_seen), "border_tiles_left_out": int(tiles.ambiguous)})
    return {"frames_dir": str(Path(frames_dir)), "rounds": used, "hard_per_frame": hard_per_frame,
            "random_per_frame": random_per_frame, "crops_replayed": int(len(crops.labels)),
            "epochs_per_round": epochs, "lr": lr}


def _train(student, crops, tiles: TileSet, epochs: int, lr: float, seed: int, show_progress: bool,
           name: str) -> None:
    """Cross entropy on every exit over crops + defect tiles + defect-free tiles, cosine learning rate."""
    import torch
    import torch.nn.functional as F

    from export.training import augment, normalize, train_epochs

    cfg = student.config
    ok = cfg.classes.index(cfg.ok_class)
    images = torch.from_numpy(np.concatenate([crops.images.numpy(), tiles.positives, tiles.negatives]))
    labels = torch.from_numpy(np.concatenate([crops.labels.numpy(), tiles.positive_labels,
                                              np.full(len(tiles.negatives), ok, np.int64)]))  # (N,)

    def loss(idx, gen):
        x = normalize(augment(images[idx], gen), cfg.mean, cfg.std)  # (B, 3, T, T)
        return sum(F.cross_entropy(logits, labels[idx]) for logits in student(x))

    train_epochs(student, len(labels), epochs, lr, loss, name, show_progress, seed=seed)


def _spec(cfg):
    """The input spec tiles are cut with: the student's input size, the default overlap."""
    from edge_runtime.bundle import InputSpec

    return InputSpec(cfg.image_size, cfg.image_size, tuple(cfg.mean), tuple(cfg.std), mode="tile")


def frame_tune_student(student_dir, data, frames_dir, out, epochs: int = 3, lr: float = 5e-4,
                       hard_per_frame: int = 16, random_per_frame: int = 8, seed: int = 0,
                       show_progress: bool = True, log=print, rounds: int = 3) -> dict:
    """Load a distilled student, fine-tune it on frame tiles, re-fit its exit temperatures, and save it to
    OUT marked for tile mode (export then writes `input.mode: tile`). Returns its metrics on DATA/val."""
    import torch

    from export.distill import finish_student
    from export.prune import unfold_temperatures
    from export.student import load_student
    from export.training import load_split, set_threads

    set_threads()
    torch.manual_seed(seed)
    student = load_student(student_dir)
    cfg = student.config
    train = load_split(data, "train", cfg.image_size, classes=cfg.classes)
    val = load_split(data, "val", cfg.image_size, classes=cfg.classes)
    unfold_temperatures(student)  # train at the logit scale distillation trained at; finish_student refits them
    stats = fine_tune_for_frames(student, train, frames_dir, epochs, lr, hard_per_frame, random_per_frame, seed,
                                 show_progress, log, rounds)
    cfg.extra["input_mode"] = "tile"
    cfg.extra["frame_training"] = stats
    return finish_student(student, data, train, val, out, extra={"frame_training": stats})
