"""The client side of `make jepsen`: kazoo clients (a real ZooKeeper library) in the
clients' network namespace, recording every operation in the checker's history format
(docs/spec/history-format.md, the `zk` model's fields) and every lock tenure.

Run by jepsen.py inside the namespace; not meant to be run by hand."""

import argparse
import json
import random
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (BadVersionError, NodeExistsError, NoNodeError)
from kazoo.protocol.connection import ConnectionHandler

# The checker orders a session's replies by the zxid of their reply header, which kazoo
# reads but does not return: keep the last one per client (one request in flight each).
_read_response = ConnectionHandler._read_response


def _recording_read_response(self, header, buffer, offset):
    self.client._reply_zxid = header.zxid
    return _read_response(self, header, buffer, offset)


ConnectionHandler._read_response = _recording_read_response

KEYS = [f"/jepsen-k{i}" for i in range(5)]
LOCK = "/jepsen-lock"
PRECONDITION = {NoNodeError: "NoNode", BadVersionError: "BadVersion", NodeExistsError: "NodeExists"}


def now():
    return time.monotonic_ns()


class Recorder:
    def __init__(self, path, append=False):
        self.f = open(path, "a" if append else "w")
        self.lock = threading.Lock()

    def write(self, ev):
        with self.lock:
            self.f.write(json.dumps(ev) + "\n")
            self.f.flush()


def stat_dict(s):
    return {"czxid": s.czxid, "mzxid": s.mzxid, "version": s.version, "cversion": s.cversion,
            "ephemeralOwner": s.ephemeralOwner, "numChildren": s.numChildren}


def new_client(hosts, timeout):
    c = KazooClient(hosts=hosts, timeout=timeout, connection_retry={"max_tries": -1, "delay": 0.1,
                                                                      "max_delay": 1})
    c._reply_zxid = None
    c.start(timeout=60)
    return c


def node_of(c):
    try:
        return c._connection._socket.getpeername()[0]
    except Exception:
        return None


class Worker(threading.Thread):
    """One client session; `process` changes after every operation with an unknown outcome
    (one operation in flight per process, as the checker requires)."""

    def __init__(self, args, rec, index, stop_at):
        super().__init__(daemon=True)
        self.args, self.rec, self.index, self.stop_at = args, rec, index, stop_at
        self.process = index
        self.rng = random.Random(args.seed * 1000 + index)
        self.counter = 0
        self.known = {}  # key -> last version seen (for conditional writes)

    def run(self):
        self.c = new_client(self.args.hosts, self.args.session_timeout)
        while time.monotonic() < self.stop_at:
            r = self.rng.random()
            key = self.rng.choice(KEYS)
            if r < 0.35:
                self.read(key)
            elif r < 0.7:
                self.write(key, cas=False)
            else:
                self.write(key, cas=True)
        try:
            self.c.stop()
            self.c.close()
        except Exception:
            pass

    def invoke(self, f, path, value, **extra):
        ev = {"process": self.process, "type": "invoke", "f": f, "path": path, "value": value,
              "time": now(), "session": self.c._session_id or 0, "node": node_of(self.c)}
        ev.update(extra)
        self.rec.write(ev)
        return ev

    def complete(self, inv, kind, **extra):
        ev = dict(inv)
        ev.update({"type": kind, "time": now()})
        ev.update(extra)
        self.rec.write(ev)
        if kind == "info":
            self.process += self.args.procs
            if self.c.state == KazooState.LOST or self.c.client_state == "CLOSED":
                self.c = new_client(self.args.hosts, self.args.session_timeout)

    def call(self, inv, fn):
        """Runs `fn` (a kazoo *_async call); returns its result, or records the outcome."""
        self.c._reply_zxid = None
        try:
            return True, fn().get(timeout=self.args.op_timeout)
        except tuple(PRECONDITION) as e:
            self.complete(inv, "ok", error=PRECONDITION[type(e)], zxid=self.c._reply_zxid)
        except Exception as e:  # connection loss, session expiry, timeout: unknown
            self.complete(inv, "info", error=type(e).__name__)
        return False, None

    def read(self, key):
        quorum = self.args.quorum_reads
        inv = self.invoke("getData", key, None, **({"quorum": True} if quorum else {}))
        if quorum and self.rng.random() < 0.5:
            # sync, then the read: one operation, linearizable under quorumReads
            ok, _ = self.call(inv, lambda: self.c.sync_async(key))
            if not ok:
                return
        ok, res = self.call(inv, lambda: self.c.get_async(key))
        if ok:
            data, stat = res
            self.known[key] = stat.version
            self.complete(inv, "ok", value=data.decode(), zxid=self.c._reply_zxid,
                          stat=stat_dict(stat))

    def write(self, key, cas):
        self.counter += 1
        value = f"w{self.index}-{self.counter}"
        version = self.known.get(key, -1) if cas else -1
        inv = self.invoke("setData", key, value, version=version)
        ok, stat = self.call(inv, lambda: self.c.set_async(key, value.encode(), version))
        if ok:
            self.known[key] = stat.version
            self.complete(inv, "ok", zxid=self.c._reply_zxid, stat=stat_dict(stat))
        else:
            self.known.pop(key, None)


