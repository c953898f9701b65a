"""A throwaway self-signed certificate for 127.0.0.1, made when a stand-in starts."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=1)


class LocalCertificate:
    """Certificate and key as PEM files in a private temporary directory.

    `ca_bundle` is what a client trusts (for requests: `connection_verify=` or
    REQUESTS_CA_BUNDLE): the certificate is its own issuer. `close()` deletes both files.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False,
            )
            # Self-signed and trusted directly, so it must be allowed to act as its own CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self._directory = Path(tempfile.mkdtemp(prefix="azure-standin-tls-"))
        self.certificate_path = self._directory / "certificate.pem"
        self.key_path = self._directory / "key.pem"
        self.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    @property
    def ca_bundle(self) -> str:
        return str(self.certificate_path)

    def close(self) -> None:
        shutil.rmtree(self._directory, ignore_errors=True)
