"""Frame sources: an image, a folder of images, a video file, and live cameras and streams.

    >>> src = open_source("line3.mp4")                  # doctest: +SKIP
    >>> for frame_id, frame_bgr, origin in src: ...     # doctest: +SKIP
    >>> src.summary()                                   # doctest: +SKIP
    'line3.mp4: 48 of 400 frames could not be decoded (20 damaged, 28 missing: the file ends early); skipped'
    >>> cam = open_source("http://127.0.0.1:8090/")     # doctest: +SKIP
    >>> frame = cam.read(timeout=0.5)                   # Frame, or None when nothing new arrived yet
    >>> cam.stats.stale_dropped, cam.stats.corrupt, cam.stats.reconnects   # doctest: +SKIP

URIs: a path (image, folder, video), ``v4l2:///dev/videoN``, ``csi://N[?width=&height=&fps=]`` (a GStreamer
``nvarguscamerasrc`` pipeline through OpenCV, on a Jetson), ``rtsp://...`` and ``http(s)://...`` (MJPEG).

Live sources keep only the latest frame: a reader thread decodes continuously and a frame the consumer did
not take in time is dropped and counted (``stale_dropped``). A frame the decoder rejects, or an empty one,
is skipped and counted (``corrupt``). A lost stream is reopened with capped exponential backoff
(``reconnects``; at most `LiveSource.BACKOFF` s between attempts, so a stream that comes back is seen within
a few seconds). None of these ends the source; only ``close()`` does, or, while it waits for its first
frame, the `stop` event it was given (`SourceStopped`).

Opening a live source waits for its first frame (`connect_timeout`, then one-line InputError), unless
`wait=False` (the service): it then returns at once and its reader keeps trying, with the same backoff, for
as long as it takes (a network camera booting slower than the device, a USB camera plugged in late: a v4l2
device that does not exist yet is waited for too); `waiting` is True until the first frame and
`wait_reason` says why none came yet (also `stats.attempts` and `stats.last_error`). A malformed URI, and a
file or folder that does not exist, fail at once in both modes.

Files and folders lose nothing silently: a damaged or undecodable frame of a video and an unreadable image
of a folder are skipped, counted (``corrupt``) and named in a warning; frames a video's header or index
promises but that are not there (a truncated file, chunks lost to damage) are counted as ``missing``; and
`summary()` says what was lost, for the end of a run. Frame ids are the file's own frame index (an image's
place in the sorted folder), so they keep their gaps.

MJPEG (video files and streams): every frame's JPEG data is checked for damage before it is decoded
(`edge_runtime.preprocess.jpeg_damage`; libjpeg itself decodes damaged data into grey or garbage without an
error), on every decode path. Frames are decoded at full size, as the training images were, and resized by
the model's preprocessing. Decoding at a reduced JPEG scale (libjpeg's DCT scaling: 1/2, 1/4, 1/8; several
times cheaper) changes pixels, and with them decisions (measured: 93.75 % -> 90.25 % accuracy on upscaled
96 px images), so it is used only where it is shown not to change them: a `DecodeCheck` decides every
compared frame through both decodes and allows the reduced scale while at least 99.5 % of the last 600
compared decisions agree (a sample of frames stays compared); otherwise frames stay at full size. The
service does this for resize-mode models unless --full-res-frames; a caller passing `min_size` without a
check asks for the reduced scale outright.
"""
from __future__ import annotations

