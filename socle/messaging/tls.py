"""The SMTP server's certificate: the operator's (``SOCLE_SMTP_CERT_FILE`` and
``SOCLE_SMTP_KEY_FILE``) or, when unset, a self-signed one generated once in the data dir
(``<data dir>/smtp/``) with ``cryptography``: enough for tests and a demo, never for production,
where other operators' servers verify it."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..config import SmtpServerSettings


def self_signed(folder: Path, host_name: str) -> tuple[Path, Path]:
    """The data dir's self-signed certificate and key, generated the first time."""
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def server_context(settings: SmtpServerSettings, data_dir: Path) -> ssl.SSLContext:
    """The TLS context of STARTTLS (TLS 1.2 at least)."""
    if settings.cert_file and settings.key_file:
        cert_file, key_file = settings.cert_file, settings.key_file
    else:
        cert_file, key_file = self_signed(data_dir / "smtp", settings.domain)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if settings.client_ca_file:
        # mutual TLS as an option: a client may present a certificate of these CAs (checked in
        # the handshake) and then AUTH EXTERNAL as the mailbox it is pinned to
        context.load_verify_locations(cafile=str(settings.client_ca_file))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def fingerprint(der: bytes) -> str:
    """A certificate's SHA-256 fingerprint (hex, lower case): what a mailbox is pinned to."""
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()


def pem_fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()
