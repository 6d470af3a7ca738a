"""The two Rust client crates, the blocking `zookeeper` 0.8 (it writes its first request
in the same send as the ConnectRequest) and the async `zookeeper-client`, against a
zabkeeper 3-server ensemble and, as the reference, Apache ZooKeeper 3.8. Their round trips
are the cargo tests `node/tests/zookeeper_crate.rs` and `zookeeper_client_smoke.rs`
(which `make test-rust` runs against an in-process standalone server); here
`ZABKEEPER_TEST_CONNECT` points them at real server processes."""

import os
import subprocess

import pytest

from conftest import ROOT, ApacheZooKeeper, Ensemble, apache_zookeeper_available

TESTS = ["zookeeper_crate", "zookeeper_client_smoke"]


def run_rust_clients(hosts):
    args = ["cargo", "test", "-q", "-p", "zabkeeper"]
    for t in TESTS:
        args += ["--test", t]
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, ZABKEEPER_TEST_CONNECT=hosts))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    # Each test binary ran its one test and passed it.
    assert out.count("test result: ok. 1 passed") == len(TESTS), out


def test_rust_clients_against_a_zabkeeper_ensemble():
    e = Ensemble(participants=3).start()
    try:
        run_rust_clients(e.hosts())
    finally:
        e.cleanup()


def test_rust_clients_against_apache_zookeeper():
    if not apache_zookeeper_available():
        pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
    z = ApacheZooKeeper().start()
    try:
        run_rust_clients(z.hosts())
    finally:
        z.cleanup()
