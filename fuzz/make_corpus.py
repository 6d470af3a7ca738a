"""Writes the seed corpora under fuzz/corpus/ from real traffic and real files:

- client: what kazoo sends to a zabkeeper server, recorded by a TCP proxy, one file per
  connection (CRUD, multi, watches, ACLs, auth, sync, the four-letter words);
- peer: what three zabkeeper servers send each other while kazoo writes, recorded by a
  proxy on each quorum link, cut into frames (handshakes and peer messages);
- storage: the txn log, snapshot and epoch files a zabkeeper ensemble member wrote;
- import: the snapshot and txn log Apache ZooKeeper 3.8 (Debian's package) wrote;
- config: Debian's zoo.cfg and the zoo.cfg files the servers above were started with.

Run from the repository root with the test virtualenv (bash tests/integration/setup.sh):
    target/test-venv/bin/python fuzz/make_corpus.py
"""

import os
import shutil
import socket
import struct
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from kazoo.client import KazooClient  # noqa: E402
from kazoo.security import make_digest_acl  # noqa: E402

from conftest import ApacheZooKeeper, Ensemble, Server, four_letter  # noqa: E402

CORPUS = os.path.join(ROOT, "fuzz", "corpus")
MAX_FILE = 64 * 1024


class Proxy(threading.Thread):
    """Forwards 127.0.0.1:port to target, recording what each accepted connection
    sends (and, with `both`, what it receives) into one file per connection."""

    def __init__(self, target, out_dir, prefix, both=False):
        super().__init__(daemon=True)
        self.target, self.out_dir, self.prefix, self.both = target, out_dir, prefix, both
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.n = 0

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.n += 1
            try:
                s = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            name = os.path.join(self.out_dir, f"{self.prefix}-{self.n}")

            def pump(a, b, path):
                out = open(path, "wb") if path else None
                kept = 0
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        if out and kept < MAX_FILE:
                            out.write(d[: MAX_FILE - kept])
                            out.flush()
                            kept += len(d)
                        b.sendall(d)
                except OSError:
                    pass
                if out:
                    out.close()
                for x in (a, b):
                    try:
                        x.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            threading.Thread(target=pump, args=(c, s, name), daemon=True).start()
            threading.Thread(target=pump, args=(s, c, name + "-in" if self.both else None),
                             daemon=True).start()


def kazoo_session(port):
    c = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
    c.start(timeout=20)
    c.add_auth("digest", "bob:secret")
    c.create("/fz", b"data", makepath=True)
    c.create("/fz/seq-", b"s", sequence=True)
    c.create("/fz/eph", b"e", ephemeral=True)
    c.get("/fz", watch=lambda e: None)
    c.get_children("/fz", watch=lambda e: None)
    c.exists("/fz/none", watch=lambda e: None)
    c.set("/fz", b"data2")
    c.set("/fz", b"data3", version=1)
    c.set_acls("/fz", [make_digest_acl("bob", "secret", all=True)])
    c.get_acls("/fz")
    tx = c.transaction()
    tx.create("/fz/t1", b"1")
    tx.check("/fz", 2)
    tx.set_data("/fz/t1", b"2")
    tx.delete("/fz/t1")
    tx.commit()
    c.sync("/fz")
    c.delete("/fz/eph")
    try:
        c.delete("/fz")
    except Exception:
        pass
    c.stop()
    c.close()


def keep(src, dst, limit=MAX_FILE):
    """Copies `src` to `dst`, cut at `limit` bytes and without a zero tail."""
    with open(src, "rb") as f:
        data = f.read(limit)
    data = data.rstrip(b"\0") or data[:16]
    with open(dst, "wb") as f:
        f.write(data)


def split_peer_streams(d):
    """A recorded quorum connection is a handshake and then frames: one file each,
    identical ones once."""
    seen = set()
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        with open(path, "rb") as f:
            data = f.read()
        os.remove(path)
        items = []
        pos = 0
        if data[:4] == b"ZKPR":
            items.append(data[:16])
            pos = 16
        while pos + 4 <= len(data):
            (n,) = struct.unpack(">I", data[pos:pos + 4])
            if pos + 4 + n > len(data):
                break
            items.append(data[pos:pos + 4 + n])
            pos += 4 + n
        for k, item in enumerate(items):
            key = (item[4:6], len(item)) if len(item) > 16 else item
            if key in seen:
                continue
            seen.add(key)
            with open(f"{path}-{k}", "wb") as f:
                f.write(item)


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    for t in ("client", "peer", "storage", "config", "import"):
        os.makedirs(os.path.join(CORPUS, t))
    # client: kazoo through a proxy to a standalone zabkeeper server
    srv = Server().start()
    try:
        p = Proxy(("127.0.0.1", srv.port), os.path.join(CORPUS, "client"), "kazoo")
        p.start()
        kazoo_session(p.port)
        for word in ("ruok", "srvr", "mntr", "cons", "wchs", "isro"):
            try:
                four_letter(p.port, word)
            except OSError:
                pass
        time.sleep(0.5)
    finally:
        srv.stop()
    # peer and storage: a 3-server ensemble; servers 2 and 3 (the larger sids, whose
    # connections live) reach server 1 through a recording proxy
    ens = Ensemble(participants=3, tick_time=100, extra_lines=lambda i: ["snapCount=10"])
    proxy = Proxy(("127.0.0.1", ens.ports[1][1]), os.path.join(CORPUS, "peer"), "link", both=True)
    proxy.start()

    def via_proxy(line):
        if line.startswith("server.1="):
            return line.replace(f":{ens.ports[1][1]}:", f":{proxy.port}:")
        return line

    for i in (2, 3):
        ens.servers[i].config_lines = [via_proxy(line) for line in ens.servers[i].config_lines]
    try:
        ens.start()
        kazoo_session(ens.ports[1][0])
        time.sleep(1)
        for i, path in [(1, "zoo.cfg")]:
            keep(os.path.join(ens.servers[i].data_dir, path),
                 os.path.join(CORPUS, "config", "ensemble-zoo.cfg"))
    finally:
        for s in ens.servers.values():
            s.stop()
    split_peer_streams(os.path.join(CORPUS, "peer"))
    d = ens.servers[1].data_dir
    for root, _, files in os.walk(d):
        for f in files:
            if f.startswith(("log.", "snapshot.")) or "Epoch" in f:
                keep(os.path.join(root, f), os.path.join(CORPUS, "storage", f))
    ens.cleanup()
    # import: Apache ZooKeeper's own files
    if os.path.exists("/usr/share/java/zookeeper.jar"):
        zk = ApacheZooKeeper(tick_time=200).start()
        try:
            kazoo_session(zk.port)
            time.sleep(0.5)
        finally:
            zk.stop()
        for root, _, files in os.walk(zk.data_dir):
            for f in files:
                if f.startswith(("log.", "snapshot.")):
                    keep(os.path.join(root, f), os.path.join(CORPUS, "import", f"zk-{f}"))
        zk.cleanup()
    for src in ["/etc/zookeeper/conf/zoo.cfg", "/etc/zookeeper/conf_example/zoo.cfg"]:
        if os.path.exists(src):
            keep(src, os.path.join(CORPUS, "config", os.path.basename(os.path.dirname(src)) + "-zoo.cfg"))
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        print(f"{t}: {len(files)} files, {sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
