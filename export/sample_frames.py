"""Sample *frames* and a sample *conveyor video*: large camera views with defects at known places.

The 96 px crops of `export.sample_data` train a tile classifier; a camera sees a whole frame (1280x960),
and per-tile errors compound over its ~234 tiles, so frame-level decisions need frames to be measured
and calibrated on. These frames are made of the same pieces as the crops:

- Surfaces are real photographs that scikit-image ships (brick, grass, gravel) at the crops' native scale
  (96 / c, c uniform in [96, 256): 0.375 to 1 frame px per photo px), quilted from random crops of the
  photograph cross-faded into each other with contrast-preserving weights (see `_tiled`),
  with the crops' gain (0.8-1.15), bias (+-15) and per-channel tint (0.85-1.1), a gentle illumination
  gradient across the frame (a few %: line lighting), a random horizontal flip and sensor noise N(0, 2).
- Defects are synthetic, drawn by the crops' own generators at the crop size 96 and pasted in, so a
  defect has exactly the pixel size it has in a crop:
    scratch  a straight or gently bent bright line, 24-48 px long, 1-2 px wide,  contrast +80..+130
    crack    a dark jagged random walk of 10-15 steps of 2.4-3.8 px, 2 px wide, contrast -90..-140
    spot     a soft ellipse, semi-axes 3-7 px, rust-coloured (RGB x [1, 0.55, 0.3]), contrast +-70..110
  Contrasts are drawn from the crops' own ranges, so the frame defects are the crops' defects; a third of
  them are *subtle*, as in the crops: those whose contrast lies in the lowest third of their class's range
  (scratch +80..+97, crack -90..-107, spot +-70..83), flagged `"subtle": true` in boxes.json. A defect's
  centre lies at least 24 px from every edge of the frame.

Frames: OUT/{train,fit,score}/frame_00000.png with OUT/{split}/boxes.json (see `make_frames`); half the
frames are good, so false alarms per frame can be measured. The video (`make_conveyor_video`) is a fixed
camera over a static belt that parts cross from left to right, written as MJPG (real JPEG artefacts)
with a sidecar JSON of the defects visible in each frame. Deterministic for a seed. No torch.

Example:
    >>> from export.sample_frames import make_frames
    >>> make_frames("data/frames", n=100)  # doctest: +SKIP
    {'train': 100, 'fit': 100, 'score': 100}
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.sample_data import DEFECTS, TEXTURES, load_textures

FRAME_SPLITS = ("train", "fit", "score")  # hard-negative mining, frame threshold fitting, scoring
DEFECT_LABELS = ("crack", "scratch", "spot")
CROP = 96  # defects are drawn at the crops' size, so they keep the crops' pixel size
EDGE = 24  # a defect's centre lies at least this far from every edge
RUST = np.array([1.0, 0.55, 0.3], np.float32)  # spots are stains (RGB)
NOTE = "real scikit-image texture photographs, synthetic defects"
# |contrast| ranges of export.sample_data's generators (grey levels); the lowest third of each is "subtle"
CONTRAST = {"scratch": (80.0, 130.0), "crack": (90.0, 140.0), "spot": (70.0, 110.0)}


def _tiled(tex: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The photograph at a crop's native scale, quilted to cover the frame: float32 (H, W).

    A 1280x960 frame is larger than the 512 px photograph at any native scale, so the surface is made of
    random crops of it on a grid of cells, each crop overlapping its neighbours by a margin and
    cross-faded into them with weights that keep the texture's contrast (deviations from the mean are
    divided by the root of the summed squared weights). Mirror tiling would leave lines of symmetry
    (X- and V-shaped seams) that no camera sees and that look like cracks."""
    import cv2

    h, w = size_hw
    scale = CROP / int(rng.integers(CROP, min(tex.shape) // 2))  # a c px crop resized to 96: same law
    small = cv2.resize(tex, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
    th, tw = small.shape
    side = int(0.7 * min(th, tw))  # large crops (few seams) that still differ in where they come from
    m = max(4, side // 8)  # cross-fade margin on each side
    cell = side - 2 * m  # grid step
    ramp = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / m  # (side,)
    ramp = np.sin(np.clip(ramp, 0, 1) * np.pi / 2) ** 2  # raised cosine: 0 at the crop's edge, 1 inside
    weight = ramp[:, None] * ramp[None, :]  # (side, side)
    rows, cols = -(-h // cell) + 1, -(-w // cell) + 1
    big_h, big_w = rows * cell + 2 * m, cols * cell + 2 * m
    num = np.zeros((big_h, big_w), np.float32)  # sum of w * (crop - mean)
    wsum = np.zeros_like(num)
    wsq = np.zeros_like(num)
    mean = float(small.mean())
    for r in range(rows):
        for c in range(cols):
            y, x = int(rng.integers(0, th - side + 1)), int(rng.integers(0, tw - side + 1))
            crop = small[y:y + side, x:x + side]
            sl = (slice(r * cell, r * cell + side), slice(c * cell, c * cell + side))
            num[sl] += weight * (crop - mean)
            wsum[sl] += weight
            wsq[sl] += weight ** 2
    oy, ox = int(rng.integers(m, big_h - h - m + 1)), int(rng.integers(m, big_w - w - m + 1))
    win = (slice(oy, oy + h), slice(ox, ox + w))
    # normalised weights a_i = w_i / sum(w): sum a_i (x_i - mean) / sqrt(sum a_i^2) keeps the variance
    return mean + num[win] / np.sqrt(np.maximum(wsq[win], 1e-6))  # (H, W)


def _frame_surface(tex: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A defect-free surface: RGB float32 (H, W, 3) in [0, 255], without sensor noise."""
    h, w = size_hw
    patch = _tiled(tex, size_hw, rng)  # (H, W)
    gain, bias = rng.uniform(0.8, 1.15), rng.uniform(-15, 15)  # the ranges of sample_data._surface
    tint = rng.uniform(0.85, 1.1, size=3).astype(np.float32)  # (3,)
    gx, gy, bow = rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06), rng.uniform(0.0, 0.04)
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]  # (1, W)
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]  # (H, 1)
    light = 1 + gx * x + gy * y - bow * (2 * y) ** 2  # (H, W): a tilt plus a line light's fall-off
    return np.clip(((patch * gain + bias) * light)[..., None] * tint, 0, 255)


def _draw_defect(rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray, bool]:
    """One defect at the crop size, drawn exactly as in the crops: (label, mask (96, 96) in [0, 1], RGB
    delta (3,), subtle: its contrast lies in the lowest third of its class's range in the crops)."""
    label = DEFECT_LABELS[int(rng.integers(len(DEFECT_LABELS)))]
    mask, delta = DEFECTS[label](CROP, rng)
    lo, hi = CONTRAST[label]
    subtle = bool(abs(float(delta)) < lo + (hi - lo) / 3)
    colour = RUST if label == "spot" else np.ones(3, np.float32)
    return label, mask.astype(np.float32), (delta * colour).astype(np.float32), subtle


def _box(mask: np.ndarray, x0: int, y0: int) -> tuple[list[int], list[float]] | None:
    """The tight box (x1, y1 exclusive) of mask > 0.05 and the mask's centroid, in the coordinates where
    the mask's top-left pixel is (x0, y0); None when nothing of it is there."""
    ys, xs = np.nonzero(mask > 0.05)
    if len(xs) == 0:
        return None
    gy, gx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]  # (h, w) each
    total = float(mask.sum())
    centre = [round(x0 + float((gx * mask).sum()) / total, 2), round(y0 + float((gy * mask).sum()) / total, 2)]
    return [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1], centre


def _paste(img: np.ndarray, mask: np.ndarray, delta: np.ndarray, centre: tuple[float, float],
           paint: bool = True) -> tuple[np.ndarray, int, int]:
    """Put the 96x96 `mask` on `img` (H, W, 3) so that its centroid lands on `centre` (x, y), clipped at
    the border; adds mask * delta when `paint`. Returns (the clipped mask, its x0, its y0)."""
    h, w = img.shape[:2]
    gy, gx = np.mgrid[0:CROP, 0:CROP]
    total = max(float(mask.sum()), 1e-6)
    mcx, mcy = float((gx * mask).sum()) / total, float((gy * mask).sum()) / total
    left, top = int(round(centre[0] - mcx)), int(round(centre[1] - mcy))
    x0, y0, x1, y1 = max(0, left), max(0, top), min(w, left + CROP), min(h, top + CROP)
    sub = mask[y0 - top:y1 - top, x0 - left:x1 - left]  # (y1 - y0, x1 - x0)
    if paint:
        img[y0:y1, x0:x1] += sub[..., None] * delta
    return sub, x0, y0


def _centres(n: int, size_hw: tuple[int, int], rng: np.random.Generator, margin: int = EDGE,
             apart: float = 48.0) -> list[tuple[float, float]]:
    """`n` defect centres (x, y), `margin` px inside every edge, `apart` px from each other where 10
    tries allow (defects may still overlap on a small frame)."""
    h, w = size_hw
    out: list[tuple[float, float]] = []
    for _ in range(n):
        for _ in range(10):
            c = (float(rng.uniform(margin, w - margin)), float(rng.uniform(margin, h - margin)))
            if all(np.hypot(c[0] - o[0], c[1] - o[1]) >= apart for o in out):
                break
        out.append(c)
    return out


def _noisy_bgr(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise N(0, 2), clipped, uint8, RGB -> BGR for cv2: (H, W, 3)."""
    img = img + 2.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8)[..., ::-1])


def make_frame(textures: dict[str, np.ndarray], size_hw: tuple[int, int], rng: np.random.Generator,
               texture: str, n_defects: int, paint: bool = True) -> tuple[np.ndarray, list[dict]]:
    """One frame with `n_defects` defects: (BGR uint8 (H, W, 3), one dict per defect:
    {"label", "box": [x0, y0, x1, y1] (x1, y1 exclusive), "centre": [cx, cy], "subtle"}).

    `paint=False` makes the same random draws (same surface, boxes and noise) but leaves the defects
    off the pixels: the clean reference of the same frame, for checking where the defects changed it.
    """
    h, w = size_hw
    if min(h, w) <= 2 * EDGE:
        raise ValueError(f"a frame needs sides over {2 * EDGE} px, got {w}x{h}")
    img = _frame_surface(textures[texture], size_hw, rng)  # (H, W, 3) RGB float
    defects = [_draw_defect(rng) for _ in range(n_defects)]
    found = []
    for (label, mask, delta, subtle), centre in zip(defects, _centres(n_defects, size_hw, rng)):
        sub, x0, y0 = _paste(img, mask, delta, centre, paint)
        placed = _box(sub, x0, y0)
        if placed is not None:  # (a defect is never clipped away: its centre is 24 px inside)
            found.append({"label": label, "box": placed[0], "centre": placed[1], "subtle": subtle})
    return _noisy_bgr(img, rng), found


def frame_split_sizes(n: int, split_sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Frames per split: `n` each, unless `split_sizes` says otherwise for a split."""
    sizes = {split: int(n) for split in FRAME_SPLITS}
    unknown = set(split_sizes or {}) - set(FRAME_SPLITS)
    if unknown:
        raise ValueError(f"unknown frame splits {sorted(unknown)}; the splits are {list(FRAME_SPLITS)}")
    sizes.update({k: int(v) for k, v in (split_sizes or {}).items()})
    return sizes


def make_frames(out: str | Path, n: int, size_hw: tuple[int, int] = (960, 1280), seed: int = 0,
                split_sizes: dict[str, int] | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Write OUT/{train,fit,score}/frame_00000.png ... and OUT/{split}/boxes.json; returns frames written
    per split. Half the frames are good; the others have 1-3 defects. Each split draws from its own
    random stream, so a bigger `score` split leaves `train` and `fit` byte-identical.

    boxes.json: {"frame_size": [W, H], "frames": {"frame_00000.png": [defect dicts], ...}, "note": ...}
    """
    import cv2

    textures = load_textures()
    out = Path(out)
    sizes = frame_split_sizes(n, split_sizes)
    total, done = sum(sizes.values()), 0
    for s_idx, split in enumerate(FRAME_SPLITS):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 100, s_idx])
        boxes: dict[str, list[dict]] = {}
        for i in range(sizes[split]):
            n_defects = 0 if rng.random() < 0.5 else int(rng.integers(1, 4))
            img, boxes[f"frame_{i:05d}.png"] = make_frame(textures, size_hw, rng, TEXTURES[i % len(TEXTURES)],
                                                          n_defects)
            path = folder / f"frame_{i:05d}.png"
            if not cv2.imwrite(str(path), img):
                raise OSError(f"cannot write {path} (disk full or read-only?)")
            done += 1
            if progress:
                progress(done, total)
        (folder / "boxes.json").write_text(_boxes_json([size_hw[1], size_hw[0]], boxes))
    return sizes


def _boxes_json(frame_size: list[int], boxes: dict[str, list[dict]]) -> str:
    """boxes.json's text: one line per frame, so a diff or a reader sees frames, not brackets."""
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(defects)}" for name, defects in boxes.items())
    return (f'{{"frame_size": {json.dumps(frame_size)},\n "note": {json.dumps(NOTE)},\n'
            f' "frames": {{\n{rows}\n }}\n}}\n')


def _part(textures: dict[str, np.ndarray], texture: str, size_hw: tuple[int, int], rng: np.random.Generator,
          defect_share: float) -> tuple[np.ndarray, dict | None]:
    """A part: a rectangle of another photograph, maybe with one defect: (RGB float (ph, pw, 3),
    None or {"label", "subtle", "mask": (ph, pw)} in part coordinates)."""
    patch = _frame_surface(textures[texture], size_hw, rng)  # (ph, pw, 3)
    if rng.random() >= defect_share:
        return patch, None
    label, mask, delta, subtle = _draw_defect(rng)
    margin = min(EDGE, min(size_hw) // 3)
    full = np.zeros(size_hw, np.float32)  # the mask spread over the part: (ph, pw)
    _paste(full[..., None], mask, np.ones(1, np.float32), _centres(1, size_hw, rng, margin)[0])
    patch += full[..., None] * delta
    return patch, {"label": label, "subtle": subtle, "mask": full}


def make_conveyor_video(textures: dict[str, np.ndarray], out_path: str | Path,
                        size_hw: tuple[int, int] = (480, 640), frames: int = 150, fps: int = 15,
                        seed: int = 0, parts: int | None = None, defect_share: float = 0.5) -> dict:
    """A fixed camera over a static belt (one `make_frame` surface, fresh sensor noise every frame) that
    parts cross from left to right at the belt's constant speed (8-16 px per frame). Parts are ~120-200 px
    rectangles of another photograph (scaled down for frames under 480 px), one on screen at a time, with
    gaps of empty belt between them (about 30-50 % of frames show no part); a share `defect_share` of the
    parts carries one defect. `parts` caps how many parts pass (default: as many as fit).

    Writes `out_path` (MJPG in .avi: real JPEG artefacts) and `out_path.with_suffix(".json")`:
    {"frame_size": [W, H], "fps", "speed", "note", "frames": [[defect dicts visible in frame k], ...],
    "parts": [part box [x0, y0, x1, y1] or null, per frame]}; the defect dicts are `make_frame`'s, with
    boxes clipped to what is on screen. Returns {"frames", "fps", "frame_size": [W, H], "part_frames"}.
    """
    import cv2

    h, w = size_hw
    if min(h, w) < CROP:
        raise ValueError(f"a conveyor frame needs sides of at least {CROP} px, got {w}x{h}")
    out_path = Path(out_path)
    rng = np.random.default_rng([seed, 200])
    belt_texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    belt = _frame_surface(textures[belt_texture], size_hw, rng)  # (H, W, 3), static
    others = [t for t in TEXTURES if t != belt_texture]
    speed = int(rng.integers(8, 17))  # px per frame
    scale = min(1.0, min(h, w) / 480)
    plan = []  # (first frame, frames on screen, y, patch (ph, pw, 3), defect or None)
    t = int(rng.integers(0, 20))  # empty belt before the first part
    while t < frames and (parts is None or len(plan) < parts):
        ph, pw = (int(min(h - 8, max(48, round(rng.uniform(120, 200) * scale)))) for _ in range(2))
        patch, defect = _part(textures, others[int(rng.integers(len(others)))], (ph, pw), rng,
                              defect_share)
        y = int(rng.integers(4, h - ph - 3))
        on_screen = (w + pw - 1) // speed  # frames k with 0 < speed * (k + 1) < w + pw
        plan.append((t, on_screen, y, patch, defect))
        t += on_screen + int(round(on_screen * rng.uniform(0.45, 0.95)))  # then empty belt

    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write {out_path} (an .avi in a writable folder?)")
    per_frame, part_boxes, part_frames = [], [], 0
    try:
        for f in range(frames):
            img, visible, box = belt.copy(), [], None
            for start, on_screen, y, patch, defect in plan:
                if not start <= f < start + on_screen:
                    continue
                ph, pw = patch.shape[:2]
                x = speed * (f - start + 1) - pw  # the part's left edge, frame px
                x0, x1 = max(0, x), min(w, x + pw)
                img[y:y + ph, x0:x1] = patch[:, x0 - x:x1 - x]
                box = [x0, y, x1, y + ph]
                if defect is not None:
                    placed = _box(defect["mask"][:, x0 - x:x1 - x], x0, y)
                    if placed is not None:
                        visible.append({"label": defect["label"], "box": placed[0], "centre": placed[1],
                                        "subtle": defect["subtle"]})
            writer.write(_noisy_bgr(img, rng))
            per_frame.append(visible)
            part_boxes.append(box)
            part_frames += box is not None
    finally:
        writer.release()
    doc = {"frame_size": [w, h], "fps": fps, "speed": speed, "note": NOTE, "frames": per_frame,
           "parts": part_boxes}
    out_path.with_suffix(".json").write_text(json.dumps(doc) + "\n")
    return {"frames": frames, "fps": fps, "frame_size": [w, h], "part_frames": part_frames}