import os
import queue
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.preprocess import IMAGE_SUFFIXES, jpeg_damage, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg")
LIVE_SCHEMES = ("v4l2", "csi", "rtsp", "http", "https")
MAX_FAILED_READS = 8  # consecutive failed reads that mean "stream lost" (or end of file), not "corrupt frame"
MJPEG_FOURCCS = ("MJPG", "mjpg", "AVRn", "jpeg")
MinSize = tuple[int, int] | Callable[[], tuple[int, int] | None] | None  # see frame_reader
Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    """The default `warn` of file and folder sources: one line on stderr."""
    print(f"edge-qwq: warning: {message}", file=sys.stderr, flush=True)


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames."""


class SourceStopped(Exception):
    """The `stop` event given to open_source was set before the live source delivered its first frame."""


@dataclass
class Frame:
    id: int  # capture sequence number (live: gaps are dropped frames), or the file's own frame index
    image: np.ndarray  # BGR uint8 (H, W, 3)
    origin: str
    time: float  # wall clock when captured (live: when its packet arrived, before decoding)
    tensor: np.ndarray | None = None  # the model input, when the source was given a `prepare` function
    prep_ms: float = 0.0  # time `prepare` took (in the decode thread)
    alt_tensor: np.ndarray | None = None  # a DecodeCheck's frame: the model input from the reduced-scale decode
    mono: float = field(default_factory=time.monotonic)  # the same instant as `time`, on CLOCK_MONOTONIC


@dataclass
class SourceStats:
    frames: int = 0  # frames decoded
    delivered: int = 0  # frames handed to the consumer
    stale_dropped: int = 0  # live: overwritten by a newer frame before the consumer took them
    corrupt: int = 0  # damaged (JPEG check), rejected by the decoder, empty or malformed; unreadable images
    missing: int = 0  # files: frames the video's header or index promises that are not there (truncated, lost)
    reconnects: int = 0  # live: successful reopenings after a loss
    connected: bool = False
    attempts: int = 0  # live: openings in a row that gave no frame (0 once frames come)
    last_error: str | None = None  # live: why the latest opening gave no frame, or why the stream was lost
    last_damage: str | None = None  # why the latest damaged frame (or unreadable image) was rejected

    def to_dict(self) -> dict:
        return asdict(self)


SECRET_KEYS = ("password", "passwd", "pass", "pwd", "token", "access_token", "api_key", "apikey", "key",
               "secret", "auth", "authorization", "signature", "sig")  # query parameters that carry credentials


def redact_url(uri) -> str:
    """A source URI fit to show or store: a password in it (`user:secret@`), a bare user part (often a
    token), and query values named like credentials are replaced by `***`. Paths and other URIs pass.

        >>> redact_url("http://operator:secret@10.0.0.5/video?resolution=640&token=abc")
        'http://operator:***@10.0.0.5/video?resolution=640&token=***'
    """
    text = str(uri)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text.split("://", 1)[0] + "://***"  # unparseable: show the scheme only
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_KEYS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_KEYS else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return text  # nothing to hide: as given (urlunsplit would turn v4l2:///dev/video0 into v4l2:/dev/video0)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def valid_frame(img: np.ndarray | None) -> bool:
    return img is not None and img.ndim in (2, 3) and img.size > 0 and img.dtype == np.uint8


class FrameSource:
    """Common interface: `read(timeout)` -> Frame | None (nothing yet), raises EndOfStream; iterable."""

    live = False
    decode_check: DecodeCheck | None = None

    def __init__(self, uri: str):
        self.uri = uri  # to open it; never shown
        self.name = redact_url(uri)  # what frames' origins, messages and thread names show
        self.stats = SourceStats()

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def summary(self) -> str | None:
        """What the source could not read, as one line for the end of a run; None when nothing was lost."""
        return None

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, str]]:
        try:
            while True:
                try:
                    f = self.read(timeout=1.0)
                except EndOfStream:
                    return
                if f is not None:
                    yield f.id, f.image, f.origin
        finally:
            self.close()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ListSource(FrameSource):
    """Image files, read on demand. An unreadable one (damaged, truncated, empty, not an image) is skipped,
    counted (`corrupt`) and named in a warning; only an image given on its own is an error. Frame ids are
    the files' places in the sorted list, so a skipped file leaves a gap."""

    def __init__(self, uri: str, files: list[Path], warn: Warn = warn_stderr):
        super().__init__(uri)
        self._files, self._i, self._warn = files, 0, warn

    def read(self, timeout: float | None = None) -> Frame:
        while self._i < len(self._files):
            p, i = self._files[self._i], self._i
            self._i += 1
            try:
                image = read_image(p)
            except InputError as e:
                if len(self._files) == 1:
                    raise
                self.stats.corrupt += 1
                self.stats.last_damage = str(e)
                self._warn(f"{e}; skipped")
                continue
            self.stats.frames += 1
            self.stats.delivered += 1
            return Frame(i, image, str(p), time.time())
        if self.stats.frames == 0 and self.stats.corrupt:
            raise InputError(f"{self.name}: none of its {len(self._files)} images could be read")
        raise EndOfStream

    def summary(self) -> str | None:
        bad = self.stats.corrupt
        return f"{self.name}: {bad} of {len(self._files)} images could not be read; skipped" if bad else None


