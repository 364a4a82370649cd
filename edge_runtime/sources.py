"""Frame sources: an image, a folder of images, a video file, and live cameras and streams.

    >>> src = open_source("line3.mp4")                  # doctest: +SKIP
    >>> for frame_id, frame_bgr, origin in src: ...     # doctest: +SKIP
    >>> cam = open_source("http://127.0.0.1:8090/")     # doctest: +SKIP
    >>> frame = cam.read(timeout=0.5)                   # Frame, or None when nothing new arrived yet
    >>> cam.stats.stale_dropped, cam.stats.corrupt, cam.stats.reconnects   # doctest: +SKIP

URIs: a path (image, folder, video), ``v4l2:///dev/videoN``, ``csi://N[?width=&height=&fps=]`` (a GStreamer
``nvarguscamerasrc`` pipeline through OpenCV, on a Jetson), ``rtsp://...`` and ``http(s)://...`` (MJPEG).

Live sources keep only the latest frame: a reader thread decodes continuously and a frame the consumer did
not take in time is dropped and counted (``stale_dropped``). A frame the decoder rejects, or an empty one,
is skipped and counted (``corrupt``). A lost stream is reopened with capped exponential backoff
(``reconnects``). None of these ends the source; only ``close()`` does.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.preprocess import IMAGE_SUFFIXES, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg")
LIVE_SCHEMES = ("v4l2", "csi", "rtsp", "http", "https")
MAX_FAILED_READS = 8  # consecutive failed reads that mean "stream lost" (or end of file), not "corrupt frame"
MinSize = tuple[int, int] | Callable[[], tuple[int, int] | None] | None  # see frame_reader


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames."""


@dataclass
class Frame:
    id: int  # capture sequence number; gaps are dropped frames
    image: np.ndarray  # BGR uint8 (H, W, 3)
    origin: str
    time: float  # wall clock when captured
    tensor: np.ndarray | None = None  # the model input, when the source was given a `prepare` function
    prep_ms: float = 0.0  # time `prepare` took (in the decode thread)


@dataclass
class SourceStats:
    frames: int = 0  # frames decoded
    delivered: int = 0  # frames handed to the consumer
    stale_dropped: int = 0  # live: overwritten by a newer frame before the consumer took them
    corrupt: int = 0  # rejected by the decoder, empty or malformed
    reconnects: int = 0  # live: successful reopenings after a loss
    connected: bool = False

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
        query = urlencode([(k, "***" if k.lower() in SECRET_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def valid_frame(img: np.ndarray | None) -> bool:
    return img is not None and img.ndim in (2, 3) and img.size > 0 and img.dtype == np.uint8


class FrameSource:
    """Common interface: `read(timeout)` -> Frame | None (nothing yet), raises EndOfStream; iterable."""

    live = False

    def __init__(self, uri: str):
        self.uri = uri  # to open it; never shown
        self.name = redact_url(uri)  # what frames' origins, messages and thread names show
        self.stats = SourceStats()

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

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
    """Image files, read on demand."""

    def __init__(self, uri: str, files: list[Path]):
        super().__init__(uri)
        self._files, self._i = files, 0

    def read(self, timeout: float | None = None) -> Frame:
        if self._i >= len(self._files):
            raise EndOfStream
        p, i = self._files[self._i], self._i
        self._i += 1
        self.stats.frames += 1
        self.stats.delivered += 1
        return Frame(i, read_image(p), str(p), time.time())


def _read_loop(cap, stats: SourceStats, stop: threading.Event, publish: Callable[[np.ndarray], None],
               min_size: MinSize = None) -> None:
    """Read until `stop` or MAX_FAILED_READS failures in a row. A failure followed by a good frame was a
    corrupt frame; failures at the end are the end of the stream (not counted as corrupt)."""
    read = frame_reader(cap, min_size)
    failed = 0
    while not stop.is_set() and failed < MAX_FAILED_READS:
        ok, img = read()
        if ok and valid_frame(img):
            stats.corrupt += failed
            failed = 0
            stats.frames += 1
            publish(img)
        else:
            failed += 1


def frame_reader(cap, min_size: MinSize) -> Callable[[], tuple[bool, np.ndarray | None]]:
    """`cap.read`, or for an MJPEG stream, its JPEG packets decoded at the smallest libjpeg scale (1/8, 1/4,
    1/2) that still covers `min_size` (height, width), the model input: the DCT scaling skips most of the
    decode, as a hardware JPEG decoder with a scaler does on the device. Frames are then that size.

    `min_size` may also be a function giving that size (or None: full size) at each frame, for a consumer
    whose need changes while the stream runs (the service: a tile-mode model needs every pixel, a resize
    model only its input size, and a rollback may switch between them). Its answer at the first frame
    chooses the reader: full size (cap.read) stays full size, which is right for any later need; a reduced
    scale asks it again at every frame."""
    import cv2

    if min_size is None or _fourcc(cap) not in ("MJPG", "mjpg", "AVRn", "jpeg"):
        return cap.read
    w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)

    def scale_for(size: tuple[int, int] | None) -> int:
        return 1 if size is None else next((f for f in (8, 4, 2) if h / f >= size[0] and w / f >= size[1]), 1)

    dynamic = callable(min_size)
    if scale_for(min_size() if dynamic else min_size) == 1 or not cap.set(cv2.CAP_PROP_FORMAT, -1):  # -1: raw
        return cap.read
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    fixed = None if dynamic else flags[scale_for(min_size)]

    def read() -> tuple[bool, np.ndarray | None]:
        ok, packet = cap.read()
        if not ok or packet is None or packet.size == 0:
            return False, None
        img = cv2.imdecode(packet.reshape(-1), fixed if fixed is not None else flags[scale_for(min_size())])
        return img is not None, img

    return read


def _fourcc(cap) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))


