"""`edge-qwq distill`: teacher -> early-exit student, sized by a budget."""
from __future__ import annotations

import click

BUDGET_HELP = ("What the student may cost at full depth: a fraction of the teacher's FLOPs (0.1), or a latency "
               "on --target (1.5ms: roofline, FP16, every frame to full depth). Default 'auto': 10 % of the "
               "teacher's FLOPs, at most 60 MFLOPs. The largest shape of the family that fits is distilled "
               "(export/shapes.py, docs/sizing.md).")
TARGET_CHOICES = ("orin-agx", "orin-nx", "orin-nano")


def budget_options(f):
    f = click.option("--target", default=None, type=click.Choice(TARGET_CHOICES),
                     help="Device a budget in ms refers to.")(f)
    return click.option("--budget", default=None, metavar="FRACTION|MSms", help=BUDGET_HELP)(f)


def device_option(f):
    return click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
                        help="Where to train: auto takes the GPU when torch sees one.")(f)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: torch sees no CUDA GPU here (this torch build: "
                               f"{torch.__version__}); use --device cpu")
    return device


@click.command("distill")
@click.option("--teacher", required=True, type=click.Path(), help="Teacher folder (transformers save_pretrained).")
@click.option("--data", required=True, type=click.Path(), help="Image folder with train/ and val/ splits.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Student folder to write.")
@budget_options
@click.option("--epochs", default=45, show_default=True, type=click.IntRange(1, 10000),
              help="Distillation epochs (the default student trains 45 in less time than the old one took for 30).")
@click.option("--dim", default=None, type=click.IntRange(8, 4096), help="Width, replacing the budget's choice.")
@click.option("--depth", default=None, type=click.IntRange(1, 64), help="Blocks, replacing the budget's choice.")
@click.option("--heads", default=None, type=click.IntRange(1, 64), help="Attention heads per block.")
@click.option("--patch", default=None, type=int, help="Pixels per token side (keep small: defects are small).")
@click.option("--exits", default=None, help="Blocks after which an early exit head sits, e.g. 1,3.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Data-parallel processes on this machine (gloo on CPUs, NCCL on GPUs); under torchrun the "
                   "group torchrun made is used instead.")
@device_option
@click.option("--temperature", default=2.0, show_default=True, type=float)
@click.option("--alpha", default=0.5, show_default=True, type=float, help="Weight of the teacher's soft labels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
def command(teacher, data, out, budget, target, epochs, dim, depth, heads, patch, exits, nproc, device,
            temperature, alpha, seed, force):
    """Distil TEACHER into a small ViT student with early-exit heads, on every exit, from the teacher's
    soft labels (temperature-scaled KL) and the true labels. The shape is the largest of a documented family
    that fits --budget; flags such as --dim replace single choices. Ends with a table: shape, FLOPs against
    the teacher, accuracy per exit on DATA/val, and the estimated early-exit latency on each Orin.

    \b
    Examples:
      edge-qwq distill --teacher teacher/ --data data/ --out student/                  # default budget
      edge-qwq distill --teacher teacher/ --data data/ --out s/ --budget 0.05
      edge-qwq distill --teacher teacher/ --data data/ --out s/ --budget 1.5ms --target orin-nano
      edge-qwq distill --teacher teacher/ --data data/ --out s/ --nproc 2              # 2 processes
      torchrun --nproc-per-node 4 -m edge_qwq.cli distill --teacher t/ --data d/ --out s/ --device cuda
    """
    from edge_qwq.guards import refuse_non_empty
    from edge_qwq.pipeline import distill_student
    from export.sizing import parse_budget

    parse_budget(budget, target)  # a bad budget is refused before anything else
    refuse_non_empty(out, force)
    try:
        exit_list = None if exits is None else tuple(int(e) for e in exits.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter(f"--exits takes block numbers like 1,3, not {exits!r}") from None
    overrides = {"dim": dim, "depth": depth, "heads": heads, "patch": patch, "exits": exit_list}
    m = distill_student(teacher, data, out, epochs, budget=budget, target=target, overrides=overrides, nproc=nproc,
                        device=resolve_device(device), seed=seed, temperature=temperature, alpha=alpha)
    if m:  # under torchrun, only rank 0 wrote the student
        from edge_qwq.console import console

        console.print(f"student saved to {out}")
