"""The manifest's own digest, and its optional Ed25519 signature: a bundle is authenticated as a whole.

The digest is the sha256 of the manifest's canonical JSON (sorted keys, no spaces) without the fields that
cannot be part of it: `digest` and `signature` themselves, `model_version` (derived from the digest) and what
the device adds on its own (`engines`, and the `files` entries under `engines/`: TensorRT engines and their
timing cache, tied instead to the stage hashes they were built from); a null section counts as absent.
Every other field is covered, and
through `files` the sha256 of every model file the runtime loads. So:

- an edited manifest (a class name swapped, a threshold changed) no longer matches its digest: refused;
- the version users see (`Bundle.version`, stored with every decision) is the digest's first 12 hex digits,
  computed on open, never read from the file: an edited bundle can never pose as the good one;
- building engines on a device does not change the digest (nor void a signature); a command that changes the
  model's configuration writes a new digest, and the signature, which no longer holds, is dropped with a note.

A digest alone stops careless edits, not a deliberate attacker (who can recompute it). For that the owner signs
the digest with an Ed25519 key (`edge-qwq keygen`, `edge-qwq sign`), and a device given `--trusted-key` loads
only bundles whose signature that public key verifies (through `cryptography`, imported only then).

    >>> digest_of(manifest_dict)                                         # doctest: +SKIP
    '9f2c...'
    >>> check_signature(digest, manifest_dict["signature"], "owner.pub")  # doctest: +SKIP
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from edge_runtime.errors import BundleError

NOT_DIGESTED = ("digest", "signature", "model_version", "engines")
DEVICE_FILES = "engines/"  # files the device adds itself


def digest_of(manifest: dict) -> str:
    """sha256 (hex) of the manifest's canonical JSON, without the fields listed in NOT_DIGESTED and without
    the device's own files."""
    # an absent section and a null one are the same manifest (a newer writer may add null sections)
    body = {k: v for k, v in manifest.items() if k not in NOT_DIGESTED and v is not None}
    files = body.get("files")
    if isinstance(files, dict):
        body["files"] = {k: v for k, v in files.items() if not str(k).startswith(DEVICE_FILES)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def version_of(digest: str) -> str:
    return digest[:12]


# ---------------------------------------------------------------- keys and signatures
def key_id(public_raw: bytes) -> str:
    """A short name for a public key: its raw bytes' sha256, first 16 hex digits."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_keypair(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """PREFIX.key (private, PEM, mode 0600) and PREFIX.pub (public, PEM); refuses to overwrite a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (private, public):
        if p.exists():
            raise BundleError(f"{p} exists; keys are never overwritten (choose another name)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def sign_digest(digest: str, private_key: str | os.PathLike) -> dict:
    """{"alg": "ed25519", "key_id", "value": base64 signature of the digest's hex text}."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _load(private_key, "private", serialization.load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{private_key}: not an Ed25519 private key (make one with `edge-qwq keygen`)")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"alg": "ed25519", "key_id": key_id(raw),
            "value": base64.b64encode(key.sign(digest.encode())).decode()}


def check_signature(digest: str, signature, public_key: str | os.PathLike, where: str) -> str:
    """The key id if `signature` is the trusted key's signature of `digest`; else BundleError, one line."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = _load(public_key, "public", serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{public_key}: not an Ed25519 public key (`edge-qwq keygen` writes one as .pub)")
    kid = key_id(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    if not signature:
        raise BundleError(f"{where} is not signed, and this device loads only bundles signed by the key "
                          f"{kid} ({public_key}); sign it with `edge-qwq sign`")
    if not isinstance(signature, dict) or signature.get("alg") != "ed25519":
        raise BundleError(f"{where}: its signature is not an Ed25519 signature edge-qwq wrote")
    try:
        key.verify(base64.b64decode(str(signature.get("value", "")), validate=True), digest.encode())
    except (InvalidSignature, ValueError):
        other = signature.get("key_id")
        by = f" (signed by key {other}, not the trusted {kid})" if other and other != kid else ""
        raise BundleError(f"{where}: the signature does not verify with the trusted key {public_key}{by}; "
                          "the bundle was changed after it was signed, or signed by someone else") from None
    return kid


def _load(path, kind: str, loader, **kw):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read the {kind} key ({e.strerror})") from None
    try:
        return loader(data, **kw)
    except (ValueError, TypeError) as e:
        raise BundleError(f"{path}: not a PEM {kind} key ({e})") from None
