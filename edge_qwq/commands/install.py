"""`edge-qwq install`: install a bundle for the service atomically; keep the last N; roll back."""
from __future__ import annotations

import click


@click.command("install")
@click.argument("bundle", required=False, type=click.Path())
@click.option("--root", default="/var/lib/edge-qwq", show_default=True, type=click.Path(file_okay=False),
              help="Install root: bundles/, current -> ..., previous -> ...")
@click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1),
              help="Installed bundles to keep (current and previous are never deleted).")
@click.option("--rollback", is_flag=True, help="Switch current back to previous instead of installing.")
@click.option("--trusted-key", "trusted_key", default=None, type=click.Path(dir_okay=False), metavar="OWNER.pub",
              help="Install only a bundle signed with this Ed25519 public key (`edge-qwq sign`).")
def command(bundle, root, keep, rollback, trusted_key):
    """Copy BUNDLE into ROOT, verify it, run it on a few of its stored calibration inputs, and only then
    switch ROOT/current to it atomically. A bundle that is edited, unsigned (with --trusted-key) or does not
    run is refused, and current stays as it was.

    \\b
    Examples:
      edge-qwq install bundle/ --root /var/lib/edge-qwq && systemctl restart edge-qwq
      edge-qwq install --rollback --root /var/lib/edge-qwq
    """
    from edge_runtime import installer

    if rollback:
        bad, good = installer.rollback(root, reason="edge-qwq install --rollback")
        click.echo(f"rolled back: current -> {good} (was {bad})")
        return
    if not bundle:
        raise click.UsageError("give a BUNDLE folder to install, or --rollback")
    dest = installer.install(bundle, root, keep=keep, trusted_key=trusted_key,
                             report=lambda line: click.echo(f"trial run: {line}"))
    prev = installer.link_target(root, "previous")
    click.echo(f"installed {dest.name}: current -> {dest}" + (f", previous -> {prev}" if prev else ""))
