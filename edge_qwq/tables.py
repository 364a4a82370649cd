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


def student_table(rows: list[dict], teacher: dict | None = None, title: str = "student") -> Table:
    """One row per student: shape, FLOPs (and share of the teacher's), accuracy per exit and with early exit
    (default policy), exit rates, and the roofline's early-exit latency on each Orin (FP16, those exit rates).

    Each row: {"name", "shape", "flops", "exit_accuracy": [..], "early_exit_accuracy", "exit_rates",
    "ms": {target: ms}}; accuracies are fractions. `teacher`: {"flops", "accuracy"}."""
    targets = list(rows[0]["ms"]) if rows else []
    t = Table(title=title)
    for col in ("model", "shape", "MFLOPs", "of teacher", "accuracy per exit %", "early exit %", "exit rates",
                *[f"{name} ms" for name in targets]):
        t.add_column(col, justify="left" if col in ("model", "shape") else "right")
    if teacher:
        acc = teacher.get("accuracy")
        t.add_row("teacher", "", f"{teacher['flops'] / 1e6:.1f}", "1", "", "-" if acc is None else f"{100 * acc:.2f}",
                  "", *["" for _ in targets])
    for r in rows:
        share = f"{r['flops'] / teacher['flops']:.3f}" if teacher else "-"
        t.add_row(r["name"], r["shape"], f"{r['flops'] / 1e6:.1f}", share,
                  " / ".join(f"{100 * a:.2f}" for a in r["exit_accuracy"]), f"{100 * r['early_exit_accuracy']:.2f}",
                  " / ".join(f"{x:.2f}" for x in r["exit_rates"]), *[f"{r['ms'][k]:.3f}" for k in targets])
    return t


def frame_bench_table(r: dict) -> Table:
    """Whole-frame bench: early exit with compaction beside every tile at full depth, same run."""
    t = Table(title=f"frames ({r['frames']} of {r['frame_size'][0]}x{r['frame_size'][1]}, {r['precision']}, "
                    f"threshold {r['threshold']:.4f}; ms here, ONNX Runtime CPU)")
    cols = ("path", "recall %", "false alarms %", "accuracy %", "located %", "false boxes/frame", "tiles/frame",
            "compute ratio", "p50 ms", "p99 ms")
    for col in cols:
        t.add_column(col, justify="left" if col == "path" else "right")
    for name, key in (("per-tile early exit", "early_exit"), ("full depth", "full_depth")):
        m = r[key]
        t.add_row(name, _pct(m["recall_pct"]), _pct(m["false_alarm_pct"]), _pct(m["accuracy_pct"]),
                  _pct(m["located_pct"]), f"{m['false_boxes_per_frame']:.3f}", f"{m['tiles_per_frame']:.0f}",
                  f"{m['compute_ratio']:.3f}", f"{m['latency_ms']['p50']:.1f}", f"{m['latency_ms']['p99']:.1f}")
    t.caption = f"speed-up of early exit: {r['speedup']['p50']:.2f}x (p50), {r['speedup']['mean']:.2f}x (mean)"
    est = r.get("estimate") or {}
    rows = [f"{k} {v['mean_ms']:.2f} ms" for k, v in est.items() if isinstance(v, dict) and "mean_ms" in v]
    if rows:
        t.caption += "; estimated per 1920x1080 frame: " + ", ".join(rows)
    return t


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"
