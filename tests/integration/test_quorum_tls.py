"""sslQuorum: mutual TLS between the servers, with ZooKeeper's `ssl.quorum.*` keys and
PEM stores. The same zoo.cfg keys start an Apache ZooKeeper 3.8 ensemble as the
reference. With it on, the forged-peer attacks of issue 13 (findings 1-3: a 16-byte
handshake claiming a member's sid, a 1 GiB frame) cannot even start: a connection
without a certificate from the trust store is closed in its TLS handshake, writes go
on untouched and memory stays flat. Certificates are made with openssl in the test."""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from kazoo.client import KazooClient

from conftest import Ensemble, server_kinds, rss_mb

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_peer(d, ca, name):
    """A server's PEM key store (key and certificate in one file), signed by `ca`."""
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)
    with open(os.path.join(d, f"{name}-store.pem"), "w") as out:
        for part in [f"{name}.key", f"{name}.crt"]:
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return os.path.join(d, f"{name}-store.pem")


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="zabkeeper-quorum-tls-")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    for i in (1, 2, 3):
        make_peer(d, "ca", f"s{i}")
    make_peer(d, "rogue-ca", "rogue")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tls_lines(certs, store=lambda i: f"s{i}"):
    return lambda i: ["sslQuorum=true",
                      f"ssl.quorum.keyStore.location={certs}/{store(i)}-store.pem",
                      "ssl.quorum.keyStore.type=PEM",
                      f"ssl.quorum.trustStore.location={certs}/ca.pem",
                      "ssl.quorum.trustStore.type=PEM"]



def client(hosts):
    c = KazooClient(hosts=hosts, timeout=10.0)
    c.start(timeout=15)
    return c


@pytest.mark.parametrize("kind", server_kinds())
def test_an_ensemble_over_quorum_tls(kind, certs):
    e = Ensemble(kind=kind, tick_time=200, extra_lines=tls_lines(certs))
    try:
        e.start()
        leader = e.leader()
        follower = next(i for i in e.ids if i != leader)
        c = client(e.hosts([follower]))
        c.create("/over-tls", b"v")
        for i in e.ids:
            r = client(e.hosts([i]))
            r.sync("/over-tls")
            assert r.get("/over-tls")[0] == b"v", (kind, i)
            r.stop()
        c.stop()
        if kind == "zabkeeper":
            assert "(TLS, sslQuorum)" in e.servers[leader].log()
    finally:
        e.cleanup()


def attack(port, kind, stop):
    """Forged peers without a certificate, over and over, until `stop` is set."""
    n = 0
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            if kind == "smaller-sid":
                # ZooKeeper-style "smaller sid" handshake: it used to close live links
                s.sendall(struct.pack(">IIQ", 0x5A4B5052, 1, 1))
            elif kind == "larger-sid":
                s.sendall(struct.pack(">IIQ", 0x5A4B5052, 1, 99))
            else:  # a handshake claiming sid 3, then a frame of almost 1 GiB
                s.sendall(struct.pack(">IIQ", 0x5A4B5052, 1, 3) + struct.pack(">I", 0x3FFFFFFF)
                          + b"\0" * (4 << 20))
            s.settimeout(1)
            try:
                s.recv(16)
            except OSError:
                pass
            s.close()
        except OSError:
            pass
        n += 1
        time.sleep(0.05)
    return n


def test_forged_peers_without_a_certificate_change_nothing(certs):
    e = Ensemble(tick_time=200, extra_lines=tls_lines(certs))
    try:
        e.start()
        leader = e.leader()
        followers = [i for i in e.ids if i != leader]
        pid = e.servers[leader].proc.pid
        before = rss_mb(pid)
        stop = threading.Event()
        threads = [threading.Thread(target=attack, args=(e.ports[i][1], kind, stop))
                   for i, kind in [(leader, "smaller-sid"), (followers[0], "larger-sid"),
                                   (followers[1], "huge-frame"), (leader, "huge-frame")]]
        for t in threads:
            t.start()
        c = client(e.hosts([followers[0]]))
        c.create("/attacked", b"0")
        failed = ok = 0
        deadline = time.time() + 6
        while time.time() < deadline:
            try:
                c.set("/attacked", str(ok).encode())
                ok += 1
            except Exception:
                failed += 1
        stop.set()
        for t in threads:
            t.join()
        c.stop()
        assert failed == 0 and ok > 50, (ok, failed)
        assert e.wait_serving(timeout=5)
        assert rss_mb(pid) < before + 64, (before, rss_mb(pid))
        assert "TLS handshake" in e.servers[leader].log()
    finally:
        e.cleanup()


def test_a_server_whose_certificate_another_ca_signed_cannot_join(certs):
    e = Ensemble(tick_time=200, extra_lines=tls_lines(certs, lambda i: "rogue" if i == 3 else f"s{i}"))
    try:
        for s in e.servers.values():
            s.start(wait=False)
        modes = e.wait_serving(timeout=30, ids=[1, 2])
        assert sorted(modes.values()) == ["follower", "leader"], modes
        time.sleep(2)
        assert e.mode(3) not in ("leader", "follower"), e.mode(3)
        c = client(e.hosts([1]))
        c.create("/without-3", b"")
        c.stop()
    finally:
        e.cleanup()
