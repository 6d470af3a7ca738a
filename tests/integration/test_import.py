"""Migration from Apache ZooKeeper and back: Debian's ZooKeeper 3.8 writes a data dir in
the test (a snapshot it takes at start-up, then a log after it, ended by kill -9),
`zabkeeper import` turns it into a zabkeeper data dir, and a zabkeeper server started on
it serves the very same tree: every znode's data, ACL and stat compared with what
ZooKeeper served. Then changes made on zabkeeper go back with `zabkeeper export`, and
ZooKeeper started on the export serves zabkeeper's tree, compared the same way."""

import os
import shutil
import subprocess
import tempfile

import struct

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from conftest import ApacheZooKeeper, Server, apache_zookeeper_available, zabkeeper_bin
from zkwire import RawSession, buffer, ustring

OPEN_ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")

pytestmark = pytest.mark.skipif(not apache_zookeeper_available(),
                                reason="needs Debian's zookeeper package")

STAT_FIELDS = ["czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeralOwner", "dataLength", "numChildren", "pzxid"]


def tree(zk, path="/"):
    out = {}
    data, stat = zk.get(path)
    acl, _ = zk.get_acls(path)
    out[path] = (data, {f: getattr(stat, f) for f in STAT_FIELDS},
                 sorted((a.perms, a.id.scheme, a.id.id) for a in acl))
    for child in zk.get_children(path):
        out.update(tree(zk, path.rstrip("/") + "/" + child))
    return out


def assert_same_tree(got, expected):
    """The same znodes with the same data, stat and ACL; /zookeeper/config is each
    server's own (written at its start, not a txn), so it is left out."""
    got, expected = dict(got), dict(expected)
    for t in (got, expected):
        t.pop("/zookeeper/config", None)
    assert sorted(got) == sorted(expected)
    for path in expected:
        assert got[path] == expected[path], path


def zabkeeper(*args):
    return subprocess.run([zabkeeper_bin(), *args], capture_output=True, text=True, timeout=60)


def kill(server):
    server.proc.kill()
    server.proc.wait(10)


def test_import_of_a_zookeeper_data_dir_serves_the_same_tree():
    zk_server = ApacheZooKeeper()
    out = tempfile.mkdtemp(prefix="zabkeeper-import-")
    holder = None
    try:
        zk_server.start()
        zk = KazooClient(hosts=f"127.0.0.1:{zk_server.port}", timeout=30,
                         auth_data=[("digest", "alice:pw")])
        zk.start(timeout=30)
        # Before the snapshot: every kind of node and change.
        zk.create("/app", b"root of the app")
        zk.create("/app/cfg", b"v1")
        zk.set("/app/cfg", b"v2")
        zk.set("/app/cfg", b"v3")
        for _ in range(3):
            zk.create("/app/job-", b"", sequence=True)
        zk.create("/app/gone", b"x")
        zk.delete("/app/gone")
        zk.create("/app/private", b"alice only", acl=[make_digest_acl("alice", "pw", all=True)])
        zk.create("/app/null", None)
        # A container (createContainer, 19) and a TTL node (createTTL, 21) on the wire.
        raw = RawSession(zk_server.port)
        _, _, err, _ = raw.request(19, ustring("/box") + buffer(b"") + OPEN_ACL + struct.pack(">i", 4))
        assert err == 0
        _, _, err, _ = raw.request(21, ustring("/ttl") + buffer(b"short-lived") + OPEN_ACL
                                   + struct.pack(">iq", 5, 3_600_000))
        assert err == 0
        raw.close()
        zk.create("/box/item", b"in a container")
        t = zk.transaction()
        t.create("/app/multi-a", b"a")
        t.create("/app/multi-b", b"b")
        t.set_data("/app/cfg", b"v4")
        t.commit()
        zk.set_acls("/app/cfg", [make_digest_acl("alice", "pw", read=True, write=True)])
        zk.stop()
        zk.close()
        # A restart: ZooKeeper writes a snapshot of all that at start-up.
        kill(zk_server)
        zk_server.start()
        version2 = os.path.join(zk_server.data_dir, "version-2")
        assert any(f.startswith("snapshot.") and f != "snapshot.0"
                   for f in os.listdir(version2)), os.listdir(version2)
        # After the snapshot: more changes, in the log only, and a live session's ephemeral.
        holder = KazooClient(hosts=f"127.0.0.1:{zk_server.port}", timeout=30,
                             auth_data=[("digest", "alice:pw")])
        holder.start(timeout=30)
        holder.create("/app/lock", b"held", ephemeral=True)
        holder.create("/app/after", b"logged")
        holder.set("/app/after", b"logged twice")
        holder.delete("/app/job-0000000001")
        holder.create("/app/job-", b"", sequence=True)
        expected = tree(holder)
        # kill -9: the log ends in its preallocated zeros.
        kill(zk_server)
        holder.stop()
        holder.close()
        holder = None

        result = zabkeeper("import", "--zk-data-dir", zk_server.data_dir, "--data-dir", out)
        assert result.returncode == 0, result.stdout + result.stderr
        print(result.stdout)
        assert f"imported {len(expected)} znodes" in result.stdout, result.stdout

        zab = Server(data_dir=out, tick_time=2000).start()
        try:
            zk = KazooClient(hosts=zab.hosts(), timeout=30, auth_data=[("digest", "alice:pw")])
            zk.start(timeout=30)
            got = tree(zk)
            # Changes made on zabkeeper, to take back to ZooKeeper.
            zk.create("/from-zabkeeper", b"new")
            zk.set("/app/after", b"changed on zabkeeper")
            zk.delete("/app/multi-a")
            on_zabkeeper = tree(zk)
            zk.stop()
            zk.close()
        finally:
            zab.cleanup()
        assert_same_tree(got, expected)
        assert len(expected) - 1 >= 15

        # The way back: export, and Apache ZooKeeper starts from it with the same tree.
        back = ApacheZooKeeper()
        try:
            result = zabkeeper("export", "--data-dir", out, "--zk-data-dir", back.data_dir)
            assert result.returncode == 0, result.stdout + result.stderr
            print(result.stdout)
            back.start()
            zk = KazooClient(hosts=f"127.0.0.1:{back.port}", timeout=30,
                             auth_data=[("digest", "alice:pw")])
            zk.start(timeout=30)
            returned = tree(zk)
            zk.create("/written-after-rollback", b"ok")
            zk.stop()
            zk.close()
        finally:
            back.cleanup()
        assert_same_tree(returned, on_zabkeeper)
    finally:
        if holder is not None:
            holder.stop()
        zk_server.cleanup()
        shutil.rmtree(out, ignore_errors=True)


def test_import_refuses_a_damaged_snapshot_it_cannot_replace_and_a_non_empty_target(tmp_path):
    src = tmp_path / "zk" / "version-2"
    src.mkdir(parents=True)
    (src / "snapshot.5").write_bytes(b"ZKSN" + b"\0" * 40)
    out = tmp_path / "out"
    r = zabkeeper("import", "--zk-data-dir", str(tmp_path / "zk"), "--data-dir", str(out))
    assert r.returncode != 0 and "reads back whole" in r.stderr, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = zabkeeper("import", "--zk-data-dir", str(empty), "--data-dir", str(out))
    assert r.returncode != 0 and "no ZooKeeper snapshot" in r.stderr, r.stderr
