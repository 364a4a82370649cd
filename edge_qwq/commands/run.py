"""`edge-qwq run`: decisions per frame, one JSON line each, on stdout."""
from __future__ import annotations

import json
import sys

import click

from edge_qwq.commands import finite


@click.command("run")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder (from export/build).")
@click.option("--source", required=True, envvar="EDGE_QWQ_SOURCE", show_envvar=True,
              help="An image, a folder, a video file or a camera URI (see below); also read from the "
                   "environment, so a camera password need not be on the command line.")
@click.option("--backend", default="onnxruntime", show_default=True,
              type=click.Choice(["onnxruntime", "tensorrt"]), help="Inference backend.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "quantized"]),
              help="auto: the quantized stages when the bundle has them.")
@click.option("--early-exit", default=None, help="Thresholds to exit early with a defect, e.g. 0.85,0.92.")
@click.option("--early-exit-ok", default=None, help="Thresholds to exit early with ok (stricter), e.g. 0.9,0.95.")
@click.option("--max-frames", type=click.IntRange(min=0), default=0, help="Stop after this many frames (0: all).")
@click.option("--store", default=None, type=click.Path(dir_okay=False),
              help="SQLite decision store (WAL); runs the service loop.")
@click.option("--jsonl", default=None, help="Also write stored decisions as JSON lines here ('-': stdout).")
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help="Serve /healthz /readyz /metrics /status /latest.jpg; runs the service loop. Bind 127.0.0.1 "
                   "or one interface; for remote access put a TLS reverse proxy in front (README).")
@click.option("--http-token-file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="--http: a file holding a bearer token; every route but /healthz and /readyz then asks for "
                   "`Authorization: Bearer <token>` (401 without it).")
@click.option("--stall-timeout", default=30.0, show_default=True, type=finite(0.0, None), metavar="SECONDS",
              help="Service: no decision for this long while the source is up makes /healthz fail and stops "
                   "the systemd watchdog pings (a restart follows); 0: off. Raise it for triggered cameras.")
@click.option("--evidence", default=None, type=click.Path(file_okay=False), help="Folder for defect JPEGs.")
@click.option("--evidence-budget-mb", default=1024.0, show_default=True, type=finite(0.0, None, min_open=True),
              help="Disk budget for evidence; the oldest evidence is deleted first.")
@click.option("--reuse-window", default=None, type=click.IntRange(min=0),
              help="Frames that may reuse the last decision when nearly identical (0: off); in tile mode, "
                   "frames an unchanged tile may keep its result. Default: the bundle's (manifest "
                   "dynamic.reuse_window).")
@click.option("--reuse-threshold", default=None, type=finite(0.0), metavar="GREY_LEVELS",
              help="Largest change (grey levels, of a patch's mean or contrast) still counted as unchanged by "
                   "frame and tile reuse. Default: the bundle's (manifest dynamic.reuse_threshold).")
@click.option("--shadow-rate", default=0.05, show_default=True, type=finite(0.0, 1.0),
              help="Fraction of frames checked against the FP32 reference in the background.")
@click.option("--connect-timeout", default=10.0, show_default=True, type=finite(0.0, 3600.0, min_open=True),
              help="Seconds to wait for the first frame of a live source; then `run` alone fails with one line. "
                   "The service (--store or --http) never exits for a late camera: it keeps retrying (at most "
                   "2 s apart), /readyz and /status say it is waiting for the source and why, and after this long "
                   "it warns once.")
@click.option("--threads", default=0, type=click.IntRange(0, 256),
              help="ONNX Runtime intra-op threads per stage session (0: the bundle's policy, 1 thread per frame).")
@click.option("--full-res-frames", is_flag=True,
              help="Service: decode MJPEG frames at full size, always. By default a resize-mode model gets them "
                   "at the smallest JPEG scale that covers its input (far less CPU) only while decisions on frames "
                   "decoded both ways agree (at least 99.5 % of the last 600 compared; until then, and otherwise, "
                   "full size; /status \"decode\"). Tile mode always decodes at full size.")
@click.option("--tiling", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]),
              help="Cut each frame into native-scale tiles of the model input (tile mode) and report where the "
                   "defects are. auto: the bundle's input mode (manifest input.mode); on: tile mode, which "
                   "needs a bundle exported for tiles; off: scale each frame whole to the model input.")
@click.option("--tile-overlap", default=None, type=finite(0.0, 1.0, max_open=True), metavar="FRACTION",
              help="Tile mode: fraction of a tile shared with its neighbour, in [0, 1) (more overlap: more "
                   "tiles, fewer defects cut in two). Default: the bundle's (manifest input.tile_overlap).")
@click.option("--roi", default=None, metavar="x0,y0,x1,y1|MASK.png",
              help="Tile mode: inspect only this region, a box in frame pixels (x1, y1 exclusive) or a mask "
                   "image of the frame's size (non-zero: inspect); tiles outside it are never cut or inferred.")
