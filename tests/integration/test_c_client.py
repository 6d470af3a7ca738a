"""The C client (`cli_mt` from Debian's zookeeper-bin, built on libzookeeper_mt) against
zabkeeper standalone, a zabkeeper 3-server ensemble, and, as the reference, Apache
ZooKeeper 3.8: create (plain, ephemeral, sequential), set, get with the value and stat,
ls, delete with its watch events, exists of a deleted node."""

import os
import subprocess
import threading
import time

import pytest

from conftest import Ensemble

CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"

pytestmark = pytest.mark.skipif(not os.path.exists(CLI_MT),
                                reason="cli_mt missing (Debian's zookeeper-bin; make test installs it as root)")

SCRIPT = ["create /c", "set /c world", "get /c", "create +e /eph", "create +s /seq-", "ls /",
          "delete /c", "exists /c"]


def run_cli_mt(hosts):
    """Feeds cli_mt the script (one session: the server answers in order) and returns its
    output once the last answer is in (cli_mt answers asynchronously)."""
    p = subprocess.Popen([CLI_MT, hosts], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(iter(p.stdout.readline, "")), daemon=True)
    reader.start()
    for line in SCRIPT:
        p.stdin.write(line + "\n")
        p.stdin.flush()
    deadline = time.time() + 30
    while "Error -101 for /c" not in "".join(out) and time.time() < deadline:
        time.sleep(0.1)
    p.stdin.write("quit\n")
    p.stdin.flush()
    p.wait(30)
    reader.join(10)
    return "".join(out)


def check(out):
    assert "[/c]: rc = 0" in out, out
    assert "value_len = 5\nworld\n" in out, out
    assert "[/eph]: rc = 0" in out, out
    assert "name = /seq-0000000002" in out, out
    listing = out.split("/: rc = 0\n", 1)[1].split("time =", 1)[0]
    assert {l.strip() for l in listing.splitlines() if l.strip()} >= {"c", "eph", "seq-0000000002", "zookeeper"}, out
    assert "Watcher DELETED_EVENT state = CONNECTED_STATE for path /c" in out, out
    assert "Error -101 for /c" in out, out  # exists after the delete: ZNONODE


def test_c_client_standalone(any_server):
    check(run_cli_mt(any_server.hosts()))


def test_c_client_ensemble():
    e = Ensemble(participants=3).start()
    try:
        check(run_cli_mt(e.hosts()))
    finally:
        e.cleanup()
