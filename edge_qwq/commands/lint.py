"""`edge-qwq lint`: a bundle against TensorRT's ONNX rules, without TensorRT."""
from __future__ import annotations

import click


@click.command("lint")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--trt-version", default="10.3", show_default=True, help="TensorRT version on the device.")
def command(bundle, trt_version):
    """Check every stage of BUNDLE (FP32 and quantized) against TensorRT TRT_VERSION's ONNX parser and
    explicit-quantization rules; print one line per finding, naming the node.

    \b
    Example:
      edge-qwq lint --bundle bundle/ --trt-version 8.6
    """
    from calib.errors import LintError
    from calib.lint import lint_bundle

    findings = lint_bundle(bundle, trt_version)
    for f in findings:
        click.echo(str(f))
    if findings:
        raise LintError(f"{len(findings)} TensorRT {trt_version} rule violation(s) in {bundle}")
    click.echo(f"{bundle}: clean for TensorRT {trt_version}")
