"""Durability with real processes: kill -9 the server mid-load, restart it on the same
data directory, and find every acknowledged write (and nothing refused)."""

import os
import random
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, ZookeeperError
from kazoo.retry import KazooRetry

from conftest import Server, four_letter


class Writer(threading.Thread):
    """Bumps its own counter znode with versioned setData and creates one
    sequential child per acknowledged step. Records what was acknowledged."""

    def __init__(self, hosts, wid, stop):
        super().__init__(daemon=True)
        self.hosts, self.wid, self.stop = hosts, wid, stop
        self.acked_version = 0      # last version the server acknowledged
        self.in_flight = None       # a write whose outcome is unknown
        self.acked_children = []    # paths the server acknowledged creating
        self.refused = []           # creates the server refused (NodeExists)
        self.error = None

    def run(self):
        zk = KazooClient(hosts=self.hosts, timeout=5, connection_retry=KazooRetry(max_tries=0))
        try:
            zk.start(timeout=5)
            key = f"/dur/w{self.wid}"
            try:
                zk.create(key, b"0", makepath=True)
            except NodeExistsError:
                pass
            while not self.stop.is_set():
                v = self.acked_version + 1
                self.in_flight = v
                zk.set(key, str(v).encode(), version=v - 1)
                self.acked_version = v
                self.in_flight = None
                p = zk.create(f"{key}/step-", str(v).encode(), sequence=True)
                self.acked_children.append((p, v))
                try:
                    zk.create(key, b"dup")
                except NodeExistsError:
                    self.refused.append(key)
        except (ZookeeperError, Exception) as e:  # the kill ends every writer
            self.error = e
        finally:
            try:
                zk.stop()
                zk.close()
            except Exception:
                pass


def check_all_acked(server, writers):
    zk = KazooClient(hosts=server.hosts(), timeout=10)
    zk.start(timeout=10)
    try:
        for w in writers:
            key = f"/dur/w{w.wid}"
            data, stat = zk.get(key)
            # the acknowledged version survived; at most the one in-flight write more
            allowed = {w.acked_version} | ({w.in_flight} if w.in_flight else set())
            assert stat.version in allowed, (key, stat.version, w.acked_version, w.in_flight)
            assert data == str(stat.version).encode(), (key, data, stat.version)
            for path, v in w.acked_children:
                child, _ = zk.get(path)
                assert child == str(v).encode(), (path, child)
        return zk.get_children("/dur")
    finally:
        zk.stop()
        zk.close()


def test_kill_dash_nine_mid_load_loses_no_acknowledged_write():
    rng = random.Random(int(os.environ.get("DURABILITY_SEED", "7")))
    s = Server(tick_time=200).start()
    try:
        all_writers = []
        for round_ in range(4):
            stop = threading.Event()
            writers = [Writer(s.hosts(), len(all_writers) + i, stop) for i in range(4)]
            for w in writers:
                w.start()
            time.sleep(0.3 + rng.random() * 1.2)
            s.kill9()
            stop.set()
            for w in writers:
                w.join(20)
            all_writers.extend(writers)
            total = sum(w.acked_version for w in writers)
            assert total > 0, "the writers acknowledged nothing before the kill"
            s.start()
            check_all_acked(s, all_writers)
        assert "Mode: standalone" in four_letter(s.port, "srvr")
    finally:
        s.cleanup()


def test_restart_keeps_tree_sessions_and_ephemerals():
    s = Server(tick_time=200).start()
    try:
        zk = KazooClient(hosts=s.hosts(), timeout=6)
        zk.start(timeout=10)
        zk.create("/keep/a", b"1", makepath=True)
        zk.set("/keep/a", b"2")
        zk.create("/keep/eph", b"e", ephemeral=True)
        sid = zk.client_id[0]
        before = zk.get("/keep/a")[1]
        s.stop()
        s.start()
        # the session survives the restart: the client reconnects to it
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                data, stat = zk.get("/keep/a")
                break
            except Exception:
                time.sleep(0.1)
        assert data == b"2" and stat == before
        assert zk.client_id[0] == sid
        assert zk.exists("/keep/eph").ephemeralOwner == sid
        zk.stop()
        zk.close()
    finally:
        s.cleanup()


def test_null_data_survives_restart():
    s = Server(tick_time=200).start()
    try:
        zk = KazooClient(hosts=s.hosts(), timeout=10)
        zk.start(timeout=10)
        zk.create("/null", None)
        zk.create("/empty", b"")
        zk.stop()
        zk.close()
        s.stop()
        s.start()
        zk = KazooClient(hosts=s.hosts(), timeout=10)
        zk.start(timeout=10)
        assert zk.get("/null")[0] is None
        assert zk.get("/empty")[0] == b""
        zk.stop()
        zk.close()
    finally:
        s.cleanup()
