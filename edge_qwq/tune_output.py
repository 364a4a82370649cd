"""What `edge-qwq tune` shows: the Pareto front as a table, the chosen point against the untuned one, the
plots (edge_qwq.plots) beside tune.json, and the HTML report."""
from __future__ import annotations

from pathlib import Path

from edge_qwq import plots

PLOTS = ("pareto.png", "exit_rates.png", "accuracy_per_exit.png")


def _params(p: dict) -> str:
    ee = ",".join(f"{v:.3f}" for v in p["early_exit"])
    ok = ",".join(f"{v:.3f}" for v in p["early_exit_ok"])
    reuse = f"reuse {p['reuse_window']}@{p['reuse_threshold']:.2g}" if p["reuse_window"] else "no reuse"
    variant = "" if p.get("variant", "base") == "base" else f", {p['variant']}"
    return f"defect {ee} | ok {ok} | {reuse}{variant}"


def front_rows(result: dict) -> list[list]:
    key = result["objectives"]["metric"]
    rows = []
    for r in result["pareto_front"]:
        f = r["figures"]
        rows.append([r["number"], round(f[key], 2), round(f["latency_ms"], 4),
                     ", ".join(f"{100 * x:.1f}" for x in f["exit_rates"]), round(100 * f["reuse_rate"], 1),
                     _params(r["params"])])
    return rows


def comparison_rows(result: dict) -> list[list]:
    key = result["objectives"]["metric"]
    rows = []
    for name, part in (("untuned", result["untuned"]), (f"chosen ({_trial(result)})", result["chosen"])):
        for split in ("tuned_split", "judged"):
            f = part[split]
            rows.append([name, "tuning" if split == "tuned_split" else "judge", round(f[key], 3),
                         round(f["recall"], 3), round(f["latency_ms"], 4),
                         ", ".join(f"{100 * x:.1f}" for x in f["exit_rates"]), round(100 * f["reuse_rate"], 1),
                         round(f["reuse_changed_pct"], 2)])
    return rows


COMPARISON_HEADER = ["configuration", "split", "metric %", "recall %", "est. ms/frame", "exit rates %",
                     "reused %", "changed by reuse %"]
FRONT_HEADER = ["trial", "metric %", "est. ms/frame", "exit rates %", "reused %", "configuration"]


def _trial(result: dict) -> str:
    t = result["chosen"]["trial"]
    return "untuned kept" if t is None else f"trial {t}"


def print_result(result: dict, console) -> None:
    from rich.table import Table

    key = result["objectives"]["metric"]
    t = Table(title=f"Pareto front of study {result['study']} ({result['trials']['in_study']} trials; {key} "
                    f"on {result['tuned_on']}, ms estimated on {result['target']})")
    for h in FRONT_HEADER:
        t.add_column(h.replace("metric", key))
    for row in front_rows(result):
        t.add_row(*(str(c) for c in row))
    console.print(t)
    c = Table(title=f"Chosen: {result['chosen']['reason']}")
    for h in COMPARISON_HEADER:
        c.add_column(h.replace("metric", key))
    for row in comparison_rows(result):
        c.add_row(*(str(x) for x in row))
    console.print(c)
    console.print(f"chosen configuration: {_params(result['chosen']['params'])}", highlight=False)
    console.print(f"{result['trials']['this_run']} trials in {result['trials']['seconds_this_run']:.1f} s "
                  f"(policies simulated on cached exit scores)", highlight=False)


def _images(result: dict) -> dict[str, bytes]:
    key = result["objectives"]["metric"]
    front = {r["number"] for r in result["pareto_front"]}
    rows = [dict(r, on_front=r["number"] in front) for r in result["all_trials"]]
    return {
        "pareto.png": plots.pareto_png(rows, key, result["chosen"]["trial"], result["untuned"]["tuned_split"]),
        "exit_rates.png": plots.exit_rates_png({"untuned (judge split)": result["untuned"]["judged"]["exit_rates"],
                                                f"chosen, {_trial(result)} (judge split)":
                                                    result["chosen"]["judged"]["exit_rates"]}),
        "accuracy_per_exit.png": plots.accuracy_per_exit_png(result["accuracy_per_exit"]),
    }


def write_plots(result: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in _images(result).items():
        (out / name).write_bytes(png)
        paths.append(out / name)
    return paths


def tune_sections(result: dict) -> list[plots.Section]:
    """The tuning part of a page (also the report's, issue 14)."""
    imgs = _images(result)
    key = result["objectives"]["metric"]
    return [
        plots.Section("Pareto front", f"Study {result['study']} on {result['storage']}: "
                      f"{result['trials']['in_study']} trials, {key} on {result['tuned_on']} against the "
                      f"estimated ms per frame on {result['target']}.",
                      [imgs["pareto.png"]], [([h.replace("metric", key) for h in FRONT_HEADER], front_rows(result))]),
        plots.Section("Chosen point", f"{result['chosen']['reason']}. Judged on {result['judged_on']}.",
                      [imgs["exit_rates.png"]],
                      [([h.replace("metric", key) for h in COMPARISON_HEADER], comparison_rows(result))]),
        plots.Section("Accuracy per exit", "Each exit's own answer, before any early-exit policy.",
                      [imgs["accuracy_per_exit.png"]]),
    ]


def write_report(result: dict, out: Path) -> Path:
    path = out / "report.html"
    path.write_text(plots.page(f"edge-qwq tune: {result['bundle']}", tune_sections(result),
                               f"bundle version {result['bundle_version']}"))
    return path
