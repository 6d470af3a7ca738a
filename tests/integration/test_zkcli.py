"""zkCli.sh from Debian's `zookeeper` package (Apache ZooKeeper 3.8) against zabkeeper."""

import os
import re
import subprocess
import time

import pytest

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")

pytestmark = pytest.mark.skipif(
    not os.path.exists(ZKCLI) and not os.environ.get("CI"),
    reason="zkCli.sh not installed (.ci/run installs Debian's zookeeper package)",
)


def zkcli(server, *args):
    """Runs one zkCli command and returns its stdout+stderr."""
    env = dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE", CLIENT_JVMFLAGS="-Xshare:auto")
    out = subprocess.run(
        [ZKCLI, "-server", server.hosts(), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )
    return out.stdout + out.stderr


def test_zkcli_create_get_ls_set_delete(server):
    out = zkcli(server, "create", "/cli-node", "hello")
    assert "Created /cli-node" in out, out

    out = zkcli(server, "get", "-s", "/cli-node")
    assert "hello" in out, out
    for field in ["cZxid = 0x", "ctime = ", "mZxid = 0x", "mtime = ", "pZxid = 0x",
                  "cversion = 0", "dataVersion = 0", "aclVersion = 0",
                  "ephemeralOwner = 0x0", "dataLength = 5", "numChildren = 0"]:
        assert field in out, (field, out)

    zkcli(server, "set", "/cli-node", "world")
    out = zkcli(server, "get", "-s", "/cli-node")
    assert "world" in out and "dataVersion = 1" in out, out

    out = zkcli(server, "ls", "/")
    m = re.search(r"\[(.*)\]", out)
    assert m, out
    children = [c.strip() for c in m.group(1).split(",")]
    assert "cli-node" in children and "zookeeper" in children, out

    zkcli(server, "delete", "/cli-node")
    out = zkcli(server, "ls", "/")
    assert "cli-node" not in out, out


def test_zkcli_ephemeral_and_sequential(server):
    out = zkcli(server, "create", "-e", "/cli-eph", "x")
    assert "Created /cli-eph" in out, out
    out = zkcli(server, "stat", "/cli-eph")
    owner = re.search(r"ephemeralOwner = (0x[0-9a-f]+)", out)
    assert owner and owner.group(1) != "0x0", out
    # zkCli exits without closing its session (as with Apache ZooKeeper): the ephemeral
    # goes when that session expires (zkCli asks 30 s; maxSessionTimeout is 20 ticks = 4 s)
    deadline = time.time() + 15
    while "cli-eph" in zkcli(server, "ls", "/") and time.time() < deadline:
        time.sleep(0.5)
    assert "cli-eph" not in zkcli(server, "ls", "/")

    assert "Created /cli-seq" in zkcli(server, "create", "/cli-seq", "")
    out = zkcli(server, "create", "-s", "/cli-seq/task", "x")
    assert "Created /cli-seq/task0000000000" in out, out
    out = zkcli(server, "create", "-s", "/cli-seq/task", "y")
    assert "Created /cli-seq/task0000000001" in out, out
    out = zkcli(server, "ls", "/cli-seq")
    assert "[task0000000000, task0000000001]" in out, out


def test_zkcli_errors_are_reported(server):
    out = zkcli(server, "get", "/cli-missing")
    assert "Node does not exist: /cli-missing" in out, out
    zkcli(server, "create", "/cli-dup", "")
    out = zkcli(server, "create", "/cli-dup", "")
    assert "Node already exists: /cli-dup" in out, out


def test_zkcli_container_and_ttl(server):
    out = zkcli(server, "create", "-c", "/cli-container", "")
    assert "Created /cli-container" in out, out
    out = zkcli(server, "stat", "/cli-container")
    # ZooKeeper shows no owner for containers and TTL nodes (DataNode.copyStat).
    assert "ephemeralOwner = 0x0" in out, out
    out = zkcli(server, "create", "-t", "60000", "/cli-ttl", "x")
    assert "Created /cli-ttl" in out, out
    out = zkcli(server, "stat", "/cli-ttl")
    assert "ephemeralOwner = 0x0" in out, out


def test_null_data_prints_null_in_zkcli_and_zabkeeper_cli(server):
    """zkCli's `create` without data sends a null buffer: both zkCli and `zabkeeper cli`
    print it back as `null`, and empty data as an empty line."""
    from conftest import zabkeeper_bin

    assert "Created /cli-null" in zkcli(server, "create", "/cli-null")
    assert "null" in zkcli(server, "get", "/cli-null").splitlines()
    ours = lambda path: subprocess.run(
        [zabkeeper_bin(), "cli", "--server", server.hosts(), "get", path],
        capture_output=True, text=True, timeout=30).stdout
    assert ours("/cli-null") == "null\n"
    assert "Created /cli-empty" in zkcli(server, "create", "/cli-empty", "")
    assert ours("/cli-empty") == "\n"
