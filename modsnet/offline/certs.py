"""A local certificate authority and the certificates of the four services and of a client (`make certs`).

For the local cluster, tests and a first deployment: a CA (ca.pem, ca-key.pem), then for each name a key
and a certificate signed by it (NAME.pem, NAME-key.pem) valid for serving and for client authentication
(mTLS). A service's certificate names it as its common name (the identity the others check, see
modsnet.runtime.auth) and is valid for its name, `localhost`, 127.0.0.1 and the extra hosts given (e.g.
`knowledge.modsnet.svc.cluster.local`). Keys are ECDSA P-256, written readable by the owner only.

    python -m modsnet.offline.certs OUT [--client admin] [--hosts extra.name ...] [--days 825]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICES = ("query", "recommender", "knowledge", "storage")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ModsNet"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def make_ca(out: Path, days: int = 825) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ModsNet local CA"))
        .issuer_name(_name("ModsNet local CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    (out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca-key.pem", key)
    return cert, key


def make_cert(
    out: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    hosts: Sequence[str] = (),
    days: int = 825,
) -> Path:
    """NAME.pem and NAME-key.pem: a certificate for `name`, for server and client use, signed by `ca`."""
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for host in dict.fromkeys([name, "localhost", "127.0.0.1", *hosts]):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    path = out / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / f"{name}-key.pem", key)
    return path


def make_all(
    out: str | Path, *, clients: Sequence[str] = ("admin",), hosts: Sequence[str] = (), days: int = 825
) -> Path:
    """The CA, one certificate per service and one per client name, under `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(folder, days)
    for name in (*SERVICES, *clients):
        make_cert(folder, name, ca, hosts, days)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write (e.g. .cluster/certs)")
    parser.add_argument("--client", action="append", help="client certificate names (default: admin)")
    parser.add_argument("--hosts", nargs="*", default=[], help="extra DNS names or IPs every certificate is valid for")
    parser.add_argument("--days", type=int, default=825)
    args = parser.parse_args(argv)
    folder = make_all(args.out, clients=args.client or ["admin"], hosts=args.hosts, days=args.days)
    print(f"CA and certificates written to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
