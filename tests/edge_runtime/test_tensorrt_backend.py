"""The TensorRT backend: without TensorRT it says so and how to get it; on a device (marked tests) it runs
the same decisions as ONNX Runtime with the hidden state on the GPU."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_runtime.backends.tensorrt_backend import EnginesUnavailable, usable_engines
from edge_runtime.bundle import Bundle, EngineEntry
from edge_runtime.errors import BackendUnavailable


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(_has_tensorrt(), reason="checks the message shown where TensorRT is absent")
def test_open_backend_without_tensorrt_says_what_is_missing(tiny_bundle):
    from edge_runtime.backends import open_backend

    with pytest.raises(BackendUnavailable) as e:
        open_backend("tensorrt", Bundle.open(tiny_bundle))
    assert "TensorRT is not installed" in str(e.value) and "jetson/install.sh" in str(e.value)


@pytest.mark.skipif(_has_tensorrt(), reason="checks the message shown where TensorRT is absent")
def test_run_with_tensorrt_backend_exits_nonzero_without_traceback(tiny_bundle, tmp_path, capsys):
    import cv2

    from edge_qwq.cli import main

    img = tmp_path / "part.png"
    cv2.imwrite(str(img), np.full((32, 32, 3), 128, np.uint8))
    code = main(["run", "--bundle", str(tiny_bundle), "--source", str(img), "--backend", "tensorrt"])
    err = capsys.readouterr().err
    assert code != 0
    assert "TensorRT is not installed" in err and "jetson/install.sh" in err and "--backend onnxruntime" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_engines_for_another_device_are_never_loaded(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    with pytest.raises(EnginesUnavailable) as e:
        usable_engines(b, "fp32", "sm87-trt10.3.0-cuda12.6-abc")
    assert e.value.status == "missing" and "edge-qwq build --target orin" in str(e.value)
    b.manifest.engines["sm72-trt8.5.2-cuda11.4-old"] = EngineEntry("fp32", [], active=True)
    with pytest.raises(EnginesUnavailable) as e:
        usable_engines(b, "fp32", "sm87-trt10.3.0-cuda12.6-abc")
    assert e.value.status == "other-device" and "sm72-trt8.5.2-cuda11.4-old" in str(e.value)
    assert isinstance(e.value, BackendUnavailable)  # the caller's fall-back-to-ONNX-Runtime path


# ---------------- on the device (jetson/run-device-tests.sh) ----------------

@pytest.mark.tensorrt
def test_device_load_and_run_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU: run jetson/run-device-tests.sh on an Orin")
    pytest.importorskip("pycuda", reason="needs pycuda: run jetson/install.sh on the device")
    from edge_runtime.backends import open_backend
    from edge_runtime.executor import EarlyExitExecutor, ExitPolicy, simulate_exits
    from engine_builder.build import build_engines
    from tests.engine_builder.device_bundle import make_onnx_bundle

    root = make_onnx_bundle(tmp_path / "bundle")  # torch-free: torch is not installed on the device
    build_engines(root, progress=lambda s: None)
    bundle = Bundle.open(root)
    trt_backend = open_backend("tensorrt", bundle)
    ort_backend = open_backend("onnxruntime", bundle)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    h_trt, h_ort = x, x
    for k in range(trt_backend.num_stages):
        h_trt, logits_trt = trt_backend.run_stage(k, h_trt)
        h_ort, logits_ort = ort_backend.run_stage(k, h_ort)
        np.testing.assert_allclose(logits_trt, logits_ort, atol=1e-3, rtol=1e-3)
        assert not isinstance(h_trt, np.ndarray)  # the hidden state stayed on the GPU
        np.testing.assert_allclose(trt_backend.hidden_to_host(h_trt), h_ort, atol=1e-3, rtol=1e-3)
        assert trt_backend.stage_ms[k] > 0  # CUDA-event timing
    policy = ExitPolicy.build(trt_backend.num_stages - 1, [0.5, 0.6])
    frames = np.random.default_rng(1).standard_normal((8, 1, 3, 32, 32)).astype(np.float32)
    trt_exec = EarlyExitExecutor(trt_backend, policy, bundle.ok_index)
    ort_logits = [np.concatenate(z) for z in zip(*[EarlyExitExecutor(ort_backend, policy, bundle.ok_index)
                                                   .run_all(f) for f in frames])]
    pred, exit_at = simulate_exits(ort_logits, policy, bundle.ok_index)
    for i, f in enumerate(frames):
        r = trt_exec.run(f)
        assert (r.label_index, r.exit_index) == (pred[i], exit_at[i])


# ---------------- here, with FAKE tensorrt and pycuda (tests/engine_builder/fake_tensorrt.py) ----------------
# The fakes replay each stage's ONNX file with ONNX Runtime on fake device memory: what is tested is our
# buffer handling (batch range, padding, compaction copies), not TensorRT.

def _tile_bundle(root):
    import dataclasses

    b = Bundle.open(root)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile")
    b.save()
    return root


def _fake_trt_backend(root, frame_size=(96, 128), static: bool = False):
    """Engines built for `root` by the fake builder (tile profile 1..tiles of frame_size), opened by the
    TensorRT backend on the fakes; static=True rewrites the profile as a DLA build records it (min = max)."""
    import json

    from edge_runtime.backends.tensorrt_backend import TensorRTBackend
    from engine_builder.build import build_engines
    from engine_builder.plan import BuildOptions
    from engine_builder.verify import onnxruntime_runner
    from tests.engine_builder.fake_tensorrt import FAKE_ENGINE, make_fake_cuda, make_fake_tensorrt
    from tests.engine_builder.test_cache_build import ORIN

    cuda = make_fake_cuda()
    trt = make_fake_tensorrt("10.3.0", cuda=cuda)
    b = Bundle.open(root)
    ort = onnxruntime_runner([b.path(s.file) for s in b.stages])
    build_engines(root, options=BuildOptions(frame_size=frame_size), trt=trt, fingerprint=ORIN,
                  engine_runner=lambda engines, plan: ort, progress=lambda s: None)
    if static:  # what a --dla build records: every stage fixed at the tile count
        b = Bundle.open(root)
        entry = b.manifest.engines[ORIN.id]
        for s in entry.stages:
            spec = json.loads(b.path(s.file).read_bytes()[len(FAKE_ENGINE):])
            spec["profile"] = {k: [v[2]] * 3 for k, v in spec["profile"].items()}
            b.path(s.file).write_bytes(FAKE_ENGINE + json.dumps(spec).encode())
            b.add_file(s.file)
        entry.plan["profile"] = {k: [v[2]] * 3 for k, v in entry.plan["profile"].items()}
        b.save()
    return TensorRTBackend(Bundle.open(root), "fp32", fingerprint=ORIN, trt=trt, cuda=cuda), cuda, trt


def _ort_backend(root):
    from edge_runtime.backends import open_backend

    return open_backend("onnxruntime", Bundle.open(root))


def _tiles(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_row_runs_coalesce_consecutive_rows():
    from edge_runtime.backends.tensorrt_backend import row_runs

    assert row_runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 0, 3), (3, 5, 2), (5, 9, 1)]
    assert row_runs(np.array([4])) == [(0, 4, 1)]
    assert row_runs(np.array([], np.int64)) == []


def test_fake_take_rows_gathers_the_right_rows_on_the_device(tiny_bundle):
    root = _tile_bundle(tiny_bundle)
    trt_b, cuda, _ = _fake_trt_backend(root)
    x = _tiles(12)
    h, _ = trt_b.run_stage(0, x)
    h_ort, _ = _ort_backend(root).run_stage(0, x)
    assert h.shape == h_ort.shape and not isinstance(h, np.ndarray)
    np.testing.assert_allclose(trt_b.hidden_to_host(h), h_ort, rtol=1e-5, atol=1e-5)
    rows = np.array([1, 2, 3, 7, 10, 11])
    del cuda.calls[:]
    g = trt_b.take_rows(h, rows)
    assert g.shape == (6,) + h_ort.shape[1:] and int(g.buffer) != int(h.buffer)
    copies = [c for c in cuda.calls if c[0] == "dtod"]
    row_bytes = int(np.prod(h_ort.shape[1:])) * 4
    assert [c[3] for c in copies] == [3 * row_bytes, row_bytes, 2 * row_bytes]  # one copy per run of rows
    assert not [c for c in cuda.calls if c[0] in ("dtoh", "htod")]  # nothing went through the host
    np.testing.assert_allclose(trt_b.hidden_to_host(g), h_ort[rows], rtol=1e-5, atol=1e-5)
    # the next stage runs on the gathered rows as ONNX Runtime does on the same rows
    h2, logits2 = trt_b.run_stage(1, g)
    h2_ort, logits2_ort = _ort_backend(root).run_stage(1, h_ort[rows])
    np.testing.assert_allclose(logits2, logits2_ort, rtol=1e-5, atol=1e-5)
    # a compaction of a gathered batch uses the other gather buffer; a prefix needs no copy at all
    gg = trt_b.take_rows(g, np.array([2, 5]))
    assert int(gg.buffer) not in (int(g.buffer), int(h.buffer))
    np.testing.assert_allclose(trt_b.hidden_to_host(gg), h_ort[[3, 11]], rtol=1e-5, atol=1e-5)
    del cuda.calls[:]
    prefix = trt_b.take_rows(h2, np.array([0, 1, 2]))
    assert int(prefix.buffer) == int(h2.buffer) and prefix.shape[0] == 3 and not cuda.calls
    for bad in ([], [3, 1], [0, 0], [0, 6]):
        with pytest.raises(ValueError):
            trt_b.take_rows(h2, np.array(bad, np.int64))


@pytest.mark.parametrize("static", [False, True], ids=["gpu-profile", "dla-static-padded"])
def test_fake_run_tiles_matches_onnxruntime(tiny_bundle, static):
    from edge_runtime.executor import ExitPolicy, softmax
    from edge_runtime.tile_executor import run_tiles

    root = _tile_bundle(tiny_bundle)
    trt_b, _, trt = _fake_trt_backend(root, frame_size=(96, 128), static=static)
    ort_b = _ort_backend(root)
    n_max = trt_b.max_batch
    assert n_max == 20  # 96x128 frame, 32 px tiles at 25 % overlap: 4 x 5
    assert trt_b.pad_to == (n_max if static else None)
    bundle = Bundle.open(root)
    tiles = _tiles(17, seed=3)  # fewer tiles than the profile's max (a ROI, reused tiles)
    # thresholds at the median confidence: about half the tiles leave at each early exit
    _, logits0 = ort_b.run_stage(0, tiles)
    conf = softmax(np.asarray(logits0, np.float64)).max(axis=1)
    t = float(np.median(conf))
    policy = ExitPolicy(thresholds=(t, t), ok_thresholds=(t, t))
    r_trt = run_tiles(trt_b, tiles, policy, bundle.ok_index)
    r_ort = run_tiles(ort_b, tiles, policy, bundle.ok_index)
    assert r_trt.stage_tiles == r_ort.stage_tiles and r_trt.stage_tiles[0] == 17
    assert r_trt.stage_tiles[1] < 17  # compaction happened
    np.testing.assert_array_equal(r_trt.exit_at, r_ort.exit_at)
    np.testing.assert_array_equal(r_trt.labels, r_ort.labels)
    np.testing.assert_allclose(r_trt.probs, r_ort.probs, rtol=1e-5, atol=1e-6)
    shapes = [c[2][0] for c in trt.calls if c[0] == "context.set_input_shape"]
    if static:
        assert set(shapes) == {n_max}  # every run padded to the fixed batch
    else:
        assert shapes == r_trt.stage_tiles  # every run at its own batch


def test_fake_batch_over_the_profile_names_the_frame_size(tiny_bundle):
    root = _tile_bundle(tiny_bundle)
    trt_b, _, _ = _fake_trt_backend(root, frame_size=(96, 128))
    with pytest.raises(ValueError, match=r"batch 21 exceeds the engine profile's max batch 20 .*128x96 frames.*"
                                         r"--frame-size"):
        trt_b.run_stage(0, _tiles(21))


# ---------------- threads, CUDA contexts and the health monitor (issue 13, finding 1), on the FAKES ----------------

def _device_bundle_on_fake_trt(tmp_path, damage: float = 0.0, mode: str = "mixed"):
    """The torch-free device bundle with quantized stages, its engines built by the fake builder (verified by
    the fake runtime), and a fake pycuda whose primary context is current in this thread, as
    `import pycuda.autoprimaryctx` (or autoinit) would leave it."""
    from engine_builder.build import build_engines
    from tests.engine_builder.device_bundle import add_quantized_stages, make_onnx_bundle
    from tests.engine_builder.fake_tensorrt import (fake_engine_runner, make_fake_cuda, make_fake_tensorrt,
                                                    primary_context_current)
    from tests.engine_builder.test_cache_build import ORIN

    root = add_quantized_stages(make_onnx_bundle(tmp_path / "bundle"), mode=mode, damage=damage)
    cuda = make_fake_cuda()
    trt = make_fake_tensorrt("10.3.0", cuda=cuda)
    build_engines(root, trt=trt, fingerprint=ORIN, engine_runner=fake_engine_runner(trt, cuda), progress=lambda s: None)
    primary_context_current(cuda)
    return root, trt, cuda, {"trt": trt, "cuda": cuda, "fingerprint": ORIN}


def _in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    th = threading.Thread(target=run)
    th.start()
    th.join(timeout=60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_backend_used_from_another_thread_refuses_and_for_thread_serves_it(tmp_path):
    from edge_runtime.backends.tensorrt_backend import TensorRTBackend
    from edge_runtime.inference import stage_outputs

    root, trt, cuda, opts = _device_bundle_on_fake_trt(tmp_path)
    backend = TensorRTBackend(Bundle.open(root), "quantized", **opts)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref_logits, ref_hidden = stage_outputs(_ort_backend_q(root), x)
    with pytest.raises(RuntimeError, match=r"belongs to thread .* backend.for_thread\(\)"):
        _in_thread(lambda: backend.run_stage(0, x))

    def own():
        b = backend.for_thread(max_batch=1)
        try:
            return stage_outputs(b, x), b.engines is backend.engines, [id(s.context) for s in b.stages]
        finally:
            b.close()

    (logits, hidden), shared, contexts = _in_thread(own)
    assert shared and not set(contexts) & {id(s.context) for s in backend.stages}  # same engines, own contexts
    for a, b in zip(logits + hidden, ref_logits + ref_hidden):
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.05)
    pushes = [c for c in cuda.calls if c[0] in ("ctx.push", "ctx.pop") and c[2] != threading.get_ident()]
    assert [c[0] for c in pushes] == ["ctx.push", "ctx.pop"]  # the primary context, pushed and popped there
    # and the frame loop's backend still works in its own thread
    assert stage_outputs(backend, x)[0][0].shape == (1, 4)


def _ort_backend_q(root):
    from edge_runtime.backends import open_backend

    return open_backend("onnxruntime", Bundle.open(root), precision="quantized")


def test_the_backend_checks_what_tensorrt_answers(tmp_path):
    """A False from TensorRT (here: a shape outside the engine's profile, from a manifest that claims a larger
    one) is an error, not ignored."""
    from edge_runtime.backends.tensorrt_backend import TensorRTBackend
    from tests.engine_builder.test_cache_build import ORIN

    root, trt, cuda, opts = _device_bundle_on_fake_trt(tmp_path)
    b = Bundle.open(root)
    b.manifest.engines[ORIN.id].plan["profile"] = {"image": [[1, 3, 32, 32], [1, 3, 32, 32], [8, 3, 32, 32]]}
    b.save()
    backend = TensorRTBackend(Bundle.open(root), "quantized", **opts)
    with pytest.raises(RuntimeError, match=r"TensorRT refused input shape \(6, 3, 32, 32\)"):
        backend.run_stage(0, np.zeros((6, 3, 32, 32), np.float32))


def test_finding1_health_checks_run_on_tensorrt_and_roll_back_damaged_stages(tmp_path):
    """The health thread gets its own backend (execution contexts, stream, buffers) under the primary context
    pushed there; the damaged quantized engines disagree with the FP32 reference and a rollback is asked."""
    from edge_runtime.health import HealthConfig, HealthMonitor
    from edge_runtime.inference import DynamicInference, InferenceConfig

    root, trt, cuda, opts = _device_bundle_on_fake_trt(tmp_path, damage=1.0, mode="int8")
    model = DynamicInference(root, InferenceConfig(backend="tensorrt", precision="quantized", backend_options=opts))
    assert model.backend.name == "tensorrt"
    events, rollbacks = [], []
    cfg = HealthConfig(sample_rate=1.0, min_samples=30, fast_samples=10, ref_samples=20, drift_window=10,
                       queue_size=10_000)
    health = HealthMonitor(model, cfg, emit=lambda kind, detail: events.append((kind, detail)),
                           on_rollback=rollbacks.append)
    rng = np.random.default_rng(0)
    try:
        for _ in range(60):
            frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            decision = model.infer(frame)  # the frame loop, in this thread, on its own backend
            health.submit(frame, decision)
        health.wait_idle(60)
    finally:
        health.close()
    errors = [d for k, d in events if k == "health_error"]
    assert not errors, errors[:3]
    assert health.sampled > 0 and health.shadow.agreement() is not None
    assert rollbacks and health.rollback_requested
    # the health thread pushed the primary context and popped it when it closed
    other = [c[0] for c in cuda.calls if c[0] in ("ctx.push", "ctx.pop") and c[2] != threading.get_ident()]
    assert other == ["ctx.push", "ctx.pop"]


# ---------------- on the device: health checks on TensorRT (jetson/run-device-tests.sh) ----------------

@pytest.mark.tensorrt
def test_device_health_on_tensorrt_rolls_back_damaged_stages(tmp_path):
    """The service on TensorRT with damaged quantized stages installed over good FP32 ones: the health thread
    (its own execution contexts, stream and buffers) sees the disagreement and the service rolls back."""
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU: run jetson/run-device-tests.sh on an Orin")
    pytest.importorskip("pycuda", reason="needs pycuda: run jetson/install.sh on the device")
    import sqlite3

    from edge_runtime import installer
    from edge_runtime.health import HealthConfig
    from edge_runtime.service import Service, ServiceConfig
    from engine_builder.build import build_engines
    from tests.edge_runtime.service_helpers import frames, write_video
    from tests.engine_builder.device_bundle import add_quantized_stages, make_onnx_bundle

    src = make_onnx_bundle(tmp_path / "bundle")
    root = tmp_path / "root"
    good = installer.install(src, root)  # FP32 only: the last known good
    add_quantized_stages(src, mode="int8", damage=1.0)  # a broken quantizer's output, with valid sha256s
    bad = installer.install(src, root)
    build_engines(installer.resolve(root)[0], precision="quantized", progress=lambda s: None)
    video = write_video(tmp_path / "v.avi", frames(300))
    db = tmp_path / "d.db"
    cfg = HealthConfig(min_samples=30, fast_samples=10, ref_samples=20, drift_window=10, queue_size=10_000)
    svc = Service(ServiceConfig(bundle=str(root), source=str(video), store=str(db), shadow_rate=1.0,
                                handle_signals=False, health=cfg, backend="tensorrt"))
    svc.run()
    with sqlite3.connect(db) as c:
        kinds = [k for (k,) in c.execute("SELECT kind FROM events ORDER BY id")]
        errors = [d for (d,) in c.execute("SELECT detail FROM events WHERE kind='health_error'")]
    assert not errors, errors[:3]
    assert "rollback_requested" in kinds and "rollback" in kinds, kinds
    assert installer.link_target(root, "current") == good.resolve() and (bad / installer.REJECTED).exists()
    print("health on TensorRT: rollback after damaged stages;", ", ".join(k for k in kinds if "roll" in k))
