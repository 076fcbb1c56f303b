"""Signed results: only the holder of the organiser's private key can make a result that verifies.

A seal (``integrity``) shows a document is unchanged, but anyone can recompute a SHA-256: a forger
edits a field and seals again. An Ed25519 signature over the same canonical bytes (everything but
the seal and the signature; the samples files' sha256 are inside) can be made only with the
private key, and checked by anyone with the public key. The signatures are made and checked by
``cryptography``; nothing here implements cryptography itself.

What a valid signature proves: this document, byte for byte in its canonical form, was signed with
the organiser's key, i.e. on a machine that holds it, and not edited since. What it does not prove:
that the machine was honest or well configured, that the key was not stolen, or anything about
files the document does not cover (the model and samples are covered only through their sha256).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evaluator.errors import ResultError
from evaluator.fileio import write_owner_only
from evaluator.report.integrity import canonical_bytes, seal, todays_form
from evaluator.report.records import Signature
from evaluator.report.result import Result

ALGORITHM = "ed25519"
CONTEXT = b"edl-result-signature-v1\n"  # a signature over a result can never pass for one over anything else
PRIVATE_NAME, PUBLIC_NAME = "edl-signing.key", "edl-signing.pub"


def fingerprint(public: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key: how a result names the key that signed it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def init_keys(folder: Path) -> tuple[Path, Path]:
    """A new key pair in ``folder``: the private key readable by its owner only (0600), the public key 0644."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    if private_path.exists() or public_path.exists():
        raise ResultError(f"{folder} already holds a signing key; keep it, or move it away to make a new one")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    write_owner_only(private_path, private_pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    public_path.chmod(0o644)
    return private_path, public_path


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ResultError(f"{path}: not a readable Ed25519 private key ({exc}); make one with `edl keys init DIR`"
                          ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ResultError(f"{path}: not an Ed25519 private key; make one with `edl keys init DIR`")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ResultError(f"{path}: not a readable Ed25519 public key ({exc}); pass the {PUBLIC_NAME} that "
                          "`edl keys init` wrote") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ResultError(f"{path}: not an Ed25519 public key; pass the {PUBLIC_NAME} that `edl keys init` wrote")
    return key


def sign_bytes(body: bytes, key: Ed25519PrivateKey, context: bytes = CONTEXT) -> Signature:
    """A signature over ``context + body``: the context keeps one kind of document's signature off another."""
    return Signature(algorithm=ALGORITHM, public_key_sha256=fingerprint(key.public_key()),
                     signature=base64.b64encode(key.sign(context + body)).decode())


def sign(result: Result, key: Ed25519PrivateKey) -> Result:
    """``result`` with its signature (over its canonical bytes, which leave out the seal and the signature)."""
    return dataclasses.replace(result, signature=sign_bytes(canonical_bytes(todays_form(result)), key))


def raw_public(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64: a signed record carries it so that anyone can check it."""
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def public_from_raw(text: str) -> Ed25519PublicKey | None:
    """The key ``raw_public`` wrote, or None when ``text`` is not one."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError:
        return None


def finalise(result: Result, key: Ed25519PrivateKey | None) -> Result:
    """The result as it is written: sealed, and signed when the organiser's key is at hand."""
    sealed = seal(result)
    return sign(sealed, key) if key is not None else sealed


def bytes_signature_problem(body: bytes, record: Signature | None, key: Ed25519PublicKey,
                            context: bytes = CONTEXT, what: str = "result") -> str:
    """Why ``record`` is not ``key``'s signature over ``context + body`` ("" when it is)."""
    if record is None:
        return f"unsigned: the {what} carries no signature"
    if record.algorithm != ALGORITHM:
        return f"signed with {record.algorithm!r}, not {ALGORITHM}"
    if record.public_key_sha256 != fingerprint(key):
        return f"signed by another key ({record.public_key_sha256[:16]}…, not {fingerprint(key)[:16]}…)"
    try:
        key.verify(base64.b64decode(record.signature, validate=True), context + body)
    except (InvalidSignature, ValueError):
        return f"the signature does not match the {what}: it was edited after it was signed"
    return ""


def signature_problem(result: Result, key: Ed25519PublicKey) -> str:
    """Why ``result`` is not signed by ``key`` ("" when it is)."""
    return bytes_signature_problem(canonical_bytes(result), result.signature, key)
