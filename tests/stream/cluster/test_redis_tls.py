"""Redis over TLS with a password (issue 21, trusted control plane: "`rediss://` with a password, tested").

A real redis-server listening only on a TLS port, its certificate signed by a private authority made
here; every part of the cluster connects with ``rediss://:PASSWORD@localhost:PORT/0?ssl_ca_certs=...``.
Plain text, an unknown authority and a wrong password are each one clear error that shows no secret.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path

import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.attendance import open_attendance_store
from facestream.stream.cluster.bus import STREAM, Held, LivePublisher
from facestream.stream.cluster.events import EVENTS, EventConsumer
from facestream.stream.cluster.registry import SourceRegistry
from facestream.stream.config import ServerConfig, SourceConfig
from tests.conftest import RedisServer

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
    url = f"{base}?ssl_ca_certs={ca}"
    reg = SourceRegistry(url)
    try:
        reg.add(SourceConfig(url="rtsp://cam.example/1", id="door"))
        epoch = reg.claim("door", "w1", 10)
        assert epoch and reg.holders() == {"door": "w1"}
        consumer = EventConsumer(reg.client, "audit", "c1")
        publisher = LivePublisher(reg.client, ServerConfig(), fencing=True).start()
        publisher.hold("door", Held("w1", epoch, time.monotonic() + 10))
        publisher.publish({"type": "track_ended", "source": "door", "track_id": 7}, "door")
        deadline = time.time() + 5
        while reg.client.xlen(EVENTS) < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert reg.client.xlen(STREAM) == 1 and [m["track_id"] for _, m in consumer.read()] == [7]
        publisher.stop()
        assert reg.client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        reg.close()
    gallery = open_store(url)
    assert gallery.add_person("Ada").name == "Ada" and [p.name for p in gallery.list_people()] == ["Ada"]
    gallery.close()
    open_attendance_store(url).close()


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
