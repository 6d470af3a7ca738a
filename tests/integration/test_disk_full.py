"""A full disk (a small tmpfs the test mounts; root only): the server refuses writes
cleanly instead of acknowledging what it cannot store, nothing acknowledged is lost,
nothing on disk is corrupted, and once space is freed a restart serves the same tree
and takes writes again."""

import os
import shutil
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.retry import KazooRetry

from conftest import Server

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk():
    d = tempfile.mkdtemp(prefix="zabkeeper-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_full_disk_refuses_writes_loses_nothing_and_serves_after_space_is_freed(small_disk):
    data = os.path.join(small_disk, "data")
    os.makedirs(data)
    filler = os.path.join(small_disk, "filler")
    # Leave about 1.5 MB free for the server.
    with open(filler, "wb") as f:
        f.write(b"\0" * (6 * 1024 * 1024 + 512 * 1024))
    server = Server(data_dir=data, tick_time=2000).start()
    acked = []
    refused = 0
    try:
        zk = KazooClient(hosts=server.hosts(), timeout=10,
                         connection_retry=KazooRetry(max_tries=0))
        zk.start(timeout=10)
        payload = b"d" * 10_000
        for i in range(400):
            try:
                zk.create(f"/n{i:04d}", payload)
                acked.append(f"/n{i:04d}")
            except KazooException:
                refused += 1
                break
        print(f"acknowledged {len(acked)} creates of 10 KB before the disk was full")
        assert 0 < len(acked) < 400, "the disk never filled"
        assert refused == 1
        try:
            zk.stop()
            zk.close()
        except Exception:
            pass
        # The server does not go on as if nothing happened: it stops, saying why.
        server.proc.wait(20)
        with open(server.log_path) as f:
            log = f.read()
        print([l for l in log.splitlines() if "space" in l.lower() or "fatal" in l.lower()][-3:])
        assert "No space left on device" in log or "ENOSPC" in log or "os error 28" in log, log[-2000:]
    finally:
        server.stop()
    # Space is freed; the restarted server has every acknowledged znode, intact.
    os.remove(filler)
    server = Server(data_dir=data, port=server.port, tick_time=2000).start()
    try:
        zk = KazooClient(hosts=server.hosts(), timeout=10)
        zk.start(timeout=10)
        for path in acked:
            value, _ = zk.get(path)
            assert value == b"d" * 10_000, path
        zk.create("/after", b"again")
        assert zk.get("/after")[0] == b"again"
        zk.stop()
        zk.close()
    finally:
        server.stop()