# ---------------------------------------------------------------- MJPEG decoding
class DecodeCheck:
    """Whether MJPEG frames may be decoded at a reduced JPEG scale: only while the decisions on the same
    frames through both decodes agree. Until `window` frames are compared, every frame is decoded both ways
    (the full-size decode decides, the reduced one is decided only to compare); after that 1 frame in
    `every`. The reduced scale is used while at least `agreement` of the last `window` compared decisions
    agree, and full size otherwise (and until the window is full). A new model (a rollback) starts over.

        >>> check = DecodeCheck()
        >>> src = open_source(url, prepare=prep, min_size=(96, 96), decode_check=check)     # doctest: +SKIP
        >>> check.compare(frame.alt_tensor, decision, model)   # by the consumer, for frames that carry one
    """

    def __init__(self, window: int = 600, agreement: float = 0.995, every: int = 50):
        self.window, self.agreement, self.every = window, agreement, every
        self.allowed = int((1 - agreement) * window + 1e-9)  # disagreements the window may hold
        self.mode = "checking"  # "checking" (full size, measuring), "reduced", "full" (agreement too low)
        self.reducible = True  # False: no reduced JPEG scale covers the model input
        self.compared = 0  # every compared frame, over all models
        self._results: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._key = None
        self._planned = 0

    def plan(self, reducible: bool = True) -> str:
        """Per frame, from the decode thread: "reduced", "full", or "both" (decode both ways; compare)."""
        with self._lock:
            self.reducible = reducible
            if not reducible:
                return "full"
            self._planned += 1
            if self.mode == "checking" or self._planned % self.every == 0:
                return "both"
            return self.mode

    def compare(self, alt_tensor: np.ndarray | None, decision, model) -> str | None:
        """Decide a frame's reduced-scale input (`Frame.alt_tensor`) with `model`, which decided its full-size
        input as `decision`, and count whether they agree; a message when the mode changes, else None."""
        if alt_tensor is None or alt_tensor.shape[2:] != (model.spec.height, model.spec.width):
            return None
        same = model.infer_tensor(alt_tensor).label == decision.label
        return self.observe((model.bundle.version, model.precision), same)

    def observe(self, key, same: bool) -> str | None:
        """Count one comparison made with the model `key`; a message when the mode changes, else None."""
        with self._lock:
            if key != self._key:
                self._key, self.mode = key, "checking"
                self._results.clear()
            self._results.append(bool(same))
            self.compared += 1
            r, before = self._results, self.mode
            off = len(r) - sum(r)
            if off > self.allowed:
                self.mode = "full"
            elif len(r) == self.window:
                self.mode = "reduced"
            if self.mode == before:
                return None
            if self.mode == "reduced":
                return (f"decode check: decisions on {len(r)} frames decoded at full size and at reduced JPEG "
                        f"scale agree on {len(r) - off} (>= {self.agreement:.1%}); MJPEG frames are decoded at "
                        f"reduced scale from now on (1 frame in {self.every} still compared)")
            return (f"decode check: decoding at reduced JPEG scale changed {off} of the last {len(r)} compared "
                    f"decisions (less than {self.agreement:.1%} agree); MJPEG frames are decoded at full size")

    def to_dict(self) -> dict:
        with self._lock:
            r = self._results
            d = {"mode": self.mode if self.reducible else "full", "compared": len(r), "agree": sum(r),
                 "agreement": round(sum(r) / len(r), 4) if r else None, "required": self.agreement,
                 "window": self.window}
            if not self.reducible:
                d["reason"] = "no reduced JPEG scale covers the model input"
            return d


def _scale_flags() -> dict[int, int]:
    import cv2

    return {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


class _JpegDecoder:
    """MJPEG frames (JPEG data) -> BGR images: each is checked for damage first (`jpeg_damage`), then decoded at
    full size, or at the smallest JPEG scale (1/2, 1/4, 1/8) that still covers `min_size` (height, width)
    where that is allowed: as a `DecodeCheck` plans, or outright when there is none (the caller asked).
    `min_size` may be a function, asked at every frame (None: full size, e.g. a tile-mode model)."""

    def __init__(self, min_size: MinSize = None, check: DecodeCheck | None = None,
                 frame_hw: tuple[float, float] | None = None):
        self.min_size, self.check = min_size, check
        self.hw = frame_hw if frame_hw and frame_hw[0] > 0 and frame_hw[1] > 0 else None
        self.flags = _scale_flags()

    def _scales(self) -> tuple[int, int]:
        """(the scale to decide on, the scale to compare with or 0)."""
        size = self.min_size() if callable(self.min_size) else self.min_size
        if size is None or self.hw is None:
            return 1, 0
        h, w = self.hw
        scale = next((f for f in (8, 4, 2) if h / f >= size[0] and w / f >= size[1]), 1)
        if self.check is None:
            return scale, 0
        plan = self.check.plan(reducible=scale > 1)
        return (scale, 0) if plan == "reduced" else (1, scale) if plan == "both" else (1, 0)

    def __call__(self, data: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
        """(image, the same frame at the compared scale or None, None), or (None, None, what is wrong)."""
        import cv2

        data = np.asarray(data, np.uint8).reshape(-1)
        damage = jpeg_damage(data)
        if damage:
            return None, None, f"JPEG {damage}"
        scale, alt = self._scales()
        try:
            img = cv2.imdecode(data, self.flags[scale])
            other = cv2.imdecode(data, self.flags[alt]) if alt else None
        except cv2.error:
            img = None
        if img is None:
            return None, None, "refused by the JPEG decoder"
        if self.hw is None and scale == 1:
            self.hw = img.shape[:2]
        return img, other, None


def frame_reader(cap, min_size: MinSize = None, check: DecodeCheck | None = None
                 ) -> Callable[[], tuple[np.ndarray | None, np.ndarray | None, str | None]]:
    """A function reading the next frame of `cap` as (image, the image to compare or None, None); on a
    damaged frame (None, None, why); on a failed read (None, None, None).

    MJPEG (video and streams): the JPEG packets themselves, checked and decoded by `_JpegDecoder` (at full
    size unless `min_size` and `check` allow a reduced scale); FFmpeg's own decode would not say which frames
    are damaged. Other codecs, and captures that cannot give packets: `cap.read`."""
    import cv2

    if _fourcc(cap) in MJPEG_FOURCCS and cap.set(cv2.CAP_PROP_FORMAT, -1):  # -1: the undecoded packets
        decode = _JpegDecoder(min_size, check, (cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FRAME_WIDTH)))

        def read_packet() -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
            ok, packet = cap.read()
            read_packet.arrived = (time.time(), time.monotonic())  # the packet is here; decoding comes next
            if not ok or packet is None or packet.size == 0:
                return None, None, None
            return decode(packet)

        return read_packet

    def read_decoded() -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
        ok, img = cap.read()
        read_decoded.arrived = (time.time(), time.monotonic())
        return (img if ok and valid_frame(img) else None), None, None

    return read_decoded


def _fourcc(cap) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))


