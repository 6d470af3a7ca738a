"""TLS clients on secureClientPort (ZooKeeper's `ssl.*` keys with PEM files), with kazoo
over TLS as the client: CRUD and watches over TLS, client certificates required or
optional, and the `x509` ACL scheme naming a client certificate's subject as Java's
X500Principal writes it. Certificates are made with openssl in the test."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

from conftest import ApacheZooKeeper, Server, apache_zookeeper_available, free_port
from zkwire import connect_request, recv_frame

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

CLIENT_SUBJECT = "CN=client,OU=zabkeeper,O=test"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="zabkeeper-tls-")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=zabkeeper test CA", cwd=d)
    for name, subj, ext in [
        ("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth\n"),
        ("client", "/O=test/OU=zabkeeper/CN=client", "extendedKeyUsage=clientAuth\n"),
    ]:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
                cwd=d)
    # ZooKeeper's PEM key store: the private key and the certificate in one file.
    with open(os.path.join(d, "server.pem"), "w") as out:
        for part in ["server.key", "server.crt"]:
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tls_server(kind, certs, client_auth):
    """zabkeeper or, as the reference, Apache ZooKeeper 3.8 with the same ssl.* keys."""
    secure_port = free_port()
    lines = [
        f"secureClientPort={secure_port}", "secureClientPortAddress=127.0.0.1",
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
        f"ssl.keyStore.location={certs}/server.pem", "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={certs}/ca.pem", "ssl.trustStore.type=PEM",
        f"ssl.clientAuth={client_auth}",
    ]
    if kind == "zookeeper":
        if not apache_zookeeper_available():
            pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
        s = ApacheZooKeeper(config_lines=lines).start()
    else:
        s = Server(tick_time=2000, config_lines=lines).start()
    s.secure_port = secure_port
    return s


SERVERS = pytest.mark.parametrize("kind", ["zabkeeper", "zookeeper"])


def tls_client(server, certs, with_cert=True):
    kw = dict(certfile=f"{certs}/client.crt", keyfile=f"{certs}/client.key") if with_cert else {}
    zk = KazooClient(hosts=f"127.0.0.1:{server.secure_port}", timeout=10, use_ssl=True,
                     verify_certs=True, ca=f"{certs}/ca.pem", **kw)
    zk.start(timeout=15)
    return zk


@SERVERS
def test_crud_and_watches_over_tls_with_a_required_client_certificate(kind, certs):
    s = tls_server(kind, certs, "need")
    try:
        zk = tls_client(s, certs)
        path = f"/tls-{uuid.uuid4().hex[:8]}"
        fired = threading.Event()
        assert zk.exists(path, watch=lambda e: fired.set()) is None
        zk.create(path, b"one")
        assert fired.wait(10), "the exists watch did not fire over TLS"
        assert zk.get(path)[0] == b"one"
        zk.set(path, b"two")
        assert zk.get(path)[0] == b"two"
        children = [zk.create(f"{path}/c", b"", sequence=True) for _ in range(3)]
        assert sorted(zk.get_children(path)) == sorted(c.rsplit("/", 1)[1] for c in children)
        zk.delete(path, recursive=True)
        assert zk.exists(path) is None
        # The client certificate authenticates the session as x509:<its subject>.
        secret = f"/x509-{uuid.uuid4().hex[:8]}"
        zk.create(secret, b"for the cert", acl=[make_acl("x509", CLIENT_SUBJECT, all=True)])
        assert zk.get(secret)[0] == b"for the cert"
        # A plain client on clientPort is someone else.
        plain = KazooClient(hosts=s.hosts(), timeout=10)
        plain.start(timeout=10)
        with pytest.raises(NoAuthError):
            plain.get(secret)
        plain.stop()
        plain.close()
        zk.stop()
        zk.close()
    finally:
        s.cleanup()


@SERVERS
def test_a_client_without_a_certificate_is_refused_when_one_is_needed(kind, certs):
    s = tls_server(kind, certs, "need")
    try:
        ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
        raw = socket.create_connection(("127.0.0.1", s.secure_port), timeout=10)
        refused = False
        try:
            tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(connect_request())
            recv_frame(tls)
        except (ssl.SSLError, ConnectionError, OSError):
            refused = True
        assert refused, "a session was granted without a client certificate"
        # The server goes on serving certified clients.
        zk = tls_client(s, certs)
        assert zk.exists("/") is not None
        zk.stop()
        zk.close()
    finally:
        s.cleanup()


@SERVERS
def test_optional_client_certificates_and_the_x509_scheme(kind, certs):
    s = tls_server(kind, certs, "want")
    try:
        with_cert = tls_client(s, certs)
        without = tls_client(s, certs, with_cert=False)
        secret = f"/want-{uuid.uuid4().hex[:8]}"
        with_cert.create(secret, b"x", acl=[make_acl("x509", CLIENT_SUBJECT, all=True)])
        assert with_cert.get(secret)[0] == b"x"
        with pytest.raises(NoAuthError):
            without.get(secret)
        without.create(secret + "-open", b"y")
        assert with_cert.get(secret + "-open")[0] == b"y"
        for zk in (with_cert, without):
            zk.stop()
            zk.close()
    finally:
        s.cleanup()


def test_key_material_that_cannot_be_used_refuses_the_start(certs, tmp_path):
    bad = tmp_path / "empty.pem"
    bad.write_text("")
    for lines, why in [
        ([f"ssl.keyStore.location={bad}", "ssl.clientAuth=none"], "no CERTIFICATE"),
        ([f"ssl.keyStore.location={certs}/server.pem", "ssl.keyStore.type=JKS"], "PEM"),
        ([f"ssl.keyStore.location={certs}/server.pem"], "trustStore"),
    ]:
        s = Server(tick_time=2000, config_lines=[f"secureClientPort={free_port()}"] + lines)
        s.start(wait=False)
        try:
            assert s.proc.wait(20) != 0
            with open(s.log_path) as f:
                assert why in f.read(), why
        finally:
            s.cleanup()