class Locker(threading.Thread):
    """Takes kazoo's Lock recipe again and again; a tenure ends at its release or as soon
    as the session is no longer known to be connected (kazoo's SUSPENDED or LOST)."""

    def __init__(self, args, out, index, stop_at):
        super().__init__(daemon=True)
        self.args, self.out, self.index, self.stop_at = args, out, index, stop_at
        self.rng = random.Random(args.seed * 7919 + index)
        self.lost_at = None

    def listener(self, state):
        if state != KazooState.CONNECTED and self.lost_at is None:
            self.lost_at = now()

    def run(self):
        c = new_client(self.args.hosts, self.args.session_timeout)
        c.add_listener(self.listener)
        while time.monotonic() < self.stop_at:
            lock = c.Lock(LOCK, f"locker-{self.index}")
            try:
                if not lock.acquire(timeout=2):
                    continue
            except Exception:
                time.sleep(0.2)
                continue
            self.lost_at = None
            start = now()
            if c.state != KazooState.CONNECTED:
                self.lost_at = start
            time.sleep(self.rng.uniform(0.05, 0.3))
            end = now()
            try:
                lock.release()
            except Exception:
                pass
            if self.lost_at is not None:
                end = min(end, self.lost_at)
            self.out.write({"locker": self.index, "acquired": start, "released": end,
                            "session": c._session_id})
            if c.state == KazooState.LOST:
                c.stop()
                c = new_client(self.args.hosts, self.args.session_timeout)
                c.add_listener(self.listener)
        c.stop()
        c.close()


def final_reads(args):
    """After the heal: one write, then through each server alone a sync and a read of
    every key, recorded (each read is judged against its zxid), and what each server
    serves, printed as JSON for the agreement check."""
    rec = Recorder(args.history, append=True)
    hosts = args.hosts.split(",")
    c = new_client(hosts[0], args.session_timeout)
    inv = {"process": 20_000, "type": "invoke", "f": "setData", "path": KEYS[0], "value": "final",
           "version": -1, "time": now(), "session": c._session_id, "node": node_of(c)}
    rec.write(inv)
    stat = c.set(KEYS[0], b"final")
    rec.write(dict(inv, type="ok", time=now(), zxid=c._reply_zxid, stat=stat_dict(stat)))
    c.stop()
    c.close()
    served = {}
    for i, host in enumerate(hosts):
        c = new_client(host, args.session_timeout)
        values = {}
        for j, k in enumerate(KEYS):
            c.sync(k)
            inv = {"process": 20_001 + i * len(KEYS) + j, "type": "invoke", "f": "getData",
                   "path": k, "value": None, "time": now(), "session": c._session_id,
                   "node": node_of(c)}
            rec.write(inv)
            data, stat = c.get(k)
            rec.write(dict(inv, type="ok", time=now(), value=data.decode(), zxid=c._reply_zxid,
                           stat=stat_dict(stat)))
            values[k] = [data.decode(), stat.version, stat.mzxid]
        served[host] = values
        c.stop()
        c.close()
    print(json.dumps(served))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--final", action="store_true", help="the final write and reads only")
    p.add_argument("--hosts", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--locks")
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procs", type=int, default=5)
    p.add_argument("--lockers", type=int, default=3)
    p.add_argument("--quorum-reads", action="store_true")
    p.add_argument("--session-timeout", type=float, default=6.0)
    p.add_argument("--op-timeout", type=float, default=3.0)
    args = p.parse_args()
    if args.final:
        return final_reads(args)
    rec = Recorder(args.history)
    # The keys are created in the history (the checker starts from an empty tree).
    setup = new_client(args.hosts, args.session_timeout)
    for k in KEYS:
        inv = {"process": 10_000, "type": "invoke", "f": "create", "path": k, "value": "init",
               "mode": "persistent", "time": now(), "session": setup._session_id}
        rec.write(inv)
        path = setup.create(k, b"init")
        rec.write(dict(inv, type="ok", time=now(), result=path, zxid=setup._reply_zxid))
    setup.stop()
    setup.close()
    print("workload: keys created", flush=True)
    stop_at = time.monotonic() + args.seconds
    locks = Recorder(args.locks)
    threads = [Worker(args, rec, i, stop_at) for i in range(args.procs)]
    threads += [Locker(args, locks, i, stop_at) for i in range(args.lockers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.seconds + 120)
    print("workload: done", flush=True)


if __name__ == "__main__":
    main()
