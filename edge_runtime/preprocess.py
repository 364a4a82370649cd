"""Frames to tensors, exactly as every stage of the pipeline sees them (training, calibration, runtime).

Frames are OpenCV's BGR uint8 arrays (H, W, 3). The tensor is float32 (B, 3, H, W), RGB, normalized with
the bundle's mean and std on [0, 1] pixels.

Decoding: `read_image` for image files; JPEG data (files, and the frames of MJPEG videos and streams, see
`edge_runtime.sources`) is first checked for damage (`jpeg_damage`), which the decoder itself does not report.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_runtime.bundle import InputSpec
from edge_runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# ---------------------------------------------------------------- damaged JPEGs
# libjpeg decodes a damaged or truncated JPEG without an error (it warns on stderr and fills what it could not
# read with grey), so OpenCV returns an image for it. `jpeg_damage` checks the structure the decoder relies
# on, in NumPy, at a small fraction of a decode: markers and segment lengths, and in the entropy-coded data
# that every 0xFF is a stuffed 0xFF00 or the next restart marker in order (and, with a restart interval, that
# the scan holds as many restart intervals as the frame has MCUs), then an end-of-image marker. Random bytes
# break these rules within a few hundred bytes (an 0xFF followed by anything but 0x00 is a 253-in-256 chance
# per 0xFF); damage too small to produce one (a few bit flips) is not caught.
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_BLOCK_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC9, 0xCA))  # non-hierarchical DCT: MCUs of 8x8 blocks
_BETWEEN = frozenset((0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)))  # tables, DRI, DNL, COM, APPn
_PADDING = np.array([0x00, 0x0A, 0x0D, 0x20, 0xFF], np.uint8)  # may follow the end of an MJPEG frame


def jpeg_damage(data, trailing_ok: bool = False) -> str | None:
    """None if the JPEG `data` (bytes or a uint8 array) is structurally intact, else what is wrong, e.g.
    "truncated (no end-of-image marker)". `trailing_ok`: bytes after the end-of-image marker are ignored (as
    in image files: MPO, maker trailers); otherwise only padding may follow it (a frame of a stream).

        >>> jpeg_damage(cv2.imencode(".jpg", image)[1])                    # doctest: +SKIP
        >>> jpeg_damage(cv2.imencode(".jpg", image)[1][:-100])             # doctest: +SKIP
        'truncated (no end-of-image marker)'
    """
    b = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data, np.uint8).reshape(-1)
    n = b.size
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8:
        return "not a JPEG (no start-of-image marker)"
    ff = np.flatnonzero(b[:-1] == 0xFF)  # every 0xFF that has a next byte, for the scans
    truncated = "truncated (no end-of-image marker)"
    frame: tuple | None = None  # (SOF marker, height, width, {component id: (h, v)})
    restart, scans, pos = 0, 0, 2
    while True:
        if pos >= n:
            return truncated
        if b[pos] != 0xFF:
            return f"corrupt (no marker where one must be, byte {pos})"
        while pos < n and b[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return truncated
        m, at = int(b[pos]), pos - 1
        pos += 1
        if m == 0xD9:  # end of image
            if scans == 0:
                return "corrupt (end-of-image marker before any image data)"
            rest = b[pos:]
            if trailing_ok or not rest.size or np.isin(rest, _PADDING).all():
                return None
            return f"corrupt ({rest.size} bytes after the end-of-image marker)"
        if m != 0xDA and m not in _SOF and m not in _BETWEEN:
            return f"corrupt (invalid marker 0xFF{m:02X} at byte {at})"
        if pos + 2 > n:
            return truncated
        length = (int(b[pos]) << 8) | int(b[pos + 1])
        if length < 2:
            return f"corrupt (segment length {length} at byte {at})"
        if pos + length > n:
            return truncated
        seg = b[pos + 2:pos + length].tobytes()
        pos += length
        why = None
        if m in _SOF:
            why = "a second frame header" if frame is not None else None
            frame = frame or _frame_header(m, seg)
            why = why or (None if frame else "bad frame header")
        elif m == 0xDD:
            why = None if len(seg) == 2 else "bad restart interval"
            restart = (seg[0] << 8) | seg[1] if len(seg) == 2 else 0
        elif m == 0xDB:
            why = _check_tables(seg, lambda t: 64 * (1 + (t >> 4)) if t >> 4 <= 1 and t & 15 <= 3 else None, "DQT")
        elif m == 0xC4:
            why = _check_tables(seg, None, "DHT")
        elif m == 0xDA:
            if frame is None:
                return "corrupt (image data before the frame header)"
            ns = seg[0] if seg else 0
            ids = [seg[1 + 2 * i] for i in range(ns)] if 1 <= ns <= 4 and len(seg) == 4 + 2 * ns else None
            if ids is None or len(set(ids)) != ns or any(i not in frame[3] for i in ids):
                return f"corrupt (bad scan header at byte {at})"
            end = _scan_end(b, ff, pos, restart, _mcus(frame, ids))
            if isinstance(end, str):
                return end
            scans, pos = scans + 1, end
        if why:
            return f"corrupt ({why} at byte {at})"


def _frame_header(marker: int, seg: bytes) -> tuple | None:
    nf = seg[5] if len(seg) >= 6 else 0
    if not 1 <= nf <= 4 or len(seg) != 6 + 3 * nf:
        return None
    height, width = (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4]
    comps = {}
    for i in range(nf):
        cid, hv, tq = seg[6 + 3 * i:9 + 3 * i]
        if not (1 <= hv >> 4 <= 4 and 1 <= hv & 15 <= 4) or tq > 3:
            return None
        comps[cid] = (hv >> 4, hv & 15)
    return (marker, height, width, comps) if width and len(comps) == nf else None


def _check_tables(seg: bytes, size_of, name: str) -> str | None:
    """DQT (size_of: a table's size from its Pq/Tq byte) or DHT (None: Huffman tables) fill the segment."""
    i = 0
    while i < len(seg):
        t = seg[i]
        if size_of is not None:
            size = size_of(t)
        else:
            counts = seg[i + 1:i + 17]
            size = 16 + sum(counts) if t >> 4 <= 1 and t & 15 <= 3 and len(counts) == 16 and sum(counts) <= 256 \
                else None
        if size is None:
            return f"bad {name} table"
        i += 1 + size
    return None if i == len(seg) else f"bad {name} length"


def _mcus(frame: tuple, ids: list[int]) -> int | None:
    """MCUs in a scan of these components (None: unknown, e.g. the height comes later in a DNL)."""
    marker, height, width, comps = frame
    if marker not in _BLOCK_SOF or not height:
        return None
    hmax, vmax = max(h for h, _ in comps.values()), max(v for _, v in comps.values())
    if len(ids) > 1:  # interleaved: one MCU covers 8*hmax x 8*vmax pixels
        return -(-width // (8 * hmax)) * -(-height // (8 * vmax))
    h, v = comps[ids[0]]
    return -(-width * h // (8 * hmax)) * -(-height * v // (8 * vmax))


def _scan_end(b: np.ndarray, ff: np.ndarray, start: int, restart: int, mcus: int | None) -> int | str:
    """The position of the marker that ends the entropy-coded data starting at `start`, or what is wrong."""
    p = ff[np.searchsorted(ff, start):]
    nxt = b[p + 1]
    p = p[(nxt != 0x00) & (nxt != 0xFF)]  # markers (not stuffed bytes, not fill bytes before a marker)
    codes = b[p + 1]
    rst = (codes >= 0xD0) & (codes <= 0xD7)
    ends = np.flatnonzero(~rst)
    if not ends.size:
        return "truncated (no end-of-image marker)"
    k = int(ends[0])
    if k:
        if not restart:
            return f"corrupt (restart marker without a restart interval, byte {int(p[0])})"
        bad = np.flatnonzero(codes[:k] - 0xD0 != np.arange(k) % 8)
        if bad.size:
            return f"corrupt (restart marker out of order at byte {int(p[bad[0]])})"
    if restart and mcus is not None and k != -(-mcus // restart) - 1:
        return f"corrupt ({k} restart intervals where the image has {-(-mcus // restart) - 1}: data lost)"
    return int(p[k])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3); InputError if it is not a readable image, or a JPEG
    that is damaged or truncated (`jpeg_damage`; libjpeg would return it with grey where data is missing)."""
    import cv2

    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise InputError(f"{path}: no such file")
    damage = jpeg_damage(data, trailing_ok=True) if data[:2].tobytes() == b"\xff\xd8" else None
    if damage:
        raise InputError(f"{path}: JPEG {damage}; not decoded")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # over the pixel limit (edge_runtime.MAX_IMAGE_PIXELS), or a codec refusing it
        limit = "over the decoding limit of " + os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "?") + " pixels" \
            if "MAX_IMAGE_PIXELS" in str(e) else "refused by the decoder"
        raise InputError(f"{path}: image {limit}; not decoded") from None
    if img is None:
        raise InputError(f"{path}: not a readable image (corrupt, empty or not an image format)")
    return img


def to_rgb_resized(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """BGR uint8 (H, W, 3) of any size -> RGB uint8 (spec.height, spec.width, 3)."""
    import cv2

    if frame_bgr is None or frame_bgr.ndim not in (2, 3) or frame_bgr.size == 0:
        raise InputError("empty or malformed frame")
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    if frame_bgr.shape[:2] != (spec.height, spec.width):
        frame_bgr = cv2.resize(frame_bgr, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def normalize_rgb(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 (B, H, W, 3) or (H, W, 3) -> float32 (B, 3, H, W) normalized."""
    if rgb.ndim == 3:
        rgb = rgb[None]
    x = rgb.astype(np.float32) * (1.0 / 255.0)  # (B, H, W, 3) in [0, 1]
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (B, 3, H, W)


def preprocess(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR frame -> the stage-0 input (1, 3, H, W) float32."""
    return normalize_rgb(to_rgb_resized(frame_bgr, spec), spec)