def _read_loop(cap, stats: SourceStats, stop: threading.Event,
               publish: Callable[[np.ndarray, np.ndarray | None], None], min_size: MinSize = None,
               check: DecodeCheck | None = None) -> None:
    """Read until `stop` or MAX_FAILED_READS failed reads in a row. A damaged frame is counted at once; a failed
    read followed by a good frame was a frame the decoder rejected; failures at the end are the end of the
    stream (not counted as corrupt)."""
    read = frame_reader(cap, min_size, check)
    failed = 0
    while not stop.is_set() and failed < MAX_FAILED_READS:
        img, alt, why = read()
        if valid_frame(img):
            stats.corrupt += failed
            failed = 0
            stats.frames += 1
            publish(img, alt, read.arrived)
        elif why is not None:  # a packet came, damaged: the stream itself is alive
            stats.corrupt += failed + 1
            stats.last_damage, failed = why, 0
        else:
            failed += 1


# ---------------------------------------------------------------- video files
class _MjpegAvi:
    """An MJPEG AVI read by its own index (idx1): frame k is the k-th video chunk the index lists, so a damaged
    frame is counted at its own index and the frames after it keep theirs. (FFmpeg's AVI reader, through
    OpenCV, resynchronises past damaged chunk headers and numbers whatever it finds next as the next frame:
    the frames in between vanish without a trace.) Without an index (a file cut short before its index was
    written) the chunks are walked in order; should damage break that chain, the frames lost in the gap are
    estimated from its size, and the warning says so."""

    CODECS = (b"MJPG", b"AVRN", b"JPEG", b"DMB1")

    def __init__(self, path: Path, hw: tuple[int, int] | None, frame_count: int, ids: tuple[bytes, ...],
                 movi: tuple[int, int], entries: tuple[np.ndarray, np.ndarray] | None):
        self.path, self.hw, self.frame_count, self.ids, self.movi = path, hw, frame_count, ids, movi
        self.entries = entries  # (absolute chunk offsets, data sizes) of the video frames, or None: walk
        self.estimated = False  # the walk had to guess how many frames a damaged stretch held

    @classmethod
    def open(cls, path: Path) -> _MjpegAvi | None:
        """None when `path` is not a one-part AVI whose video is MJPEG (OpenCV reads the rest)."""
        try:
            with open(path, "rb") as f:
                return cls._parse(path, f, path.stat().st_size)
        except (OSError, struct.error, ValueError):
            return None

    @classmethod
    def _parse(cls, path: Path, f, size: int) -> _MjpegAvi | None:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
            return None
        pos, hdrl, movi, idx1 = 12, None, None, None
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"LIST":
                kind = f.read(4)
                if kind == b"hdrl":
                    hdrl = f.read(min(n - 4, 1 << 20))
                elif kind == b"movi":
                    movi = (pos + 8, min(pos + 8 + n, size))  # the 'movi' tag's offset, the list's end
            elif cid == b"idx1":
                idx1 = (pos + 8, min(n, size - pos - 8))
            elif cid == b"RIFF":  # an OpenDML part (AVIX) follows: a file over 1 GB
                return None
            pos += 8 + n + (n & 1)
        if hdrl is None or movi is None:
            return None
        total, hw, stream, streams = 0, None, None, 0
        for cid, data in _riff_chunks(hdrl):
            if cid == b"avih" and len(data) >= 40:
                total = struct.unpack_from("<I", data, 16)[0]
                w, h = struct.unpack_from("<II", data, 32)
                hw = (h, w) if w and h else None
            elif cid == b"LIST" and data[:4] == b"strl":
                parts = dict(_riff_chunks(data, 4))
                strh, strf = parts.get(b"strh", b""), parts.get(b"strf", b"")
                if stream is None and strh[:4] == b"vids":
                    if strh[4:8].upper() not in cls.CODECS and strf[16:20].upper() not in cls.CODECS:
                        return None  # another codec: FFmpeg's
                    stream = streams
                    total = max(total, struct.unpack_from("<I", strh, 32)[0] if len(strh) >= 36 else 0)
                streams += 1
            elif cid == b"LIST" and data[:4] == b"odml":
                dmlh = dict(_riff_chunks(data, 4)).get(b"dmlh", b"")
                total = max(total, struct.unpack_from("<I", dmlh)[0] if len(dmlh) >= 4 else 0)
        if stream is None:
            return None
        ids = (b"%02ddc" % stream, b"%02ddb" % stream)
        entries = cls._index(f, idx1, ids, movi[0], size) if idx1 else None
        count = max(total, len(entries[0]) if entries is not None else 0)
        return cls(path, hw, count, ids, movi, entries)

    @staticmethod
    def _index(f, idx1: tuple[int, int], ids: tuple[bytes, ...], movi_at: int, size: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """The video entries of idx1 as (absolute offsets, sizes); None when they do not match the file."""
        f.seek(idx1[0])
        raw = f.read(idx1[1] // 16 * 16)
        e = np.frombuffer(raw, dtype=[("id", "S4"), ("flags", "<u4"), ("off", "<u4"), ("size", "<u4")])
        e = e[np.isin(e["id"], np.array(ids, dtype="S4"))]
        if not e.size:
            return None
        for base in (movi_at, 0, movi_at + 4):  # offsets count from the 'movi' tag, or from the file's start
            hits = 0
            for k in range(min(8, e.size)):
                at = base + int(e["off"][k])
                if at + 4 <= size:
                    f.seek(at)
                    hits += f.read(4) == e["id"][k]
            if hits * 2 > min(8, e.size):
                return e["off"].astype(np.int64) + base, e["size"].astype(np.int64)
        return None

    def packets(self) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """(frame index, its JPEG data, None), or (index, None, why it is not there)."""
        with open(self.path, "rb") as f:
            if self.entries is None:
                yield from self._walk(f)
                return
            size = self.path.stat().st_size
            for k, (at, n) in enumerate(zip(*self.entries)):
                if at + 8 + n > size:
                    yield k, None, "cut off (the file ends inside this frame)"
                    continue
                f.seek(int(at) + 8)
                yield k, np.frombuffer(f.read(int(n)), np.uint8), None

    def _walk(self, f) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        pos, end = self.movi[0] + 4, self.movi[1]
        k, sizes = 0, []
        while pos + 8 <= end:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"LIST":
                pos += 12
                continue
            broken = not all(32 <= c < 127 for c in cid) or pos + 8 + n > end
            if cid in self.ids and not broken:
                sizes.append(n)
                yield k, np.frombuffer(f.read(n), np.uint8), None
                k += 1
            elif broken:
                found = self._resync(f, pos + 1, end)
                if found is None:  # nothing after it: the file is cut off inside this chunk
                    if cid in self.ids:
                        yield k, None, "cut off (the file ends inside this frame)"
                    return
                lost = max(1, round((found - pos) / (float(np.mean(sizes)) + 8))) if sizes else 1
                self.estimated = True
                for _ in range(lost):
                    yield k, None, f"chunk headers damaged at byte {pos} (about {lost} frame(s) there)"
                    k += 1
                pos = found
                continue
            pos += 8 + n + (n & 1)

    def _resync(self, f, start: int, end: int) -> int | None:
        """The next video chunk header after `start` that frames a JPEG, or None."""
        block = 1 << 20
        while start < end:
            f.seek(start)
            data = f.read(min(block + 12, end - start))
            for cid in self.ids:
                i = data.find(cid)
                while 0 <= i <= len(data) - 10:
                    n = struct.unpack_from("<I", data, i + 4)[0]
                    if start + i + 8 + n <= end and data[i + 8:i + 10] == b"\xff\xd8":
                        return start + i
                    i = data.find(cid, i + 1)
            start += block
        return None

    def frames(self, decode: _JpegDecoder) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None, str | None]]:
        for k, data, why in self.packets():
            if data is None:
                yield k, None, None, why
            elif not data.size:
                yield k, None, None, "empty (no data for this frame in the file)"
            else:
                yield (k, *decode(data))


