"""Every plot edge-qwq draws, and the self-contained HTML page they go into (images embedded as data URIs,
nothing fetched at view time). `tune` and `report` both draw from here.

matplotlib runs headless (Agg) and is imported inside the functions: `edge-qwq run` never loads it.

    >>> png = pareto_png(rows, "accuracy", chosen=12, untuned=0)      # doctest: +SKIP
    >>> html = page("Tuning", [Section("Pareto front", images=[png])])  # doctest: +SKIP
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

COLORS = {"trial": "#9aa5b1", "front": "#1f6feb", "chosen": "#d1242f", "untuned": "#1a7f37", "budget": "#bf8700"}


def _figure(width: float = 6.4, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pareto_png(trials: list[dict], metric: str, chosen: int | None = None, untuned: dict | None = None,
               latency_key: str = "latency_ms") -> bytes:
    """Every trial as metric (%) against estimated ms per frame; the Pareto front joined; the chosen trial
    and the untuned configuration marked. trials: rows with "number", "figures", "feasible", "on_front"."""
    plt, fig, ax = _figure()
    for kind, pick in (("trial", lambda r: not r.get("on_front")), ("front", lambda r: r.get("on_front"))):
        rows = [r for r in trials if pick(r)]
        ax.scatter([r["figures"][latency_key] for r in rows], [r["figures"][metric] for r in rows], s=14 if
                   kind == "trial" else 26, color=COLORS[kind], alpha=0.6 if kind == "trial" else 1.0,
                   marker="o" if kind == "trial" else "D", label="trials" if kind == "trial" else "Pareto front")
    front = sorted((r for r in trials if r.get("on_front")), key=lambda r: r["figures"][latency_key])
    if front:
        ax.plot([r["figures"][latency_key] for r in front], [r["figures"][metric] for r in front],
                color=COLORS["front"], lw=1)
    infeasible = [r for r in trials if not r.get("feasible", True)]
    if infeasible:
        ax.scatter([r["figures"][latency_key] for r in infeasible], [r["figures"][metric] for r in infeasible],
                   s=14, color=COLORS["trial"], marker="x", label="reuse changed too many decisions")
    if untuned:
        ax.scatter([untuned[latency_key]], [untuned[metric]], s=110, color=COLORS["untuned"], marker="*",
                   label="untuned", zorder=5)
    hit = next((r for r in trials if r["number"] == chosen), None)
    if hit is not None:
        ax.scatter([hit["figures"][latency_key]], [hit["figures"][metric]], s=120, facecolors="none",
                   edgecolors=COLORS["chosen"], linewidths=2, label=f"chosen (trial {chosen})", zorder=6)
    ax.set_xlabel("estimated ms per frame (target, exit rates x stage ms)")
    ax.set_ylabel(f"{metric} on the tuning split (%)")
    ax.set_title("Trials and their Pareto front")
    ax.legend(fontsize=8, loc="lower right")
    return _png(plt, fig)


def exit_rates_png(series: dict[str, list[float]]) -> bytes:
    """Share of frames leaving at each exit, one bar group per configuration (e.g. untuned, chosen)."""
    plt, fig, ax = _figure(5.6, 3.6)
    n = max(len(v) for v in series.values())
    width = 0.8 / max(1, len(series))
    for i, (name, rates) in enumerate(series.items()):
        ax.bar([k + i * width for k in range(len(rates))], [100 * r for r in rates], width, label=name)
    ax.set_xticks([k + width * (len(series) - 1) / 2 for k in range(n)], [f"exit {k}" for k in range(n)])
    ax.set_ylabel("frames leaving here (%)")
    ax.set_title("Exit rates per stage")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def bars_png(labels: list[str], values: list[float], ylabel: str, title: str, limit: float | None = None,
             limit_label: str = "", highlight: list[bool] | None = None) -> bytes:
    """Bars with an optional horizontal line (a budget); `highlight` colours chosen bars."""
    plt, fig, ax = _figure(max(4.0, min(12.0, 0.45 * len(labels) + 2)), 3.6)
    colors = [COLORS["chosen"] if h else COLORS["front"] for h in (highlight or [False] * len(values))]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center", fontsize=8)
    if limit is not None:
        ax.axhline(limit, color=COLORS["budget"], ls="--", lw=1.5, label=limit_label)
        ax.legend(fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _png(plt, fig)


def accuracy_per_exit_png(series: dict[str, list[float]]) -> bytes:
    """Accuracy (%) of each exit's own answer, per split or configuration."""
    plt, fig, ax = _figure(5.6, 3.6)
    for name, acc in series.items():
        ax.plot(range(len(acc)), acc, marker="o", label=name)
    n = max(len(v) for v in series.values())
    ax.set_xticks(range(n), [f"exit {k}" for k in range(n)])
    ax.set_ylabel("accuracy of the exit's answer (%)")
    ax.set_title("Accuracy per exit")
    ax.legend(fontsize=8)
    return _png(plt, fig)


