"""Data-parallel distillation: two gloo processes on this CPU, a tiny config."""
import json

import numpy as np
import pytest

from export.distributed import Ranks


def test_shards_of_a_global_batch_are_disjoint_and_cover_it():
    import torch

    idx = torch.randperm(37)
    parts = [Ranks(r, 3, "gloo").shard(idx) for r in range(3)]
    seen = torch.cat(parts).tolist()
    assert sorted(seen) == sorted(idx.tolist()) and len(set(seen)) == len(seen)


@pytest.mark.timeout(600)
def test_two_gloo_processes_distil_a_student_that_exports(tmp_path):
    from edge_runtime.bundle import Bundle
    from edge_runtime.inference import DynamicInference
    from export.distill import DistillConfig
    from export.distributed import run_distributed
    from export.onnx_export import export_bundle
    from export.sample_data import make_sample
    from export.student import load_student
    from export.teacher_train import train_teacher

    make_sample(tmp_path / "data", size=32, per_class=8, seed=5)
    train_teacher(tmp_path / "data", tmp_path / "teacher", arch="resnet", epochs=1, tiny=True, show_progress=False)
    shape = {"dim": 16, "depth": 2, "heads": 2, "exits": (1,)}
    m = run_distributed(tmp_path / "teacher", tmp_path / "data", tmp_path / "student", shape,
                        DistillConfig(epochs=2, batch_size=8), nproc=2, show_progress=False)
    assert m["distributed"] == {"backend": "gloo", "world": 2}
    assert len(m["val_accuracy_per_exit"]) == 2

    ranks = json.loads((tmp_path / "student" / "ranks.json").read_text())["ranks"]
    a, b = sorted(ranks, key=lambda r: r["rank"])
    assert set(a["first_batch"]).isdisjoint(b["first_batch"]) and len(a["first_batch"]) == 4
    assert a["images_seen"] + b["images_seen"] == 2 * 32  # 2 epochs of 32 training images, split in two
    assert a["params_after_first_step"] == b["params_after_first_step"]  # DDP kept them identical
    assert a["params_final"] == b["params_final"]

    export_bundle(load_student(tmp_path / "student"), tmp_path / "bundle")
    assert len(Bundle.open(tmp_path / "bundle").stages) == 2
    d = DynamicInference(tmp_path / "bundle").infer(next((tmp_path / "data" / "val" / "spot").iterdir()))
    assert d.label in m["classes"] and np.isfinite(d.confidence)
