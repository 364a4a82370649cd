"""Issue 8: one ONNX Runtime thread policy for every session of a bundle, and bench reporting the tail."""
import numpy as np
import pytest

from edge_runtime.backends import open_backend
from edge_runtime.backends.onnxruntime_backend import available_cores, make_session, thread_policy
from edge_runtime.bundle import Bundle
from edge_runtime.evaluate import exit_logits, overhead_report, percentiles
from edge_runtime.executor import EarlyExitExecutor, ExitPolicy
from edge_runtime.inference import DynamicInference, InferenceConfig

SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def options(sess) -> dict:
    o = sess.get_session_options()
    return {"intra": o.intra_op_num_threads, "inter": o.inter_op_num_threads,
            "spin": [o.get_session_config_entry(k) for k in SPIN_KEYS]}


def test_default_policy_reaches_every_stage_session(tiny_bundle):
    model = DynamicInference(tiny_bundle, InferenceConfig())  # threads=0: the bundle policy
    backend = model.backend
    assert backend.thread_policy.name == "bundle"
    assert len(backend.sessions) == 3
    for sess in backend.sessions:
        assert options(sess) == {"intra": 1, "inter": 1, "spin": ["0", "0"]}


def test_batches_run_on_batch_sessions_opened_on_first_use(tiny_bundle):
    backend = open_backend("onnxruntime", Bundle.open(tiny_bundle))
    executor = EarlyExitExecutor(backend, ExitPolicy.build(2, [1.0, 1.0], [1.0, 1.0]), 1)
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    executor.run(x[:1])
    if backend.thread_policy.batch_threads != backend.thread_policy.frame_threads:
        assert all(b is None for b in backend._batch)  # a single frame never opens a batch session
    batch = exit_logits(executor, x, batch=4)
    cores = available_cores()
    for k in range(3):
        assert options(backend.batch_session(k)) == {"intra": cores, "inter": 1, "spin": ["0", "0"]}
    one = [executor.run_all(x[i:i + 1]) for i in range(5)]  # frame sessions: the same numbers
    for k in range(3):
        np.testing.assert_allclose(batch[k], np.concatenate([o[k] for o in one]), rtol=1e-4, atol=1e-5)


def test_explicit_threads_give_one_fixed_policy_for_both_roles(tiny_bundle):
    backend = open_backend("onnxruntime", Bundle.open(tiny_bundle), threads=3)
    assert backend.thread_policy.to_dict()["name"] == "fixed"
    for k in range(3):
        assert backend.batch_session(k) is backend.sessions[k]
        assert options(backend.sessions[k]) == {"intra": 3, "inter": 1, "spin": ["0", "0"]}
    with pytest.raises(ValueError):
        thread_policy(-1)


def test_make_session_defaults_to_the_batch_role(tiny_bundle):
    sess = make_session(tiny_bundle / "stages" / "stage0.onnx")
    assert options(sess) == {"intra": available_cores(), "inter": 1, "spin": ["0", "0"]}
    assert options(make_session(tiny_bundle / "stages" / "stage0.onnx", role="frame"))["intra"] == 1


def test_percentiles_and_overhead_report():
    assert set(percentiles([1.0, 2.0, 3.0])) == {"p50", "p95", "p99"}
    r = overhead_report(lambda x: None, lambda x: None, np.zeros((3, 1, 2, 2), np.float32), frames=20)
    assert set(r["bare_ms"]) == set(r["runtime_ms"]) == {"p50", "p95", "p99"}
    assert r["frames"] == 20 and isinstance(r["overhead_pct"], float)


def test_bench_reports_p50_p95_p99_per_path_overhead_and_policy(tiny_bundle, tmp_path):
    from edge_qwq.bench import run_bench
    from export.sample_data import make_sample

    make_sample(tmp_path / "data", size=32, per_class=8, seed=0)
    r = run_bench(tiny_bundle, tmp_path / "data", frames=20, log=lambda m: None)
    for path in ("student_full", "early_exit"):
        assert set(r["latency_ms"][path]) == {"p50", "p95", "p99"}, path
        lat = r["latency_ms"][path]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert r["latency_ms"]["teacher"] is None  # no teacher given
    over = r["runtime_overhead"]
    assert set(over["bare_ms"]) == {"p50", "p95", "p99"} and "overhead_pct" in over
    assert r["thread_policy"]["name"] == "bundle"
    assert r["thread_policy"]["intra_op_threads"] == {"frame": 1, "batch": available_cores()}
    assert r["thread_policy"]["allow_spinning"] is False
    assert r["frames"] == 20
