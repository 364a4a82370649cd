"""`--http 127.0.0.1:0` says which port it took (issue 11, finding 11, in part), and that port answers."""
import re
import signal

from tests.edge_runtime.service_helpers import cli, frames, http_get, wait_for, write_video


def test_the_bound_port_is_printed_and_answers(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(3000))  # long enough to still be serving when asked
    p = cli("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(tmp_path / "d.db"),
            "--http", "127.0.0.1:0")
    lines = []
    try:
        port = wait_for(lambda: (lines.append(p.stderr.readline()) or True) and
                        (m := re.search(r"serving http://127\.0\.0\.1:(\d+)", lines[-1])) and int(m.group(1)),
                        30, what="the port line")
        assert port > 0 and wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 10,
                                     what="/healthz on the printed port")
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