def _riff_chunks(data: bytes, pos: int = 0) -> Iterator[tuple[bytes, bytes]]:
    while pos + 8 <= len(data):
        cid, n = struct.unpack_from("<4sI", data, pos)
        yield cid, data[pos + 8:pos + 8 + n]
        pos += 8 + n + (n & 1)


def _cap_frames(cap, min_size: MinSize, check: DecodeCheck | None, expected: int = 0
                ) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None, str | None]]:
    """(frame index, image, image to compare, why damaged) of a video read through OpenCV. The index is the
    frame's time stamp times the frame rate while the time stamps sit on that grid (a constant frame rate: a
    frame the reader skipped leaves a gap), else a count of the frames read. Failed reads end the file only
    once they could reach the `expected` frame count: a decoder fails once per damaged frame, then goes on."""
    import cv2

    read = frame_reader(cap, min_size, check)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    index, on_grid, failed = -1, fps > 0, 0
    while failed < max(MAX_FAILED_READS, expected - index - 1):  # (at the end of a file a read fails at once)
        img, alt, why = read()
        if img is None and why is None:
            failed += 1
            continue
        k = index + 1 + failed  # failed reads followed by a frame were frames the decoder rejected
        if on_grid:
            t = cap.get(cv2.CAP_PROP_POS_MSEC) * fps / 1000
            on_grid = abs(t - round(t)) < 0.05 and round(t) > index
            k = round(t) if on_grid else k
        index, failed = k, 0
        yield index, img, alt, why


