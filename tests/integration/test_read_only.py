"""Read-only mode (readonlymode.enabled), on a real 3-server ensemble of zabkeeper and of
Apache ZooKeeper 3.8 started the same way: a server cut off from its quorum (the other
two paused with SIGSTOP) serves a kazoo client that allows read-only sessions, refuses
its writes with NotReadOnly and other clients altogether, answers `isro` with `ro`, and
the client moves back to a read-write server once the quorum returns.

Apache ZooKeeper 3.8 makes a new session in read-only mode only with
localSessionsEnabled=true (without it the handshake is answered with a bare NotReadOnly
reply header that kazoo cannot decode), so its servers get that line; zabkeeper's
read-only sessions are local either way."""

import os
import subprocess
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError

from conftest import Ensemble, apache_zookeeper_available, four_letter, wait_for


@pytest.mark.parametrize("kind", ["zabkeeper", "zookeeper"])
def test_a_partitioned_server_serves_read_only_clients_until_the_quorum_returns(kind):
    if kind == "zookeeper" and not apache_zookeeper_available():
        pytest.skip("Apache ZooKeeper (Debian's zookeeper package) is not installed")
    lines = (lambda i: ["localSessionsEnabled=true"]) if kind == "zookeeper" else None
    e = Ensemble(kind=kind, tick_time=200, extra_lines=lines,
                 properties={"readonlymode.enabled": "true"})
    clients = []
    try:
        e.start()
        lone = next(i for i in e.ids if i != e.leader())
        port = e.ports[lone][0]
        assert four_letter(port, "isro") == "rw"

        rw = KazooClient(hosts=e.hosts(), timeout=10.0)
        clients.append(rw)
        rw.start(timeout=15)
        rw.create("/ro", b"before")
        rw.sync("/ro")
        rw.stop()

        # Cut the lone server off: the other two stop answering.
        for i in e.ids:
            if i != lone:
                e.servers[i].pause()
        cut = time.time()
        wait_for(lambda: four_letter(port, "isro") == "ro", 30, "read-only mode")
        print(f"{kind}: read-only {time.time() - cut:.1f} s after the cut")
        srvr = four_letter(port, "srvr")
        assert "Mode: read-only" in srvr and "READ-ONLY mode" in srvr, srvr

        states = []
        ro = KazooClient(hosts=e.hosts([lone]), timeout=10.0, read_only=True)
        clients.append(ro)
        ro.add_listener(lambda s: states.append(str(s)))
        ro.start(timeout=15)
        assert ro.client_state == "CONNECTED_RO"
        ro_session = ro.client_id[0]
        assert ro.get("/ro")[0] == b"before"
        assert "ro" in ro.get_children("/")
        for write in (lambda: ro.create("/x", b""), lambda: ro.set("/ro", b"x"),
                      lambda: ro.delete("/ro"), lambda: ro.sync("/ro")):
            with pytest.raises(NotReadOnlyCallError):
                write()
        assert ro.get("/ro")[0] == b"before"

        # zkCli.sh's -r allows a read-only session too.
        zkcli = "/usr/share/zookeeper/bin/zkCli.sh"
        if os.path.exists(zkcli):
            out = subprocess.run(
                [zkcli, "-server", e.hosts([lone]), "-r", "get", "/ro"],
                capture_output=True, text=True, timeout=60,
                env=dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE", CLIENT_JVMFLAGS="-Xshare:auto"))
            assert "before" in out.stdout, out.stdout + out.stderr

        # A client that does not allow read-only sessions is refused.
        plain = KazooClient(hosts=e.hosts([lone]), timeout=3.0)
        clients.append(plain)
        with pytest.raises(KazooTimeoutError):
            plain.start(timeout=4)
        plain.stop()

        # Heal: the quorum returns, the client finds a read-write server (kazoo asks
        # `isro`), its read-only session is gone and it makes a new one.
        for i in e.ids:
            if i != lone:
                e.servers[i].resume()
        healed = time.time()
        wait_for(lambda: ro.client_state == "CONNECTED", 60, "a read-write connection")
        print(f"{kind}: read-write again {time.time() - healed:.1f} s after the heal; "
              f"states {states}")
        assert ro.client_id[0] != ro_session
        assert "LOST" in states
        ro.set("/ro", b"after")
        assert ro.get("/ro")[0] == b"after"
        wait_for(lambda: four_letter(port, "isro") == "rw", 30, "the lone server serving")
    finally:
        for c in clients:
            c.stop()
            c.close()
        e.cleanup()
