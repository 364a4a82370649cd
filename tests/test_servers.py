"""The real-server fixtures of tests/servers.py work: PostgreSQL, Mosquitto (with persistence) and Chromium."""
from __future__ import annotations

import base64
import shutil
import subprocess
import uuid

import numpy as np
import pytest

# the first test of each server also pays for its start-up (a second or two here; the fixtures poll for 60 s)
START = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------ PostgreSQL
@START
def test_postgres_url_is_loopback(postgres_url, postgres_server):
    assert postgres_url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/edgeqwq"
    assert postgres_server.dsn == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/edgeqwq"
    assert postgres_server.proc.poll() is None


@START
def test_postgres_create_insert_select(postgres_url, postgres_server):
    table = f"t_{uuid.uuid4().hex[:8]}"
    try:
        import psycopg
    except ImportError:  # the driver is not installed yet: the psql client does the same round trip
        out = postgres_server.psql(f"CREATE TABLE {table} (id int PRIMARY KEY, name text);"
                                   f"INSERT INTO {table} VALUES (1, 'crack'), (2, 'spot');"
                                   f"SELECT name FROM {table} ORDER BY id;")
        assert out.split() == ["crack", "spot"]
        return
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (:id, :name)"),
                         [{"id": 1, "name": "crack"}, {"id": 2, "name": "spot"}])
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT name FROM {table} ORDER BY id")).scalars().all() == ["crack", "spot"]
            assert conn.execute(sa.text("SELECT inet_server_addr()::text")).scalar() == "127.0.0.1/32"
    finally:
        engine.dispose()
    # the libpq URL works with the driver itself
    conn = psycopg.connect(postgres_server.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone() == (2,)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- Mosquitto
def _clients():
    pub, sub = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
    if not (pub and sub):
        pytest.skip("mosquitto_pub/mosquitto_sub not installed; run `make system-deps` (apt-get install mosquitto-clients)")
    return pub, sub


def _pub(broker, topic, msg, *extra):
    pub, _ = _clients()
    subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-m", msg, *extra],
                   check=True, capture_output=True, timeout=15)


def _sub(broker, topic, *extra, count=1, wait_s=5):
    """The first ``count`` messages on ``topic`` (retained or queued ones arrive at once)."""
    _, sub = _clients()
    r = subprocess.run([sub, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-C", str(count),
                        "-W", str(wait_s), *extra], capture_output=True, text=True, timeout=wait_s + 10)
    assert r.returncode == 0, f"mosquitto_sub: {r.returncode} {r.stderr}"
    return r.stdout.splitlines()


@START
def test_mosquitto_publish_subscribe(mosquitto_url, mosquitto_broker):
    assert mosquitto_url == f"mqtt://127.0.0.1:{mosquitto_broker.port}"
    topic = f"edgeqwq/test/{uuid.uuid4().hex[:8]}"
    _pub(mosquitto_broker, topic, "hello", "-r", "-q", "1")
    assert _sub(mosquitto_broker, topic) == ["hello"]


@START
def test_mosquitto_restart_keeps_retained_and_queued(mosquitto_broker):
    tag = uuid.uuid4().hex[:8]
    retained, queued, client = f"edgeqwq/retained/{tag}", f"edgeqwq/queued/{tag}", f"edgeqwq-{tag}"
    # a persistent session (-c, QoS 1) that goes away: the broker queues what it misses
    _sub(mosquitto_broker, queued, "-c", "-i", client, "-q", "1", "-E", count=1)
    _pub(mosquitto_broker, retained, "kept", "-r", "-q", "1")
    _pub(mosquitto_broker, queued, "queued-1", "-q", "1")
    _pub(mosquitto_broker, queued, "queued-2", "-q", "1")
    port = mosquitto_broker.port
    try:
        mosquitto_broker.stop()
        assert not mosquitto_broker.running
        assert list(mosquitto_broker.persistence_dir.iterdir()), "no persistence file after a clean stop"
    finally:
        mosquitto_broker.start()
    assert mosquitto_broker.port == port
    assert _sub(mosquitto_broker, retained) == ["kept"]
    assert _sub(mosquitto_broker, queued, "-c", "-i", client, "-q", "1", count=2) == ["queued-1", "queued-2"]


# -------------------------------------------------------------------------------------------- Chromium
def _png_data_uri() -> str:
    import cv2

    img = np.zeros((16, 24, 3), np.uint8)
    img[:, :] = (0, 0, 255)  # BGR: red
    img[4:12, 8:16] = (255, 0, 0)  # a blue square
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


@pytest.fixture
def page(tmp_path):
    p = tmp_path / "page.html"
    p.write_text(
        "<!doctype html><html><head><style>body{margin:0;background:#fff}</style></head><body>"
        f'<img id="img" src="{_png_data_uri()}" width="240" height="160" style="image-rendering:pixelated">'
        "<p>edge-qwq</p></body></html>")
    return p


@START
def test_chromium_screenshot_is_not_blank(chromium, page, tmp_path):
    import cv2

    png = chromium.screenshot(page, tmp_path / "shot.png", width=640, height=400)
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (400, 640, 3)
    assert img.std() > 10  # not a blank page
    # the image is drawn at the top left at 10x: red around a blue square
    assert tuple(int(c) for c in img[20, 20]) == (0, 0, 255)
    assert tuple(int(c) for c in img[80, 120]) == (255, 0, 0)
    assert tuple(int(c) for c in img[300, 600]) == (255, 255, 255)


@START
def test_chromium_eval_image_decoded_and_no_network(chromium, page):
    assert int(chromium.eval_page(page, "document.getElementById('img').naturalWidth")) == 24
    assert chromium.eval_page(page, "const i = document.images[0]; [i.naturalWidth, i.naturalHeight]") == "[24,16]"
    fetched = chromium.eval_page(
        page, "fetch('http://example.com/').then(r => 'reached ' + r.status, e => 'failed: ' + e.message)")
    assert fetched.startswith("failed"), fetched
    assert not list(page.parent.glob(".*.eval-*.html"))  # the evaluated copy is gone


@START
def test_chromium_eval_reports_js_errors(chromium, page):
    from tests.servers import ChromiumError

    with pytest.raises(ChromiumError, match="nope"):
        chromium.eval_page(page, "throw new Error('nope')")