class _VideoFileSource(FrameSource):
    """A video file, decoded ahead by a thread into a short queue (decode overlaps inference). Frame ids are
    the file's own frame indices: a damaged frame is skipped, counted (`corrupt`) and warned about; frames the
    file's header or index promises that are not there are `missing`. MJPEG AVI is read by its index
    (`_MjpegAvi`); other files through OpenCV."""

    def __init__(self, path: Path, prefetch: int = 4, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 min_size: MinSize = None, decode_check: DecodeCheck | None = None, warn: Warn = warn_stderr):
        import cv2

        quiet_decoders()
        super().__init__(str(path))
        self._prepare, self._warn, self.decode_check = prepare, warn, decode_check
        self._cap, avi = None, _MjpegAvi.open(path)
        if avi is not None:
            self._avi = avi
            self.expected = avi.frame_count
            self._frames = avi.frames(_JpegDecoder(min_size, decode_check, avi.hw))
        else:
            self._avi = None
            self._cap = cv2.VideoCapture(str(path))
            if not self._cap.isOpened():
                raise InputError(f"{path}: OpenCV cannot open this video")
            self.expected = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))  # 0: unknown
            self._frames = _cap_frames(self._cap, min_size, decode_check, self.expected)
        self._next = 0  # the frame index after the last one seen
        self._bad: list = []  # damaged frames not yet warned about: [first index, last index, why]
        self._finished = False  # read to the end of the file
        self._q: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="video-decode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for index, img, alt, why in self._frames:
                if self._stop.is_set():
                    return
                self._seen(index)
                if not valid_frame(img):
                    self.stats.corrupt += 1
                    self.stats.last_damage = why = why or "an empty frame"
                    self._damaged(index, why)
                    continue
                self._flush()
                self.stats.frames += 1
                self._put((index, img, alt))
            self._flush()
            if self.expected > self._next:
                self.stats.missing += self.expected - self._next
                self._warn(f"{self.name}: the file ends after frame {self._next - 1} of the {self.expected} its "
                           f"header announces: {self.expected - self._next} frames missing (truncated?)")
            self._finished = True
        finally:
            if self._cap is not None:
                self._cap.release()
            self._put(None)

    def _seen(self, index: int) -> None:
        if index > self._next:  # skipped over by the reader (damaged data it could not frame)
            self._flush()
            self.stats.missing += index - self._next
            self._warn(f"{self.name}: frames {self._next}-{index - 1} are missing (skipped over by the video "
                       "reader: damaged data)")
        self._next = max(self._next, index + 1)

    def _damaged(self, index: int, why: str) -> None:
        if self._bad and self._bad[1] == index - 1:
            self._bad[1] = index
        else:
            self._flush()
            self._bad = [index, index, why]

    def _flush(self) -> None:
        if self._bad:
            a, b, why = self._bad
            which, why = (f"frame {a}", why) if a == b else (f"frames {a}-{b}", f"frame {a}: {why}")
            self._warn(f"{self.name}: {which} could not be decoded ({why}); skipped")
            self._bad = []

    def summary(self) -> str | None:
        bad, missing = self.stats.corrupt, self.stats.missing
        if not bad and not missing:
            return None
        parts = [f"{bad} damaged" if bad else "", f"{missing} missing" if missing else ""]
        detail = ", ".join(p for p in parts if p) + (", ids after the damage estimated" if self._avi is not None
                                                      and self._avi.estimated else "")
        total = max(self.expected, self._next)
        head = f"{self.stats.frames} of {total} frames decoded; " if self._finished else ""
        return f"{self.name}: {head}{bad + missing} could not be decoded ({detail}: a corrupt or truncated video)"

    def _put(self, item: tuple | None) -> None:
        if item is not None:
            index, img, alt = item
            img, tensor, prep_ms = _prepared(img, self._prepare)
            item = (index, img, tensor, prep_ms, _alt_tensor(alt, self._prepare))
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, timeout: float | None = None) -> Frame | None:
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._q.put(None)  # stay at the end for later reads
            if self.stats.delivered == 0:
                lost = self.summary()
                raise InputError(f"{self.name}: the video has no readable frames" + (f" ({lost})" if lost else ""))
            raise EndOfStream
        index, img, tensor, prep_ms, alt_tensor = item
        self.stats.delivered += 1
        return Frame(index, img, f"{self.name}#{index}", time.time(), tensor, prep_ms, alt_tensor)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _prepared(img: np.ndarray, prepare) -> tuple[np.ndarray, np.ndarray | None, float]:
    if prepare is None:
        return img, None, 0.0
    t0 = time.perf_counter()
    return img, prepare(img), (time.perf_counter() - t0) * 1e3


def _alt_tensor(alt: np.ndarray | None, prepare) -> np.ndarray | None:
    return None if alt is None or prepare is None else prepare(alt)