class _VideoFileSource(FrameSource):
    """A video file, decoded ahead by a thread into a short queue (decode overlaps inference)."""

    def __init__(self, path: Path, prefetch: int = 4, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 min_size: MinSize = None):
        import cv2

        quiet_decoders()
        super().__init__(str(path))
        self._prepare, self._min_size = prepare, min_size
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise InputError(f"{path}: OpenCV cannot open this video")
        self._q: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._n = 0
        self._thread = threading.Thread(target=self._run, name="video-decode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            _read_loop(self._cap, self.stats, self._stop, self._put, self._min_size)
        finally:
            self._cap.release()
            self._put(None)

    def _put(self, img: np.ndarray | None) -> None:
        item = img if img is None else _prepared(img, self._prepare)
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
            if self._n == 0:
                raise InputError(f"{self.name}: the video has no readable frames")
            raise EndOfStream
        i, self._n = self._n, self._n + 1
        self.stats.delivered += 1
        img, tensor, prep_ms = item
        return Frame(i, img, f"{self.name}#{i}", time.time(), tensor, prep_ms)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _prepared(img: np.ndarray, prepare) -> tuple[np.ndarray, np.ndarray | None, float]:
    if prepare is None:
        return img, None, 0.0
    t0 = time.perf_counter()
    return img, prepare(img), (time.perf_counter() - t0) * 1e3


class LiveSource(FrameSource):
    """A camera or network stream: a reader thread keeps only the latest frame and reconnects on loss."""

    live = True

    def __init__(self, uri: str, opener: Callable[[], object], connect_timeout: float = 10.0,
                 backoff: tuple[float, float] = (0.1, 5.0), prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 min_size: MinSize = None):
        super().__init__(uri)
        self._prepare, self._min_size = prepare, min_size
        self._opener, self._backoff = opener, backoff
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._ever_connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source {self.name}", daemon=True)
        self._thread.start()
        if not self._wait_first(connect_timeout):
            self.close()
            raise InputError(f"{self.name}: cannot open the stream (no frame within {connect_timeout:g} s); "
                             "check the URI and that the camera or server is running")

    def _wait_first(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._ever_connected and self.stats.frames > 0, timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            cap = self._opener()
            if cap is not None and cap.isOpened():
                self.stats.reconnects += self._ever_connected
                self.stats.connected = self._ever_connected = True
                before = self.stats.frames
                _read_loop(cap, self.stats, self._stop, self._publish, self._min_size)
                self.stats.connected = False
                attempt = 0 if self.stats.frames > before else attempt + 1
            else:
                attempt += 1
            if cap is not None:
                cap.release()
            self._stop.wait(min(self._backoff[1], self._backoff[0] * 2 ** max(0, attempt - 1)))

    def _publish(self, img: np.ndarray) -> None:
        img, tensor, prep_ms = _prepared(img, self._prepare)
        with self._cond:
            if self._latest is not None:
                self.stats.stale_dropped += 1
            self._latest = Frame(self._seq, img, f"{self.name}#{self._seq}", time.time(), tensor, prep_ms)
            self._seq += 1
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


def _v4l2_opener(uri: str) -> Callable[[], object]:
    import cv2

    device = uri[len("v4l2://"):]
    if not device.startswith("/dev/video"):
        raise InputError(f"{uri}: expected v4l2:///dev/videoN")
    if not Path(device).exists():
        raise InputError(f"{uri}: {device} does not exist (is the camera plugged in? `ls /dev/video*`)")

    def opener():
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


def _live_opener(uri: str) -> Callable[[], object]:
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "v4l2":
        return _v4l2_opener(uri)
    if scheme == "csi":
        return _csi_opener(uri)
    return _ffmpeg_opener(uri)


# ---------------------------------------------------------------- entry point
def open_source(uri: str | os.PathLike, connect_timeout: float = 10.0,
                prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                min_size: MinSize = None) -> FrameSource:
    """Frames from `uri`: an image file, a folder of images, a video file, or a live camera/stream URI.

    `prepare` (e.g. the model's preprocessing) runs in the decode thread of video and live sources, so it
    overlaps inference; its result is `Frame.tensor`. `min_size` (height, width), e.g. the model input, lets
    MJPEG video and streams decode at a reduced scale that still covers it (see `frame_reader`; a function
    returning it, or None for full size, is asked at every frame)."""
    text = str(uri)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in LIVE_SCHEMES:
            raise InputError(f"{redact_url(text)}: unknown source scheme {scheme!r}; use a path or one of "
                             f"{', '.join(s + '://' for s in LIVE_SCHEMES)}")
        return LiveSource(text, _live_opener(text), connect_timeout=connect_timeout, prepare=prepare,
                          min_size=min_size)
    path = Path(uri)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{path}: no images in this folder")
        return _ListSource(text, files)
    if not path.exists():
        raise InputError(f"{uri}: no such file, folder or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ListSource(text, [path])
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _VideoFileSource(path, prepare=prepare, min_size=min_size)
    raise InputError(f"{uri}: not an image, image folder, video file or stream URI")
