"""`edge-qwq inspect`: what a bundle holds, read through the typed manifest (torch-free; works on a device)."""
from __future__ import annotations

import json

import click


@click.command("inspect")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as this edge-qwq reads it (migrated).")
def command(bundle, as_json):
    """Show what BUNDLE holds: classes, input, stages, exit policy, student, quantization, calibration and
    the TensorRT engines built for each device. Every file's sha256 is checked first. A bundle written by an
    older edge-qwq is shown as this version reads it (its files are not rewritten).

    \b
    Example:
      edge-qwq inspect --bundle bundle/
      edge-qwq inspect --bundle bundle/ --json > manifest.json
    """
    from edge_runtime.bundle import Bundle

    b = Bundle.open(bundle)
    if as_json:
        click.echo(json.dumps(b.manifest.to_dict(), indent=2))
        return
    for line in describe(b):
        click.echo(line)


def describe(b) -> list[str]:
    m = b.manifest
    read = "" if b.schema_read == m.schema_version else f" (written as schema {b.schema_read}, read in memory)"
    sig = (f"signed by key {m.signature.get('key_id')}" if m.signature else "not signed")
    lines = [f"bundle {b.root}: model {b.version}, schema {m.schema_version}{read}, by {m.producer}",
             f"  digest: sha256 {b.digest} ({sig})",
             f"  classes: {', '.join(m.classes)} (ok class: {m.ok_class})",
             f"  input: {m.input.height}x{m.input.width} {m.input.color} {m.input.layout}, "
             f"mean {list(m.input.mean)}, std {list(m.input.std)}", _mode(m)]
    for s in m.stages:
        err = "" if s.max_abs_error_vs_torch is None else f", |onnx - torch| {s.max_abs_error_vs_torch:.1e}"
        blocks = "" if s.blocks is None else f", blocks {s.blocks[0]}..{s.blocks[1] - 1}"
        lines.append(f"  stage {s.index}: {s.file} ({s.input} -> {', '.join(s.outputs)}{blocks}, hidden "
                     f"{s.hidden_shape}, {s.flops / 1e6:.1f} MFLOPs{err})" + (f", quantized {s.quantized}"
                                                                             if s.quantized else ""))
    p = m.exit_policy
    lines.append(f"  exit policy: early exit as a defect at {p.early_exit}, as ok at {p.early_exit_ok}"
                 + (f", temperatures {p.temperatures}" if p.temperatures else "")
                 + (f", measured exit fractions {p.exit_fraction}" if p.exit_fraction else ""))
    lines.append(f"  dynamic: reuse window {m.dynamic.reuse_window} frames (or tiles), change threshold "
                 f"{m.dynamic.reuse_threshold:g} grey levels")
    if m.tuning is not None:
        t = m.tuning
        judged = t.judged_on.get("figures", {})
        lines.append(f"  tuned: trial {t.trial} of study {t.study!r} ({t.storage}) on {t.time}, from version "
                     f"{t.base_version}; {t.objectives.get('metric', '?')} {judged.get('accuracy', '?')} % and "
                     f"{judged.get('latency_ms', '?')} ms est. on {t.target} ({t.judged_on.get('source', '?')})")
    if m.frames is not None:
        f = m.frames
        fits = ", ".join(f"{p} {t:.6f} (false alarms {f.measured.get(p, {}).get('false_alarm_pct', '?')} % on "
                         f"{f.fitted_on.get('good_frames', '?')} defect-free fitting frames)"
                         for p, t in f.threshold.items())
        lines.append(f"  frames: threshold per tile score: {fits}; target {100 * f.false_alarm_target_fraction:g} %")
    if m.student:
        st = m.student
        lines.append(f"  student: dim {st.dim}, depth {st.depth}, heads {st.heads}, {st.patch} px tokens, exits after "
                     f"blocks {st.exits}; {len(st.awq_groups)} AWQ groups"
                     + (f"; stem's first conv {st.stem_width} channels" if st.stem_width else "")
                     + (f"; heads kept per block {st.block_heads}" if st.block_heads else ""))
        if st.pruning:
            lines.append(f"  {st.pruning.describe()}")
    lines += _quantization(m) + _calibration(m) + _engines(m)
    return lines


def _mode(m) -> str:
    i = m.input
    if i.mode != "tile":
        return "  input mode: resize (the whole frame scaled to the input)"
    size = "" if i.frame_size is None else f", fitted on {i.frame_size[1]}x{i.frame_size[0]} frames"
    fitted = "" if m.frames is not None else "; frame threshold NOT fitted (edge-qwq frames fit)"
    return f"  input mode: tile ({i.height}x{i.width} native-scale tiles, overlap {i.tile_overlap:g}{size}){fitted}"


def _quantization(m) -> list[str]:
    q = m.quantization
    if q is None:
        return ["  quantization: none (FP32 stages only)"]
    counts: dict[str, int] = {}
    for layers in q.plan.values():
        for prec in layers.values():
            counts[prec] = counts.get(prec, 0) + 1
    plan = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    return [f"  quantization: {q.mode} for TensorRT >= {q.trt_version} ({plan}), {q.calibration_method} calibration",
            f"    accuracy {q.accuracy_pct:.2f} % full depth, {q.accuracy_early_exit_pct:.2f} % early exit "
            f"(FP32 {q.fp32_accuracy_pct:.2f} / {q.fp32_accuracy_early_exit_pct:.2f} %) on {q.eval_images} images; "
            f"decisions equal to FP32's {q.fp32_agreement_pct:.2f} %",
            f"    weights {q.weight_bytes_quantized:,} bytes vs {q.weight_bytes_fp32:,} FP32; report {q.report}"
            + (f"; opset {q.opset}" if q.opset else "")]


def _calibration(m) -> list[str]:
    c = m.calibration
    if c is None:
        return []
    stats = ", ".join(f"{k} {v.mean:.1f}±{v.std:.1f}" for k, v in c.input_stats.items())
    return [f"  calibration: {c.images} images from {c.source} ({c.resized_images} resized); {stats}",
            f"    hidden ranges {[[round(lo, 2), round(hi, 2)] for lo, hi in c.hidden_range]}; "
            + (f"{c.samples_count} stored inputs in {c.samples}" if c.samples else "no stored inputs")]


def _engines(m) -> list[str]:
    if not m.engines:
        return ["  engines: none yet (built on the device: `edge-qwq build --target orin --bundle B`)"]
    out = []
    for fp_id, e in m.engines.items():
        state = "active" if e.active else f"not activated ({e.failure or 'unverified'})"
        inputs = e.verification.get("inputs", "not verified")
        out.append(f"  engines for {fp_id}: {e.precision}, {len(e.stages)} stages, {state}; verified on {inputs}"
                   + (f"; timing cache {e.timing_cache}" if e.timing_cache else ""))
    return out
