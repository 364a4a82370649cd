"""Data-parallel distillation with torch.distributed: NCCL on GPUs, gloo on CPUs.

`edge-qwq distill --nproc N` starts N processes on this machine (torch.multiprocessing, rendezvous on
127.0.0.1); under `torchrun` (RANK / WORLD_SIZE / MASTER_ADDR set by it) the command joins the group
torchrun made, across machines too. Every rank:
- computes the teacher's logits for every world-th training image and the ranks exchange them, so each
  image meets the teacher once (export/distill.py, teacher_logits);
- draws the same global batches (same seed) and trains on its own disjoint slice of each (`Ranks.shard`);
- keeps its parameters identical to the others: DDP averages the gradients at every step.
Rank 0 calibrates the exits, measures them and writes the student; it also writes `ranks.json` (what each
rank trained on and a checksum of its parameters after the first and the last step).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Ranks:
    rank: int
    world: int
    backend: str  # "gloo" | "nccl"
    device: str = "cpu"
    local_world: int = 1  # processes of the group on this machine (they share its cores)
    record: dict = field(default_factory=dict)

    def shard(self, idx):
        """This rank's slice of a global batch of image indices: every world-th, starting at rank."""
        return idx[self.rank::self.world]

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
        return DDP(model, device_ids=ids)

    def gather_rows(self, part, total: int):
        """Rows computed for indices rank::world on each rank -> all (total, ...) rows, on every rank."""
        import numpy as np
        import torch.distributed as dist

        parts: list = [None] * self.world
        dist.all_gather_object(parts, part)
        out = np.empty((total,) + part.shape[1:], part.dtype)
        for r, p in enumerate(parts):
            out[r::self.world] = p
        return out

    def after_step(self, step: int, idx, model) -> None:
        self.record["images_seen"] = self.record.get("images_seen", 0) + len(idx)
        if step == 1:
            self.record["first_batch"] = [int(i) for i in idx]
            self.record["params_after_first_step"] = params_sha(model)
        self.record["steps"] = step

    def gather_record(self, model) -> list[dict] | None:
        import torch.distributed as dist

        self.record.update(rank=self.rank, params_final=params_sha(model))
        records: list = [None] * self.world
        dist.all_gather_object(records, self.record)
        return records


def params_sha(model) -> str:
    """sha256 of every parameter's bytes, in order: equal on two ranks iff their weights are equal."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def from_torchrun(device: str) -> Ranks | None:
    """The group torchrun set up (RANK and WORLD_SIZE in the environment), or None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    return _init(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", device,
                 int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
                 int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))


def _init(rank: int, world: int, init_method: str, device: str, local_rank: int, local_world: int) -> Ranks:
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)
    return Ranks(rank, world, backend, device, local_world)


def run_distributed(teacher_dir, data, out, student_config: dict, config, nproc: int,
                    show_progress: bool = True) -> dict:
    """Distil with `nproc` local processes; returns rank 0's metrics (the student is in OUT)."""
    import torch.multiprocessing as mp

    port = _free_port()
    result = Path(out).parent / f".{Path(out).name}.rank0.json"
    mp.spawn(_worker, args=(nproc, port, teacher_dir, data, out, student_config, config, show_progress, result),
             nprocs=nproc, join=True)
    metrics = json.loads(result.read_text())
    result.unlink()
    return metrics


def _worker(rank, world, port, teacher_dir, data, out, student_config, config, show_progress, result) -> None:
    import torch.distributed as dist

    ranks = _init(rank, world, f"tcp://127.0.0.1:{port}", config.device, rank, world)
    try:
        metrics = distill_ranked(teacher_dir, data, out, student_config, config, show_progress, ranks)
        if rank == 0:
            result.write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


def distill_ranked(teacher_dir, data, out, student_config, config, show_progress, ranks: Ranks) -> dict:
    """One rank's share of a distributed distillation (see the module doc)."""
    import dataclasses

    import torch.distributed as dist

    from export.distill import distill

    config = dataclasses.replace(config, device=ranks.device)
    holder: dict = {}
    metrics = distill(teacher_dir, data, out, student_config, config, show_progress, ranks=ranks,
                      on_trained=lambda student: holder.setdefault("records", ranks.gather_record(student)))
    if ranks.rank == 0:
        records = holder["records"]
        (Path(out) / "ranks.json").write_text(json.dumps({"backend": ranks.backend, "world": ranks.world,
                                                          "ranks": records}, indent=2) + "\n")
        metrics["distributed"] = {"backend": ranks.backend, "world": ranks.world}
    dist.barrier()
    return metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
