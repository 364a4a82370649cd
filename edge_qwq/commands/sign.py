"""`edge-qwq sign`: sign a bundle's manifest digest with the owner's Ed25519 key; `--new-key` makes a key pair.

A device started with `--trusted-key owner.pub` (`run`, `install`) loads only bundles signed with the matching
private key. Engines the device builds later leave the signature intact; a command that changes the model's
configuration removes it and says so.
"""
from __future__ import annotations

import click


@click.command("sign")
@click.argument("bundle", required=False, type=click.Path())
@click.option("--key", "key", type=click.Path(dir_okay=False), metavar="PRIVATE.key",
              help="Ed25519 private key (PEM), as `--new-key` writes it.")
@click.option("--new-key", "new_key", type=click.Path(dir_okay=False), metavar="PREFIX",
              help="Make a key pair PREFIX.key (private, mode 0600: keep it off the devices) and PREFIX.pub "
                   "(public: give it to devices as --trusted-key); with BUNDLE, also sign it with the new key.")
def command(bundle, key, new_key):
    """Sign BUNDLE (its manifest digest, which covers every setting and the sha256 of every model file).

    \b
    Examples:
      edge-qwq sign --new-key owner                  # owner.key, owner.pub
      edge-qwq sign bundle/ --key owner.key
      edge-qwq install bundle/ --root /var/lib/edge-qwq --trusted-key owner.pub
    """
    from edge_runtime.bundle import Bundle
    from edge_runtime.bundle.seal import generate_keypair

    if key and new_key:
        raise click.UsageError("give --key or --new-key, not both")
    if new_key:
        private, public = generate_keypair(new_key)
        click.echo(f"wrote {private} (private: keep it secret, off the devices) and {public} (public: "
                   "--trusted-key on devices)")
        key = private
    if bundle is None:
        if not new_key:
            raise click.UsageError("give a BUNDLE to sign (with --key), or --new-key to make a key pair")
        return
    if key is None:
        raise click.UsageError("give --key PRIVATE.key (or --new-key PREFIX to make one)")
    b = Bundle.open(bundle)
    sig = b.sign(key)
    click.echo(f"signed bundle {b.root} (model {b.version}, digest {b.digest[:16]}...) with key {sig['key_id']}")