PRECISION_COLORS = {"int8": "#1f6feb", "int4": "#8250df", "fp16": "#1a7f37", "fp32": "#9aa5b1"}


def sensitivity_png(labels: list[str], values: list[float], precisions: list[str],
                    int4: list[float | None] | None = None, title: str = "Per-layer sensitivity") -> bytes:
    """One horizontal bar per layer (log scale): the error that layer alone causes when quantized, coloured by
    the precision the plan gave it; `int4` (where measured) marked as a hollow diamond."""
    plt, fig, ax = _figure(9.0, max(2.6, 0.24 * len(labels) + 1.4))
    ys = list(range(len(labels)))[::-1]  # the first layer at the top
    floor = min([v for v in values if v and v > 0] or [1e-9]) / 2
    ax.barh(ys, [max(v or 0.0, floor) for v in values], color=[PRECISION_COLORS.get(p, "#9aa5b1") for p in precisions],
            height=0.7)
    if int4 and any(v is not None for v in int4):
        pts = [(v, y) for v, y in zip(int4, ys) if v is not None]
        ax.scatter([v for v, _ in pts], [y for _, y in pts], marker="D", s=22, facecolors="none",
                   edgecolors=PRECISION_COLORS["int4"], linewidths=1.3, zorder=5, label="same layer at INT4")
    ax.set_xscale("log")
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel("relative logit error of the exits, this layer alone quantized (log)")
    ax.set_title(title)
    from matplotlib.patches import Patch

    handles = [Patch(color=PRECISION_COLORS[p], label=f"planned {p}") for p in PRECISION_COLORS if p in precisions]
    extra = ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles + extra, fontsize=7, loc="lower right")
    return _png(plt, fig)


def stacked_latency_png(rows: list[tuple[str, list[float]]], parts: list[str], budget_ms: float | None = None,
                        title: str = "Estimated latency per stage", xlabel: str = "ms per frame") -> bytes:
    """One horizontal bar per row (e.g. a target's mean and worst frame), stacked by part (cut, stage 0, ...),
    its total written at its end; the budget as a vertical line."""
    plt, fig, ax = _figure(9.0, max(2.4, 0.42 * len(rows) + 1.5))
    cmap = plt.get_cmap("tab10")
    ys = list(range(len(rows)))[::-1]
    for k, part in enumerate(parts):
        left = [sum(v[:k]) for _, v in rows]
        ax.barh(ys, [v[k] if k < len(v) else 0.0 for _, v in rows], left=left, height=0.6, color=cmap(k % 10),
                label=part)
    totals = [sum(v) for _, v in rows]
    top = max(totals + [budget_ms or 0.0]) or 1.0
    for y, t in zip(ys, totals):
        note = f" {t:.3g} ms" + (f" ({100 * t / budget_ms:.1f} % of budget)" if budget_ms else "")
        ax.text(t + top * 0.005, y, note, va="center", fontsize=7)
    if budget_ms is not None:
        ax.axvline(budget_ms, color=COLORS["budget"], ls="--", lw=1.5, label=f"budget {budget_ms:g} ms")
    ax.set_xlim(0, top * 1.3)
    ax.set_yticks(ys, [label for label, _ in rows], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return _png(plt, fig)


# ---------------------------------------------------------------- the page
@dataclass
class Section:
    title: str
    text: str = ""  # plain text, escaped
    images: list[bytes] = field(default_factory=list)  # PNG bytes, embedded
    tables: list[tuple[list[str], list[list]]] = field(default_factory=list)  # (header, rows)


def page(title: str, sections: list[Section], subtitle: str = "") -> str:
    """One self-contained HTML page: no script, no external URL; images as data: URIs."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
             "style-src 'unsafe-inline'\">", f"<style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>", f"<p class=sub>{_e(subtitle)}</p>" if subtitle else ""]
    for s in sections:
        parts.append(f"<section><h2>{_e(s.title)}</h2>")
        if s.text:
            parts += [f"<p>{_e(line)}</p>" for line in s.text.split("\n\n")]
        for header, rows in s.tables:
            parts.append("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        for png in s.images:
            parts.append(f"<img alt='{_e(s.title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(text) -> str:
    return html.escape(str(text))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
h1{margin-bottom:0}.sub{color:#57606a;margin-top:.3em}section{margin:2em 0}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #d0d7de;padding:.3em .6em;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:.8em 0}"""
