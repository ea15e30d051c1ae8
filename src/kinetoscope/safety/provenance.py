"""C2PA provenance: sign a manifest into a generated file and read it back (``c2pa-python``).

The manifest says the file was created by kinetoscope (action ``c2pa.created``, digital
source type *trainedAlgorithmicMedia*) and carries an ``org.kinetoscope.generation``
assertion with the model id. Signing needs a certificate chain (leaf first, PEM) whose leaf
has the digitalSignature key usage and the emailProtection or documentSigning extended key
usage, issued by a CA (C2PA refuses self-signed leaves), and the leaf's private key (PEM).
``c2pa-python`` and ``cryptography`` come with the ``safety`` extra.

``kinetoscope generate`` (every mode) and ``kinetoscope serve`` sign what they write when
``KINETOSCOPE_C2PA_CERT`` and ``KINETOSCOPE_C2PA_KEY`` name the chain and the key: both take
them with :meth:`SigningKey.from_env` and sign with :meth:`SigningKey.sign`.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from kinetoscope import __version__
from kinetoscope.errors import InvalidInputError, KinetoscopeError, MediaError, require
from kinetoscope.files import atomic_write_bytes

GENERATION_ASSERTION = "org.kinetoscope.generation"
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: Where generation (the CLI and the service) finds the C2PA certificate chain and private key.
CERT_ENV, KEY_ENV = "KINETOSCOPE_C2PA_CERT", "KINETOSCOPE_C2PA_KEY"


def _c2pa():
    return require("c2pa", "C2PA provenance")


def sign_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    cert_chain: str | os.PathLike,
    private_key: str | os.PathLike,
    model_id: str,
) -> Path:
    """Copy ``source`` to ``target`` with a signed C2PA manifest naming ``model_id``; return ``target``."""
    c2pa = _c2pa()
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise MediaError(f"cannot sign {source}: the file does not exist.", param="source")
    chain, key = _read_pem(cert_chain, "cert_chain"), _read_pem(private_key, "private_key")
    manifest = {
        "claim_generator_info": [{"name": "kinetoscope", "version": __version__}],
        "title": target.name,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_SOURCE_TYPE,
                            "softwareAgent": {"name": "kinetoscope", "version": __version__},
                        }
                    ]
                },
            },
            {"label": GENERATION_ASSERTION, "data": {"model_id": model_id}},
        ],
    }
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(key), chain, key, None))
        signed = io.BytesIO()
        with c2pa.Builder(manifest) as builder, open(source, "rb") as stream:
            builder.sign(signer, _mime_type(source), stream, signed)
    except c2pa.C2paError as e:
        raise InvalidInputError(
            f"C2PA signing of {source} failed: {e}; the certificate chain must start with a CA-issued leaf "
            "that has the digitalSignature key usage and the emailProtection or documentSigning extended key usage.",
            param="cert_chain",
        ) from None
    atomic_write_bytes(target, signed.getvalue())
    return target


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """A C2PA certificate chain (PEM, leaf first) and its private key (PEM) that sign generated files."""

    cert_chain: Path
    private_key: Path

    @classmethod
    def from_env(cls) -> SigningKey | None:
        """The chain and key named by ``KINETOSCOPE_C2PA_CERT`` and ``KINETOSCOPE_C2PA_KEY``; None when
        neither is set. Both files are checked now, so a service refuses to start rather than fail
        every video later."""
        cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
        if not cert and not key:
            return None
        if not (cert and key):
            raise InvalidInputError(f"Set both {CERT_ENV} and {KEY_ENV} to sign outputs with C2PA, or neither.")
        _c2pa()
        _read_pem(cert, "cert_chain")
        _algorithm(_read_pem(key, "private_key"))
        return cls(Path(cert), Path(key))

    def sign(self, path: str | os.PathLike, model_id: str) -> Path:
        """Sign ``path`` in place with a manifest naming ``model_id``."""
        return sign_file(path, path, cert_chain=self.cert_chain, private_key=self.private_key, model_id=model_id)


def read_provenance(path: str | os.PathLike, trust_anchors: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The file's C2PA manifest as a summary dict, or None when it has none (or c2pa is not installed).

    ``state`` is ``Invalid`` (signature or content hash broken), ``Valid`` (intact, signer not
    trusted here) or ``Trusted`` (intact and signed under one of ``trust_anchors``, a PEM bundle).
    """
    try:
        c2pa = _c2pa()
    except KinetoscopeError:
        return None
    path = Path(path)
    mime = _MIME_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    context = None
    if trust_anchors is not None:
        context = c2pa.Context.from_dict(
            {"trust": {"trust_anchors": _read_pem(trust_anchors, "trust_anchors").decode()}}
        )
    try:
        with open(path, "rb") as stream, c2pa.Reader(mime, stream, context=context) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.NotSupported):
        return None
    except c2pa.C2paError as e:  # a manifest is there but cannot be parsed: as good as forged
        return {"state": "Invalid", "valid": False, "trusted": False, "failures": [str(e)]}
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = assertions.get("c2pa.actions.v2", assertions.get("c2pa.actions", {})).get("actions", [])
    signature = manifest.get("signature_info", {})
    return {
        "state": state,
        "valid": state in ("Valid", "Trusted"),
        "trusted": state == "Trusted",
        "failures": [f["code"] for f in results.get("activeManifest", {}).get("failure", [])],
        "model_id": assertions.get(GENERATION_ASSERTION, {}).get("model_id"),
        "generator": ", ".join(g.get("name", "?") for g in manifest.get("claim_generator_info", [])),
        "digital_source_type": next((a.get("digitalSourceType") for a in actions if "digitalSourceType" in a), None),
        "signer": {"issuer": signature.get("issuer"), "common_name": signature.get("common_name")},
    }


def _read_pem(path: str | os.PathLike, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what} {path} does not exist; give a PEM file.", param=what)
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        raise InvalidInputError(f"{what} {path} is not a PEM file (no -----BEGIN line).", param=what)
    return data


def _algorithm(key_pem: bytes) -> str:
    """The C2PA signing algorithm that fits the private key: ES256/384/512, PS256 or Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise InvalidInputError(
            f"the private key could not be read ({e}); give an unencrypted PEM key.", param="private_key"
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return _EC_ALGORITHMS[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise InvalidInputError(
        "the private key must be EC P-256, P-384 or P-521, RSA (PS256) or Ed25519 for C2PA.", param="private_key"
    )


_EC_ALGORITHMS = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
_MIME_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


def _mime_type(path: Path) -> str:
    mime = _MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise InvalidInputError(
            f"{path} cannot carry a C2PA manifest here; use {', '.join(sorted(_MIME_TYPES))}.", param="path"
        )
    return mime
