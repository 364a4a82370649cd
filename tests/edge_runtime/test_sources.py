"""Sources against real media: OpenCV on video files written here and on MJPEG served by ffmpeg."""
from __future__ import annotations

import time

import cv2
import pytest

from edge_runtime.errors import InputError
from edge_runtime.sources import EndOfStream, csi_pipeline, open_source
from tests.edge_runtime.service_helpers import MjpegServer, corrupt_avi, frames, needs_ffmpeg, wait_for, write_video


def test_video_file_every_frame_in_order(tmp_path):
    video = write_video(tmp_path / "v.avi", frames(40))
    src = open_source(video)
    ids = [fid for fid, img, origin in src]
    assert ids == list(range(40))
    assert src.stats.corrupt == 0 and src.stats.delivered == 40


def test_video_file_corrupt_frames_skipped_and_counted(tmp_path):
    video = write_video(tmp_path / "v.avi", frames(40))
    corrupt_avi(video, [5, 17, 18])
    src = open_source(video)
    got = [img for _, img, _ in src]
    assert len(got) == 37 and src.stats.corrupt == 3
    assert all(img.shape == (48, 64, 3) for img in got)


def test_folder_and_image_still_work(tmp_path):
    for i, f in enumerate(frames(3)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), f)
    assert [fid for fid, _, _ in open_source(tmp_path)] == [0, 1, 2]
    assert len(list(open_source(tmp_path / "1.png"))) == 1
    src = open_source(tmp_path)
    for _ in range(3):
        assert src.read() is not None
    with pytest.raises(EndOfStream):
        src.read()


@pytest.mark.parametrize("uri, words", [
    ("/nonexistent/video.mp4", "no such file"),
    ("ftp://127.0.0.1/x", "unknown source scheme"),
    ("v4l2:///dev/video99", "does not exist"),
])
def test_bad_uris_are_one_clear_error(uri, words):
    with pytest.raises(InputError, match=words):
        open_source(uri)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path)


def test_csi_pipeline_and_clear_error_without_gstreamer():
    p = csi_pipeline("csi://1?width=1920&height=1080&fps=60")
    assert p.startswith("nvarguscamerasrc sensor-id=1 ") and "width=1920, height=1080, framerate=60/1" in p
    assert p.endswith("appsink drop=true max-buffers=1 sync=false")
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer; the no-GStreamer message is not reachable here")
    with pytest.raises(InputError, match="GStreamer"):
        open_source("csi://0")


def test_stream_that_does_not_exist(tmp_path):
    from tests.edge_runtime.service_helpers import free_port

    t0 = time.monotonic()
    with pytest.raises(InputError, match="cannot open the stream"):
        open_source(f"http://127.0.0.1:{free_port()}/", connect_timeout=1.0)
    assert time.monotonic() - t0 < 8


@needs_ffmpeg
def test_mjpeg_latest_frame_only_and_reconnect_across_ffmpeg_restart(tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    server = MjpegServer(video).start()
    src = open_source(server.url, connect_timeout=10)
    try:
        first = [src.read(timeout=2) for _ in range(3)]
        assert all(f is not None for f in first)
        time.sleep(0.3)  # a slow consumer: ~9 frames arrive meanwhile, only the latest is kept
        f = src.read(timeout=2)
        assert f.id > first[-1].id + 1 and src.stats.stale_dropped > 0
        server.stop()
        wait_for(lambda: not src.stats.connected, 10, what="the loss to be noticed")
        server.start()
        wait_for(lambda: src.stats.reconnects >= 1, 15, what="a reconnect")
        after = wait_for(lambda: src.read(timeout=1), 10, what="frames after the restart")
        assert after.id > f.id and after.image.shape == (48, 64, 3)
    finally:
        src.close()
        server.stop()


@needs_ffmpeg
def test_mjpeg_corrupt_frames_skipped_and_counted(tmp_path):
    video = write_video(tmp_path / "v.avi", frames(30))
    corrupt_avi(video, [3, 10, 20])
    with MjpegServer(video) as server:
        src = open_source(server.url, connect_timeout=10)
        try:
            wait_for(lambda: src.stats.corrupt >= 3, 10, what="corrupt frames to be counted")
            assert src.read(timeout=2) is not None and src.stats.reconnects == 0
        finally:
            src.close()


def test_mjpeg_decodes_at_reduced_scale_covering_the_model_input(tmp_path):
    """MJPEG frames are decoded at the smallest JPEG scale that still covers min_size, and look the same
    as a full decode resized down."""
    import cv2
    import numpy as np

    from edge_runtime.sources import open_source

    path = tmp_path / "big.avi"
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (9, 9), 0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(5):
        w.write(base)
    w.release()
    full = [img for _, img, _ in open_source(path)]
    reduced = [img for _, img, _ in open_source(path, min_size=(96, 96))]
    assert full[0].shape == (480, 640, 3) and reduced[0].shape == (120, 160, 3) and len(reduced) == 5
    ref = cv2.resize(full[0], (160, 120), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(reduced[0].astype(int) - ref).mean() < 4.0
    assert [img.shape for _, img, _ in open_source(path, min_size=(200, 200))][0] == (240, 320, 3)
    assert [img.shape for _, img, _ in open_source(path, min_size=(300, 300))][0] == (480, 640, 3)
