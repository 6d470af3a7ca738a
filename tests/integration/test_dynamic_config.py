"""ZooKeeper 3.5+'s dynamicConfigFile: the membership in a file of its own, as Apache
ZooKeeper keeps it once reconfigEnabled is on. The same files start a zabkeeper
ensemble and an Apache ZooKeeper 3.8 ensemble; both show the same /zookeeper/config,
and zkCli.sh's `config` prints it."""

import os
import subprocess

import pytest

from contextlib import contextmanager

from kazoo.client import KazooClient

from conftest import Ensemble, server_kinds

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
VERSION = "100000000"


@contextmanager
def session(hosts):
    c = KazooClient(hosts=hosts, timeout=10.0)
    c.start(timeout=10)
    try:
        yield c
    finally:
        c.stop()
        c.close()



def expected_config(e):
    lines = []
    for i in e.ids:
        client, quorum, election = e.ports[i]
        lines.append(f"server.{i}=127.0.0.1:{quorum}:{election}:participant;127.0.0.1:{client}")
    return "\n".join(lines) + f"\nversion={VERSION}"


@pytest.mark.parametrize("kind", server_kinds())
def test_an_ensemble_from_a_dynamic_config_file(kind):
    e = Ensemble(kind=kind, dynamic_version=VERSION, tick_time=200)
    try:
        e.start()
        # One ensemble, not three standalone servers: a write through one member is
        # read through the others.
        with session(e.hosts([e.ids[0]])) as c:
            c.create("/dyn", b"one")
        for i in e.ids[1:]:
            with session(e.hosts([i])) as c:
                c.sync("/dyn")
                assert c.get("/dyn")[0] == b"one"
                data, stat = c.get("/zookeeper/config")
                assert data.decode() == expected_config(e), (kind, data)
                assert stat.mzxid == int(VERSION, 16) and stat.version == -1, (kind, stat)
        if os.path.exists(ZKCLI):
            env = dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE", CLIENT_JVMFLAGS="-Xshare:auto")
            out = subprocess.run([ZKCLI, "-server", e.hosts([1]), "config"], capture_output=True,
                                 text=True, timeout=60, env=env)
            assert expected_config(e) in out.stdout, (kind, out.stdout, out.stderr)
            out = subprocess.run([ZKCLI, "-server", e.hosts([1]), "config", "-c"],
                                 capture_output=True, text=True, timeout=60, env=env)
            # the version, then the client addresses (in ZooKeeper's Properties order)
            line = [l for l in out.stdout.splitlines() if l.startswith(VERSION + " ")]
            assert line, (kind, out.stdout, out.stderr)
            hosts = line[0].split(" ", 1)[1].split(",")
            assert sorted(hosts) == sorted(e.hosts().split(",")), (kind, line)
    finally:
        e.cleanup()