@click.option("--frame-threshold", default=None, type=finite(0.0, 1.0, min_open=True), metavar="SCORE",
              help="Tile mode, expert override: the tile defect score (1 - p(ok)) that makes a frame a defect. "
                   "Default: the bundle's, fitted on defect-free frames (manifest frames.threshold); lower "
                   "flags more frames.")
@click.option("--tile-map", "tile_map", is_flag=True,
              help="Tile mode: also print each frame's tile defect scores (rows x cols, null outside the ROI) "
                   "in its JSON line (large).")
@click.option("--trusted-key", "trusted_key", default=None, type=click.Path(dir_okay=False), metavar="OWNER.pub",
              help="Load only bundles signed with this Ed25519 public key (`edge-qwq sign`); the service also "
                   "rolls back only to signed bundles.")
@click.option("--heatmap", is_flag=True,
              help="Tile mode, service: lay the tile defect scores over /latest.jpg and the evidence JPEGs, "
                   "under the defect boxes.")
@click.option("--mqtt", default=None, metavar="mqtt[s]://HOST[:PORT]/PREFIX",
              help="Publish every stored decision and event to this MQTT broker (needs --store: the store is the "
                   "outbox; a row is marked sent once the broker acknowledged it, so nothing is lost while the "
                   "broker or the network is down). Topics: PREFIX/DEVICE/decisions, /events, /status (retained, "
                   "with a last will). Port 1883 (8883 for mqtts://).")
@click.option("--device-name", default=None, metavar="NAME",
              help="--mqtt: this device's topic level (default: the host name).")
@click.option("--mqtt-qos", default=1, show_default=True, type=click.IntRange(0, 1),
              help="--mqtt: QoS of decisions and events (1: at least once, marked sent on PUBACK).")
@click.option("--mqtt-tls-ca", default=None, type=click.Path(dir_okay=False), metavar="CA.pem",
              help="--mqtt: CA certificate of the broker (turns TLS on).")
