"""ONNX Runtime backend: the embedded default (CPU), also CUDA where onnxruntime-gpu is installed.

Thread policy (issue 8, "a tight tail"), chosen here for every session of a bundle by `thread_policy`:

A bundle is several stage sessions run one after another on each frame. With ONNX Runtime's defaults
every session keeps its own intra-op pool (one thread per core) whose workers spin after each run, so
on a small CPU the pool of stage k still spins while stage k+1 wants the cores: on 2 cores the demo
student's full-depth p99 was 4-6x its p50. The policy, named "bundle", has two roles:

  * "frame" (a batch of one: the executor's per-frame path, the health monitor's shadow checks):
    1 intra-op thread. The calling thread runs every operator; there is no pool, so nothing spins
    between stages and nothing competes with the next stage or with the process's other threads
    (frame decode, health checks, HTTP).
  * "batch" (more than one frame: exit_logits on 64 frames, calibration, export and engine checks):
    one intra-op thread per core available to the process, spinning off (a batch stage is long enough
    that waking a sleeping worker costs nothing measurable, and an idle pool gives its cores back).

Measured on the demo bundle, 2 cores, 1000+ frames per path (issue 8 report): per frame, 1 thread gave
p99/p50 about 1.2-1.5; 2 threads without spinning were slower at p50 and p99 (every parallel operator
wakes a sleeping worker); ONNX Runtime's default (2 spinning threads per session) gave p99/p50 4-5; one
process-wide pool shared by all sessions (2 spinning threads) was ~15 % faster at p50 but its tail was
wider (p99/p50 1.4-2.0), and it is process state that must be set before the process's first session
and spins on the cores the decode and health threads need. For batches of 64, one thread per core
without spinning was faster than the defaults (whose pools fight there too) and ~1.6x faster than
1 thread. On a larger CPU the frame role may leave speed unused; `threads` sets it.

Execution is sequential, so the inter-op pool is unused: 1 thread, spinning off. An explicit thread
count (`threads=N` > 0: InferenceConfig.threads, `edge-qwq run --threads N`) replaces the policy by
"fixed": N intra-op threads in both roles, spinning off; `threads=0` means the bundle policy.

OnnxRuntimeBackend opens the frame sessions (`sessions`) at once and each stage's batch session the
first time that stage gets a batch larger than one (never, in the device service); when both roles have
the same options a stage has one session. `make_session` defaults to the batch role.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import BundleError

ROLES = ("frame", "batch")


def available_cores() -> int:
    """CPU cores this process may run on (affinity / cgroup cpuset aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPolicy:
    """Intra-op threads per role and whether idle pool threads spin (see the module docstring)."""

    name: str  # "bundle": chosen by thread_policy(); "fixed": an explicit thread count
    frame_threads: int
    batch_threads: int
    allow_spinning: bool = False
    inter_op_threads: int = 1

    def threads(self, role: str) -> int:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        return self.frame_threads if role == "frame" else self.batch_threads

    def session_options(self, role: str = "batch"):
        """onnxruntime.SessionOptions carrying this policy for `role`."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = self.threads(role)
        opts.inter_op_num_threads = self.inter_op_threads
        spin = "1" if self.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return opts

    def to_dict(self) -> dict:
        return {"name": self.name, "intra_op_threads": {"frame": self.frame_threads, "batch": self.batch_threads},
                "inter_op_threads": self.inter_op_threads, "allow_spinning": self.allow_spinning,
                "execution_mode": "sequential", "cores": available_cores()}


def thread_policy(threads: int = 0) -> ThreadPolicy:
    """The one place the ONNX Runtime thread policy of a bundle is chosen. threads: 0 = the bundle
    policy (1 thread per frame, one per core for batches, no spinning); N > 0 = N threads in both roles."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: the bundle policy), not {threads}")
    if threads:
        return ThreadPolicy("fixed", threads, threads)
    return ThreadPolicy("bundle", frame_threads=1, batch_threads=available_cores())


def make_session(path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None,
                 role: str = "batch", policy: ThreadPolicy | None = None):
    """An InferenceSession for one ONNX file with the thread policy's options for `role` (`policy`, else
    thread_policy(threads)); BundleError (one line) if the file is not a valid graph."""
    import onnxruntime as ort

    opts = (policy or thread_policy(threads)).session_options(role)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # ORT raises Fail/InvalidGraph/InvalidProtobuf/NoSuchFile with long texts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({first[:200]})") from None


def _stage_files(bundle, precision: str) -> list[Path]:
    files = []
    for stage in bundle.stages:
        if precision == "quantized" and not stage.quantized:
            raise BundleError(f"bundle {bundle.root} has no quantized stages; run `edge-qwq quantize` first")
        files.append(bundle.path(stage.quantized if precision == "quantized" else stage.file))  # inside it
    return files


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, bundle, precision: str = "fp32", threads: int = 0, providers: list[str] | None = None,
                 files: list[Path] | None = None):
        """The bundle's FP32 or quantized stages, or explicit stage `files` (e.g. another quantizer's).
        threads: 0 = the bundle thread policy, N > 0 = N intra-op threads (see the module docstring)."""
        self.precision = precision
        self.thread_policy = thread_policy(threads)
        self._files = list(files or _stage_files(bundle, precision))
        self._providers = providers
        self.sessions = [self._open(p, "frame") for p in self._files]  # the per-frame (latency) sessions
        self.num_stages = len(self.sessions)
        self._inputs = [s.get_inputs()[0].name for s in self.sessions]
        self._outputs = [[o.name for o in s.get_outputs()] for s in self.sessions]
        # classes each exit scores (None where the graph leaves it symbolic): checked against the manifest's
        self.image_size = [d for d in self.sessions[0].get_inputs()[0].shape[2:]]  # [H, W] of stage 0's input
        self.exit_classes = [next((d for d in s.get_outputs()[-1].shape[1:] if isinstance(d, int)), None)
                             for s in self.sessions]
        same = self.thread_policy.frame_threads == self.thread_policy.batch_threads
        self._batch: list[Any] = list(self.sessions) if same else [None] * self.num_stages

    def _open(self, path: Path, role: str):
        return make_session(path, providers=self._providers, role=role, policy=self.thread_policy)

    def batch_session(self, k: int):
        """Stage k's session for batches larger than one (opened on first use)."""
        if self._batch[k] is None:
            self._batch[k] = self._open(self._files[k], "batch")
        return self._batch[k]

    def run_stage(self, k: int, x: Any) -> tuple[np.ndarray, np.ndarray]:
        sess = self.sessions[k] if len(x) == 1 else self._batch[k] or self.batch_session(k)
        hidden, logits = sess.run(self._outputs[k], {self._inputs[k]: x})
        return hidden, logits  # (B, tokens, dim), (B, classes)

    def hidden_to_host(self, hidden: np.ndarray) -> np.ndarray:
        return hidden

    def take_rows(self, hidden: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The hidden state of the batch rows `rows` (ascending), for the next stage (tile compaction)."""
        return np.ascontiguousarray(hidden[rows])
