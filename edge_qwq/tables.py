"""Rich tables for the end of long commands."""
from __future__ import annotations

from rich.table import Table


def exit_table(metrics: dict) -> Table:
    t = Table(title="accuracy on val, per exit")
    t.add_column("model")
    t.add_column("accuracy", justify="right")
    t.add_row("teacher", f"{100 * metrics['teacher_val_accuracy']:.2f}%")
    accs = metrics["val_accuracy_per_exit"]
    for k, acc in enumerate(accs):
        t.add_row(f"student exit {k}" + (" (final)" if k == len(accs) - 1 else ""), f"{100 * acc:.2f}%")
    return t


def bench_table(r: dict) -> Table:
    t = Table(title=f"bench ({r['backend']}, {r['images']} images)")
    for col in ("model", "accuracy %", "FLOPs (M)", "p50 ms", "p99 ms", "exit rate"):
        t.add_column(col, justify="right" if col != "model" else "left")
    acc, lat, flops = r["accuracy"], r["latency_ms"], r["flops"]

    def row(name, a, f, lat, rate=""):
        t.add_row(name, "-" if a is None else f"{a:.2f}", "-" if f is None else f"{f / 1e6:.1f}",
                  "-" if lat is None else f"{lat['p50']:.3f}", "-" if lat is None else f"{lat['p99']:.3f}", rate)

    row("teacher, 1 thread", acc["teacher"], flops["teacher"], lat["teacher"])
    if r.get("teacher_ort_default"):  # the teacher at its fastest single-session setting here
        row("teacher, ORT defaults", acc["teacher"], flops["teacher"], r["teacher_ort_default"]["latency_ms"])
    row("student, full depth", acc["student_full"], flops["student_full"], lat["student_full"])
    row("student, early exit", acc["early_exit"], flops["student_full"] * r["compute_ratio"], lat["early_exit"],
        " / ".join(f"{x:.2f}" for x in r["exit_rate"]))
    if "quantized" in r:
        q = r["quantized"]
        row("quantized, full depth", q["accuracy"]["student_full"], None, q["latency_ms"]["student_full"])
        row("quantized, early exit", q["accuracy"]["early_exit"], None, q["latency_ms"]["early_exit"],
            " / ".join(f"{x:.2f}" for x in q["exit_rate"]))
    return t