# ---------------------------------------------------------------- live sources
class LiveSource(FrameSource):
    """A camera or network stream: a reader thread keeps only the latest frame and reconnects on loss.

    `wait` (default): the constructor waits up to `connect_timeout` s for the first frame (InputError
    after it; SourceStopped when `stop` is set first). `wait=False`: it returns at once; the reader keeps
    trying (capped exponential backoff) until the first frame comes or `close()`; `waiting`, `wait_reason`
    and `stats` say how it goes (the service: /readyz, /status)."""

    live = True
    BACKOFF = (0.1, 2.0)  # s before the next opening after a failed one, doubling up to the cap: a camera
    # or stream that comes up is opened at most 2 s later

    def __init__(self, uri: str, opener: Callable[[], object], connect_timeout: float = 10.0,
                 backoff: tuple[float, float] = BACKOFF, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 min_size: MinSize = None, decode_check: DecodeCheck | None = None,
                 stop: threading.Event | None = None, wait: bool = True):
        super().__init__(uri)
        self._prepare, self._min_size, self.decode_check = prepare, min_size, decode_check
        self._opener, self._backoff = opener, backoff
        self._cannot_open = ("cannot open the camera" if uri.split("://", 1)[0].lower() in ("v4l2", "csi")
                             else "cannot open the stream (no answer, or no stream at this URI)")
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._ever_connected = False
        self._first = threading.Event()  # set at the first frame
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source {self.name}", daemon=True)
        self._thread.start()
        if not wait:
            return
        first = self.wait_first(connect_timeout, stop)
        if first != "ok":
            self.close()
            if first == "stopped":
                raise SourceStopped(f"{self.name}: stopped before the source connected")
            if self.stats.corrupt:
                raise InputError(f"{self.name}: no usable frame within {connect_timeout:g} s: {self.stats.corrupt} "
                                 f"arrived but could not be decoded (the latest: {self.stats.last_damage})")
            raise InputError(f"{self.name}: cannot open the stream (no frame within {connect_timeout:g} s); "
                             "check the URI and that the camera or server is running")

    @property
    def waiting(self) -> bool:
        """No frame has come yet (the source is still being opened, or opened and silent)."""
        return not self._first.is_set()

    @property
    def wait_reason(self) -> str | None:
        """Why no frame came yet (None once one did): the latest failure, or that the stream is open."""
        if not self.waiting:
            return None
        st = self.stats
        if st.connected:
            if st.corrupt:
                return (f"connected; {st.corrupt} frames arrived but could not be decoded "
                        f"(the latest: {st.last_damage})")
            return "connected; no frame yet"
        if st.last_error is None:
            return "opening"
        return f"{st.last_error}; attempt {st.attempts}, retrying"

    def wait_first(self, timeout: float, stop: threading.Event | None = None) -> str:
        """"ok" at the first frame, "timeout", or "stopped" as soon as `stop` is set (SIGTERM)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._first.is_set():
                if stop is not None and stop.is_set():
                    return "stopped"
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self._cond.wait(min(left, 0.1))
        return "ok"

    def _open(self) -> tuple[object | None, str | None]:
        """(an opened capture, None) or (None, why not). The opener may raise (a v4l2 device that is not
        there yet, an OpenCV error): that is one failed attempt, never the end of the reader."""
        try:
            cap = self._opener()
        except Exception as e:  # noqa: BLE001 - whatever opening raises, the reader tries again later
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return None, why.replace(self.uri, self.name)  # credentials never leave the process
        if cap is not None and cap.isOpened():
            return cap, None
        if cap is not None:
            cap.release()
        return None, self._cannot_open

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            cap, why = self._open()
            if cap is not None:
                self.stats.reconnects += self._ever_connected
                self.stats.connected = self._ever_connected = True
                before, corrupt = self.stats.frames, self.stats.corrupt
                try:
                    _read_loop(cap, self.stats, self._stop, self._publish, self._min_size, self.decode_check)
                finally:
                    self.stats.connected = False
                    cap.release()
                if self.stats.frames > before:
                    attempt, why = 0, "the stream was lost"
                elif self.stats.corrupt > corrupt:
                    attempt, why = attempt + 1, (f"{self.stats.corrupt - corrupt} frames arrived but could not be "
                                                 f"decoded (the latest: {self.stats.last_damage})")
                else:
                    attempt, why = attempt + 1, "the stream opened but sent no frame"
            else:
                attempt += 1
            if self._stop.is_set():
                return
            self.stats.attempts, self.stats.last_error = attempt, why
            self._stop.wait(min(self._backoff[1], self._backoff[0] * 2 ** max(0, attempt - 1)))

    def _publish(self, img: np.ndarray, alt: np.ndarray | None = None,
                 arrived: tuple[float, float] | None = None) -> None:
        """The newest frame; `arrived`: (wall, monotonic) when its packet came, before decoding and preparing
        (the capture time a reject's delay counts from)."""
        wall, mono = arrived or (time.time(), time.monotonic())
        img, tensor, prep_ms = _prepared(img, self._prepare)
        alt_tensor = _alt_tensor(alt, self._prepare)
        with self._cond:
            if self._latest is not None:
                self.stats.stale_dropped += 1
            self._latest = Frame(self._seq, img, f"{self.name}#{self._seq}", wall, tensor, prep_ms, alt_tensor,
                                 mono)
            self._seq += 1
            self.stats.attempts = 0
            self._first.set()
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set(), timeout)
            frame, self._latest = self._latest, None
        if frame is not None:
            self.stats.delivered += 1
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=15)


