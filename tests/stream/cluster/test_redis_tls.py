"""Redis over TLS with a password (issue 21, trusted control plane: "`rediss://` with a password, tested").

A real redis-server listening only on a TLS port, its certificate signed by a private authority made
here; every part of the cluster connects with ``rediss://:PASSWORD@localhost:PORT/0?ssl_ca_certs=...``.
Plain text, an unknown authority and a wrong password are each one clear error that shows no secret.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.cluster.registry import SourceRegistry
from tests.conftest import RedisServer
from tests.stream.cluster.redis_roundtrip import cluster_round_trip

PASSWORD = "tls-and-a-password-4d1c-9a7e"


def authority(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for localhost / 127.0.0.1 signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("facestream test CA")).issuer_name(name("facestream test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "redis.pem", folder / "redis.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_redis(tmp_path):
    ca, cert, key = authority(tmp_path)
    server = RedisServer(tmp_path, password=PASSWORD)
    # the TLS port is the only one: the plain port is turned off (a later --port wins)
    server.extra = ["--tls-port", str(server.port), "--port", "0", "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    server.start()
    yield f"rediss://:{PASSWORD}@localhost:{server.port}/0", ca
    server.stop()


def test_the_cluster_runs_on_redis_over_tls_with_a_password(tls_redis):
    base, ca = tls_redis
    reg = cluster_round_trip(f"{base}?ssl_ca_certs={ca}", track_id=7)
    try:
        assert reg.client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        reg.close()


def test_plain_text_an_unknown_authority_and_a_wrong_password_are_clear_errors(tls_redis):
    base, ca = tls_redis
    wrong = [
        (base.replace("rediss://", "redis://"), "rediss://"),  # plain text to a TLS port
        (base, "ssl_ca_certs"),  # the private authority not named: the certificate cannot be verified
        (f"{base.replace(PASSWORD, 'not-the-password')}?ssl_ca_certs={ca}", "password"),
    ]
    for url, fix in wrong:
        for open_it in (lambda u=url: SourceRegistry(u).sources(), lambda u=url: open_store(u).list_people()):
            with pytest.raises(FacestreamError) as err:
                open_it()
            text = str(err.value)
            assert PASSWORD not in text and "not-the-password" not in text
            assert fix in text, text
