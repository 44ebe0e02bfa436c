"""HTTPS with uvicorn's own TLS, and the refusal to serve plain HTTP beyond this machine."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from serving.app import serve, transport_problem, transport_sentence
from tests.serving.conftest import READER_KEY, make_service
from tests.serving.live import live_server


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def test_https_round_trip_with_a_verifying_client_and_plain_http_refused(tmp_path, populated_db):
    certfile, keyfile = self_signed(tmp_path)
    service = make_service(tmp_path, populated_db, api={"tls_certfile": str(certfile), "tls_keyfile": str(keyfile)})
    with live_server(service.app(), ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as url:
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(certfile))
        response = httpx.get(f"{url}/predictions/AAPL", headers={"X-API-Key": READER_KEY}, verify=trusted)
        assert response.status_code == 200 and response.json()["symbol"] == "AAPL"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/health")  # the system's CAs do not trust it: verification is real
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/health")


def test_plain_http_on_a_non_loopback_address_is_refused_unless_allowed(tmp_path, populated_db, capsys):
    exposed = make_service(tmp_path, populated_db, api={"host": "0.0.0.0"}).settings  # noqa: S104
    problem = transport_problem(exposed)
    assert problem and "tls_certfile" in problem and "allow_plain_http" in problem
    assert serve(exposed) == 2
    assert capsys.readouterr().err.strip() == problem
    allowed = make_service(tmp_path, populated_db, api={"host": "0.0.0.0", "allow_plain_http": True}).settings  # noqa: S104
    assert transport_problem(allowed) is None
    assert "allow_plain_http" in transport_sentence(allowed)
    certfile, keyfile = self_signed(tmp_path)
    tls = make_service(tmp_path, populated_db, api={"host": "0.0.0.0", "tls_certfile": str(certfile),  # noqa: S104
                                                    "tls_keyfile": str(keyfile)}).settings
    assert transport_problem(tls) is None and transport_sentence(tls).startswith("REST API at https://")
    assert transport_problem(make_service(tmp_path, populated_db).settings) is None  # loopback default


def test_tls_files_resolve_beside_the_config_and_must_exist(tmp_path, populated_db):
    from lstm_pipeline.settings import ConfigError

    with pytest.raises(ConfigError, match="tls_certfile and tls_keyfile go together"):
        make_service(tmp_path, populated_db, api={"tls_certfile": "/x.pem"})
    self_signed(tmp_path)
    relative = make_service(tmp_path, populated_db, api={"tls_certfile": "cert.pem", "tls_keyfile": "key.pem"})
    assert relative.settings.api.tls_certfile == str(tmp_path / "cert.pem")
    assert transport_problem(relative.settings) is None
    missing = make_service(tmp_path, populated_db, api={"tls_certfile": "cert.pem", "tls_keyfile": "gone.pem"})
    assert "gone.pem is not a file" in transport_problem(missing.settings)