# ---------------------------------------------------------------- live openers
def quiet_decoders() -> None:
    """FFmpeg and OpenCV print a line per refused connection or broken JPEG; the source counts those
    instead (stats, /status, /metrics), so the journal is not flooded. OPENCV_FFMPEG_LOGLEVEL overrides."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _ffmpeg_opener(uri: str, open_timeout_ms: int = 3000, read_timeout_ms: int = 2000) -> Callable[[], object]:
    import cv2

    quiet_decoders()

    if uri.startswith("rtsp://"):
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms]
    return lambda: cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)


def _v4l2_opener(uri: str, late_ok: bool = False) -> Callable[[], object]:
    """`late_ok`: a device that does not exist (yet) is one failed attempt (a camera plugged in late), not an
    error at once."""
    import cv2

    device = uri[len("v4l2://"):]
    if not device.startswith("/dev/video"):
        raise InputError(f"{uri}: expected v4l2:///dev/videoN")
    missing = f"{device} does not exist (is the camera plugged in? `ls /dev/video*`)"
    if not late_ok and not Path(device).exists():
        raise InputError(f"{uri}: {missing}")

    def opener():
        if not Path(device).exists():
            raise InputError(missing)
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return opener


def csi_pipeline(uri: str) -> str:
    """The GStreamer pipeline for ``csi://N[?width=W&height=H&fps=F]`` (Jetson CSI camera via Argus)."""
    parts = urlsplit(uri)
    try:
        sensor = int(parts.netloc or "0")
    except ValueError:
        raise InputError(f"{uri}: expected csi://N with N the sensor id, e.g. csi://0") from None
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(q) - {"width", "height", "fps"})
    if unknown:
        raise InputError(f"{uri}: unknown parameter {unknown[0]!r}; csi:// takes width, height and fps")
    values = {}
    for key, default, hi in (("width", 1280, 8192), ("height", 720, 8192), ("fps", 30, 1000)):
        text = q.get(key, str(default))
        if not text.isdigit() or not 1 <= int(text) <= hi:
            raise InputError(f"{uri}: {key} must be a whole number from 1 to {hi}, not {text!r}")
        values[key] = int(text)
    w, h, fps = values["width"], values["height"], values["fps"]
    return (f"nvarguscamerasrc sensor-id={sensor} ! "
            f"video/x-raw(memory:NVMM), width={w}, height={h}, framerate={fps}/1 ! "
            "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false")


def _csi_opener(uri: str) -> Callable[[], object]:
    import cv2

    pipeline = csi_pipeline(uri)
    if "GStreamer:                   YES" not in cv2.getBuildInformation():
        raise InputError(f"{uri}: this OpenCV has no GStreamer support; on a Jetson use JetPack's "
                         "python3-opencv (built with GStreamer) for CSI cameras")
    return lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


def _live_opener(uri: str, late_ok: bool = False) -> Callable[[], object]:
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "v4l2":
        return _v4l2_opener(uri, late_ok)
    if scheme == "csi":
        return _csi_opener(uri)
    return _ffmpeg_opener(uri)


# ---------------------------------------------------------------- entry point
def open_source(uri: str | os.PathLike, connect_timeout: float = 10.0,
                prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                min_size: MinSize = None, decode_check: DecodeCheck | None = None,
                stop: threading.Event | None = None, warn: Warn = warn_stderr, wait: bool = True) -> FrameSource:
    """Frames from `uri`: an image file, a folder of images, a video file, or a live camera/stream URI.

    `prepare` (e.g. the model's preprocessing) runs in the decode thread of video and live sources, so it
    overlaps inference; its result is `Frame.tensor`. `min_size` (height, width), e.g. the model input, lets
    MJPEG video and streams decode at a reduced JPEG scale that still covers it: only as `decode_check` allows
    when one is given (see `DecodeCheck`; frames it compares carry `Frame.alt_tensor`), outright otherwise. It
    may be a function giving the size, or None for full size, asked at every frame. `stop`: an event that
    ends the wait for a live source's first frame (SourceStopped). `warn` gets a line per unreadable image or
    damaged stretch of a video (default: stderr). `wait=False`: a live source returns at once and keeps
    trying until its first frame, for as long as it takes (see `LiveSource`); a malformed URI, a missing
    file or folder, and a CSI camera without GStreamer still raise InputError at once."""
    text = str(uri)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in LIVE_SCHEMES:
            raise InputError(f"{redact_url(text)}: unknown source scheme {scheme!r}; use a path or one of "
                             f"{', '.join(s + '://' for s in LIVE_SCHEMES)}")
        return LiveSource(text, _live_opener(text, late_ok=not wait), connect_timeout=connect_timeout,
                          prepare=prepare, min_size=min_size, decode_check=decode_check, stop=stop, wait=wait)
    path = Path(uri)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{path}: no images in this folder")
        return _ListSource(text, files, warn)
    if not path.exists():
        raise InputError(f"{uri}: no such file, folder or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ListSource(text, [path], warn)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _VideoFileSource(path, prepare=prepare, min_size=min_size, decode_check=decode_check, warn=warn)
    raise InputError(f"{uri}: not an image, image folder, video file or stream URI")
