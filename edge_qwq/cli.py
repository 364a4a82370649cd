"""The `edge-qwq` command. Subcommands live in edge_qwq/commands/<name>.py and are imported only when
called, so `edge-qwq run` on a device never imports torch."""
from __future__ import annotations

import importlib
import sys

import click

from edge_qwq import __version__

# name -> (module under edge_qwq.commands, one-line help). The module defines `command`.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "Make the sample inspection data set (real textures, synthetic defects)."),
    "teacher": ("teacher", "Train a transformers image classifier to act as the teacher."),
    "distill": ("distill", "Distil a teacher into the early-exit student."),
    "prune": ("prune", "Remove weak attention heads of a student structurally, then recover."),
    "frames": ("frames", "Whole camera frames: train on frame tiles, fit the frame-level threshold."),
    "export": ("export_cmd", "Export a student as staged ONNX graphs in a bundle."),
    "quantize": ("quantize", "Quantize a bundle's stages (INT8, AWQ INT4, mixed)."),
    "lint": ("lint", "Check a bundle against the TensorRT ONNX rules, without TensorRT."),
    "inspect": ("inspect", "Show what a bundle holds, read through its typed manifest (no torch)."),
    "estimate": ("estimate", "Estimate per-stage latency on an Orin target (roofline)."),
    "plan": ("plan", "Size and cost a line: devices per target, cost per 1000 frames, TCO (estimated)."),
    "build": ("build", "Chain the pipeline: teacher + data -> a device-ready bundle."),
    "tune": ("tune", "Tune exit thresholds and frame reuse for a line with Optuna (multi-objective)."),
    "bench": ("bench", "Accuracy, exit rates, FLOPs and latency of a bundle vs its teacher (JSON)."),
    "report": ("report", "One self-contained HTML page about a bundle: accuracy, quantization, latency, cost."),
    "run": ("run", "Run a bundle on an image, a folder, a video or a camera; one JSON line per frame."),
    "collect": ("collect", "Collect many devices' decisions and events from MQTT into one store; status page."),
    "install": ("install", "Install a bundle for the service atomically, keeping the previous ones."),
    "sign": ("sign", "Sign a bundle with the owner's Ed25519 key (devices load only signed bundles)."),
    "demo": ("demo", "Run the whole pipeline on sample data, end to end, on the CPU."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, short = COMMANDS[name]
        try:
            mod = importlib.import_module(f"edge_qwq.commands.{module}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("edge_qwq.commands"):
                return _missing(name, short)
            raise
        return mod.command

    def format_commands(self, ctx, formatter):
        # Help lists commands without importing them (torch stays unloaded for `--help`).
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, h) in COMMANDS.items()])


def _missing(name: str, short: str) -> click.Command:
    @click.command(name=name, help=short + "\n\nNot available in this build of edge-qwq.")
    def cmd():
        raise click.ClickException(f"`edge-qwq {name}` is not available in this build")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-qwq")
def cli():
    """edge-qwq: from a large, accurate vision model to a defect inspector inside 15 ms per frame
    on a Jetson Orin.

    \b
    Typical flow:
      edge-qwq data sample --out data/              # sample set: real textures, synthetic defects
      edge-qwq teacher train --data data/ --out teacher/
      edge-qwq build --teacher teacher/ --data data/ --target orin --out bundle/
      edge-qwq bench --bundle bundle/ --data data/ --teacher teacher/ --json bench.json
      edge-qwq run --bundle bundle/ --source video.mp4
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    from edge_runtime.errors import EdgeError

    try:
        cli.main(args=argv, prog_name="edge-qwq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edge-qwq: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except EdgeError as e:
        click.echo(f"edge-qwq: error: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("edge-qwq: interrupted", err=True)
        return 130
    except OSError as e:  # disk full, permission denied: the user's environment, not a bug
        click.echo(f"edge-qwq: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