@click.option("--mqtt-user", default=None, metavar="USER", help="--mqtt: user name.")
@click.option("--mqtt-password-file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="--mqtt: a file holding the password (never on the command line, never shown).")
@click.option("--mqtt-rate", default=200.0, show_default=True, type=finite(0.0, None, min_open=True),
              metavar="MSG/S", help="--mqtt: messages a second at most (a backlog drains at this rate).")
@click.option("--reject", default=None, metavar="SPEC",
              help="Drive a reject output for every defect frame (needs --store: each reject is recorded with its "
                   "scheduled and actual times). gpio:CHIP:LINE[:active_low] (libgpiod; CHIP gpiochip0 or 0, LINE "
                   "an offset or a line name), http://GATEWAY/PATH (a JSON POST per reject to a PLC gateway), or "
                   "fake-gpio:FILE (a fake chip: no pin moves, its edges go to FILE; for dry runs).")
@click.option("--reject-delay-ms", default=400.0, show_default=True, type=finite(0.0, None), metavar="MS",
              help="--reject: from the frame's capture to the reject (the part's travel from camera to ejector: "
                   "distance / belt speed). Kept however long inference takes.")
@click.option("--reject-pulse-ms", default=50.0, show_default=True, type=finite(0.0, 10000.0, min_open=True),
              metavar="MS", help="--reject: how long a GPIO line stays active (rejects closer than this make one "
                                 "longer pulse).")
def command(bundle, source, backend, precision, early_exit, early_exit_ok, max_frames, store, jsonl, http,
            evidence, evidence_budget_mb, reuse_window, reuse_threshold, shadow_rate, connect_timeout, threads,
            full_res_frames, tiling, tile_overlap, roi, frame_threshold, tile_map, heatmap, trusted_key,
            http_token_file, stall_timeout, mqtt, device_name, mqtt_qos, mqtt_tls_ca, mqtt_user, mqtt_password_file,
            mqtt_rate, reject, reject_delay_ms, reject_pulse_ms):
    """Run BUNDLE on SOURCE and print one JSON decision per frame.

    SOURCE: an image, a folder, a video file, v4l2:///dev/video0, csi://0, rtsp://... or http://... (MJPEG).
    With --store or --http it runs as the device service (reuse, health checks, rollback, systemd notify).

    In tile mode (a bundle exported with --input-mode tile) each frame is inspected at full resolution, tile
    by tile, and its JSON line also carries "defects" (label, confidence and box [x0, y0, x1, y1] in frame
    pixels), "tiles" (tiles cut, inferred, reused, tiles per stage) and "padded" (a frame smaller than one
    tile was padded).

    \b
    Examples:
      edge-qwq run --bundle bundle/ --source line3.mp4 | jq .label
      edge-qwq run --bundle /var/lib/edge-qwq --source csi://0 --store decisions.db --http 0.0.0.0:8080
      edge-qwq run --bundle tiles/ --source line3.mp4 --roi 0,120,1280,840 | jq -c .defects
      edge-qwq run --bundle /var/lib/edge-qwq --source csi://0 --store decisions.db \\
          --mqtt mqtt://10.0.0.5/edge-qwq/line3 --reject gpio:gpiochip0:PQ.05 --reject-delay-ms 400
    """
    if http_token_file and not http:
        raise click.UsageError("--http-token-file needs --http")
    if mqtt and not store:
        raise click.UsageError("--mqtt needs --store: the store is the outbox that decisions and events are sent from")
    mqtt_only = {"--device-name": device_name, "--mqtt-tls-ca": mqtt_tls_ca, "--mqtt-user": mqtt_user,
                 "--mqtt-password-file": mqtt_password_file}
    if not mqtt and any(v is not None for v in mqtt_only.values()):
        raise click.UsageError(f"{next(k for k, v in mqtt_only.items() if v is not None)} needs --mqtt")
    if reject and not store:
        raise click.UsageError("--reject needs --store: every reject is recorded there with its scheduled and "
                               "actual times")
    backend = _engines_for(bundle, backend)
    if store or http:
        from edge_runtime.service import Service, ServiceConfig

        cfg = ServiceConfig(bundle=bundle, source=source, store=store, jsonl=jsonl, http=http, evidence=evidence,
                            evidence_budget_mb=evidence_budget_mb, reuse_window=reuse_window,
                            shadow_rate=shadow_rate, backend=backend, precision=precision,
                            early_exit=_floats(early_exit), early_exit_ok=_floats(early_exit_ok),
                            threads=threads, max_frames=max_frames, connect_timeout=connect_timeout,
                            full_res_frames=full_res_frames, tiling=tiling, tile_overlap=tile_overlap, roi=roi,
                            reuse_threshold=reuse_threshold, frame_threshold=frame_threshold, heatmap=heatmap,
                            tile_map=tile_map, trusted_key=trusted_key, http_token_file=http_token_file,
                            stall_timeout=stall_timeout, mqtt=mqtt, device_name=device_name, mqtt_qos=mqtt_qos,
                            mqtt_tls_ca=mqtt_tls_ca, mqtt_user=mqtt_user, mqtt_password_file=mqtt_password_file,
                            mqtt_rate=mqtt_rate, reject=reject, reject_delay_ms=reject_delay_ms,
                            reject_pulse_ms=reject_pulse_ms)
        Service(cfg).run()
        return
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from edge_runtime.sources import open_source

    config = InferenceConfig(backend=backend, precision=precision, early_exit=_floats(early_exit),
                             early_exit_ok=_floats(early_exit_ok), threads=threads, reuse_window=reuse_window,
                             tiling=tiling, tile_overlap=tile_overlap, roi=roi, reuse_threshold=reuse_threshold,
                             frame_threshold=frame_threshold, trusted_key=trusted_key)
    model = DynamicInference(bundle, config)
    with open_source(source, connect_timeout=connect_timeout) as frames:
        for n, (frame_id, frame, origin) in enumerate(frames):
            if max_frames and n >= max_frames:
                break
            d = model.infer(frame).to_dict()
            if not tile_map:
                d.pop("tile_map", None)
            sys.stdout.write(json.dumps({"frame": frame_id, "source": origin, **d}) + "\n")
            sys.stdout.flush()
    if frames.summary():  # damaged or missing frames of a video, unreadable images of a folder: skipped, counted
        click.echo(f"edge-qwq: warning: {frames.summary()}", err=True)


def _engines_for(bundle: str, backend: str) -> str:
    """At start on the device: build this device's TensorRT engines if the bundle has none for it (first
    start, or a JetPack/TensorRT upgrade changed the fingerprint). If the build or its verification fails, in
    any way (a BuildError, or whatever TensorRT, Polygraphy or pycuda raise), run on ONNX Runtime and say so
    in one line: the service keeps inspecting, and systemd does not restart it into the same failed build.
    Without TensorRT, opening the backend says what is missing."""
    import importlib.util

    if backend != "tensorrt" or importlib.util.find_spec("tensorrt") is None:
        return backend
    from edge_qwq.console import console
    from edge_runtime.errors import EdgeError
    from edge_runtime.installer import resolve
    from engine_builder.build import build_engines_or_explain

    try:
        console.print(build_engines_or_explain(resolve(bundle)[0]))  # an install root runs its `current`
    except Exception as e:  # noqa: BLE001 - any failure of the build falls back; KeyboardInterrupt still stops
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, EdgeError):
            why = f"{type(e).__name__}: {why}"
        click.echo(f"edge-qwq: warning: TensorRT engines not usable ({why}); running on onnxruntime instead",
                   err=True)
        return "onnxruntime"
    return backend


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
