"""Shared by test_safety.py and test_safety_serve.py: a throwaway PKI for C2PA signing."""

from __future__ import annotations

import datetime
from pathlib import Path


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA and leaves it signed (ES256, digitalSignature), as PEM files in ``folder``.

    Keys: "ca" (the root), "chain" (leaf + CA; the leaf has the emailProtection extended key
    usage C2PA asks for), "no_eku" (a leaf without it + CA) and "key" (the leaves' private key).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    unused = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")

    def name(common_name):
        org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kinetoscope tests")
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), org])

    def certificate(subject, public_key, ca_key, is_ca=False, eku=()):
        usage = x509.KeyUsage(
            digital_signature=True,
            key_cert_sign=is_ca,
            crl_sign=is_ca,
            encipher_only=False,
            decipher_only=False,
            **dict.fromkeys(unused, False),
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("Test CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if not is_ca:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key.public_key(), ca_key, is_ca=True)
    leaf = certificate("kinetoscope signer", leaf_key.public_key(), ca_key, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    no_eku = certificate("no usage", leaf_key.public_key(), ca_key)
    pem = serialization.Encoding.PEM
    paths = {name: folder / f"{name}.pem" for name in ("ca", "chain", "key", "no_eku")}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["chain"].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths["no_eku"].write_bytes(no_eku.public_bytes(pem) + ca.public_bytes(pem))
    key_format = serialization.PrivateFormat.PKCS8
    paths["key"].write_bytes(leaf_key.private_bytes(pem, key_format, serialization.NoEncryption()))
    return paths
