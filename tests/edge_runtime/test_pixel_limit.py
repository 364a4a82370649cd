"""Image decoding has a pixel limit (issue 11, finding 12): a small PNG of a huge image is refused in one
line instead of taking gigabytes. In a fresh process, as a user runs it (OpenCV reads the limit at load)."""
import cv2
import numpy as np

from tests.edge_runtime.service_helpers import cli_run


def test_a_huge_image_is_refused_before_it_is_decoded(tiny_bundle, tmp_path):
    path = tmp_path / "huge.png"
    ok, buf = cv2.imencode(".png", np.zeros((10000, 11000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    path.write_bytes(buf.tobytes())  # 110 megapixels in well under a megabyte
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(path))
    err = r.stderr.strip()
    assert r.returncode != 0 and "decoding limit" in err and len(err.splitlines()) == 1
    small = tmp_path / "ok.png"
    cv2.imwrite(str(small), np.zeros((48, 64, 3), np.uint8))
    assert cli_run("run", "--bundle", str(tiny_bundle), "--source", str(small)).returncode == 0
