"""Damaged data directories with real processes: write with kazoo, stop the server, damage
the files in `<dataDir>/version-2/` by hand, restart, and assert exactly what the storage
rules (node/src/storage/file.rs) promise:

- a bad record followed by valid ones is corruption: refuse, naming the file and offset;
- a torn or garbage tail of the last log is a crash mid-append: truncate it, warn, start,
  with every acknowledged write before the torn record present;
- an invalid newest snapshot falls back to an older state if the log covers the span, and
  refuses otherwise;
- no snapshot while the logs do not start the history refuses (ZOOKEEPER-2325);
- a snapshot from an epoch newer than currentEpoch refuses (ZOOKEEPER-2354).

The on-disk formats (see node/src/storage/format.rs), big-endian:
  log:      header "ZBLG" | version u32 | prev_zxid i64, then records
            len u32 | crc32c u32 | zxid i64 | payload, then zeros (preallocation)
  snapshot: "ZBSN" | version u32 | zxid i64 | body_len u64 | body | crc32c u32 | "ZBSE"
"""

import os
import struct
import subprocess

import pytest
from kazoo.client import KazooClient

from conftest import Server, zabkeeper_bin

LOG_HEADER_LEN = 16
RECORD_HEADER_LEN = 16
SNAP_HEADER_LEN = 24

# Small snapCount so that a few dozen writes take several snapshots, and autopurge on so
# that old logs and snapshots go away as in production.
SNAP_CONFIG = ["snapCount=10"]
PURGE_CONFIG = ["snapCount=10", "autopurge.purgeInterval=1", "autopurge.snapRetainCount=3"]


# --- on-disk helpers -------------------------------------------------------------------

def version2(server):
    return os.path.join(server.data_dir, "version-2")


def files(server, prefix):
    """Files named `<prefix><hex zxid>` in version-2, oldest first."""
    d = version2(server)
    names = [n for n in os.listdir(d) if n.startswith(prefix) and not n.endswith(".tmp")]
    names.sort(key=lambda n: int(n[len(prefix):], 16))
    return [os.path.join(d, n) for n in names]


def logs(server):
    return files(server, "log.")


def snapshots(server):
    return files(server, "snapshot.")


class Record:
    def __init__(self, offset, length, zxid, payload):
        self.offset, self.length, self.zxid, self.payload = offset, length, zxid, payload

    @property
    def end(self):
        return self.offset + RECORD_HEADER_LEN + self.length


def parse_log(path):
    """The framed records of a log file (CRCs not checked), up to the zero tail."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"ZBLG", path
    records, off = [], LOG_HEADER_LEN
    while off + RECORD_HEADER_LEN <= len(data):
        length, _crc, zxid = struct.unpack(">IIq", data[off:off + RECORD_HEADER_LEN])
        if length == 0 and zxid == 0:
            break
        start = off + RECORD_HEADER_LEN
        records.append(Record(off, length, zxid, data[start:start + length]))
        off = start + length
    return records


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# --- process helpers -------------------------------------------------------------------

def client(server):
    zk = KazooClient(hosts=server.hosts(), timeout=10.0)
    zk.start(timeout=10)
    return zk


def close(zk):
    zk.stop()
    zk.close()


def write_nodes(server, prefix, count, start=0, until=None):
    """Creates `<prefix>/n-<i>` holding `v<i>` for i in [start, start+count), stopping early
    once `until()` holds; returns the paths."""
    zk = client(server)
    try:
        zk.ensure_path(prefix)
        paths = []
        for i in range(start, start + count):
            p = f"{prefix}/n-{i}"
            zk.create(p, f"v{i}".encode())
            paths.append(p)
            if until is not None and until():
                break
        return paths
    finally:
        close(zk)


def write_until_snapshots(server, prefix, wanted, start=0, limit=2000):
    """Creates nodes as write_nodes does until the data dir holds `wanted` snapshots.
    Snapshots are written in the background, so how many a given number of writes yields
    depends on timing; tests that need several ask for them this way."""
    enough = lambda: len(snapshots(server)) >= wanted  # noqa: E731
    paths = write_nodes(server, prefix, limit, start=start, until=enough)
    assert enough(), f"{limit} writes left {len(snapshots(server))} snapshots"
    return paths


def assert_nodes(server, paths):
    zk = client(server)
    try:
        for p in paths:
            data, _ = zk.get(p)
            assert data == f"v{p.rsplit('-', 1)[1]}".encode(), (p, data)
    finally:
        close(zk)


def start_expecting_refusal(server, timeout=20):
    """Starts the server and waits for it to exit; returns (exit code, its log output)."""
    before = len(full_log(server))
    server.start(wait=False)
    try:
        rc = server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill9()
        pytest.fail(f"the server started on a damaged data dir:\n{server.log()}")
    return rc, full_log(server)[before:]


def full_log(server):
    """Everything the server printed, over all its starts (Server.log() keeps the tail)."""
    try:
        with open(server.log_path) as f:
            return f.read()
    except OSError:
        return ""


@pytest.fixture
def make_server():
    made = []

    def make(**kw):
        s = Server(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


# --- a bad record before valid ones ----------------------------------------------------

def test_flipped_byte_mid_log_refuses_naming_file_and_offset(make_server):
    s = make_server().start()
    paths = write_nodes(s, "/mid", 20)
    s.stop()
    [log] = logs(s)
    records = parse_log(log)
    assert len(records) >= 22  # createSession, /mid, 20 creates, closeSession
    bad = records[len(records) // 2]
    flip_byte(log, bad.offset + RECORD_HEADER_LEN + bad.length // 2)

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"corrupt {log} at offset {bad.offset}: CRC mismatch" in out, out
    assert f"a valid record follows at offset {bad.end}" in out, out
    # the file was left as it was: a second start refuses the same way
    rc2, out2 = start_expecting_refusal(s)
    assert rc2 != 0 and f"corrupt {log} at offset {bad.offset}" in out2
    # and the data is intact once the byte is restored
    flip_byte(log, bad.offset + RECORD_HEADER_LEN + bad.length // 2)
    s.start()
    assert_nodes(s, paths)


def test_zeroed_record_header_mid_log_refuses(make_server):
    s = make_server().start()
    paths = write_nodes(s, "/zero", 20)
    s.stop()
    [log] = logs(s)
    # a record whose header lies inside a 512-byte sector, with payload after it there
    bad = next(r for r in parse_log(log)[10:] if r.offset % 512 <= 512 - RECORD_HEADER_LEN - 8)
    with open(log, "r+b") as f:
        f.seek(bad.offset)
        header = f.read(RECORD_HEADER_LEN)
        f.seek(bad.offset)
        f.write(bytes(RECORD_HEADER_LEN))  # bit rot at rest: one header reads as zeros

    # Not a torn tail: no writeback order leaves 16 zeros mid-sector before written data,
    # and truncating here would drop the acknowledged txns after it.
    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"corrupt {log} at offset {bad.offset}" in out, out
    assert "a valid record follows at offset" in out, out
    # restoring the header restores every write
    with open(log, "r+b") as f:
        f.seek(bad.offset)
        f.write(header)
    s.start()
    assert_nodes(s, paths)


def test_bad_tail_of_an_older_log_is_not_a_torn_tail(make_server):
    s = make_server().start()
    write_nodes(s, "/old", 5)
    s.stop()
    s.start()  # a restarted server appends to a new log file
    write_nodes(s, "/old", 5, start=5)
    s.stop()
    first, second = logs(s)[:2]
    last = parse_log(first)[-1]
    flip_byte(first, last.offset + RECORD_HEADER_LEN + last.length - 1)

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"corrupt {first} at offset {last.offset}" in out, out
    assert "not the last log, so not a torn tail" in out, out
    assert os.path.exists(second)


# --- torn tail of the last log ----------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip-payload", "flip-header", "truncate-mid-record",
                                    "truncate-mid-header", "zero-header"])
def test_torn_tail_is_repaired_and_acknowledged_writes_survive(make_server, damage):
    s = make_server().start()
    acked = write_nodes(s, "/torn", 10)
    zk = client(s)
    zk.create("/torn/last", b"the torn record")
    s.kill9()  # no closeSession: /torn/last is the last record of the log
    close(zk)
    [log] = logs(s)
    size = os.path.getsize(log)
    last = parse_log(log)[-1]
    assert b"/torn/last" in last.payload
    if damage == "flip-payload":
        flip_byte(log, last.end - 1)
    elif damage == "flip-header":
        flip_byte(log, last.offset + 1)  # the length field
    elif damage == "zero-header":  # the header's sector never written back, the rest was
        with open(log, "r+b") as f:
            f.seek(last.offset)
            f.write(bytes(RECORD_HEADER_LEN))
    elif damage == "truncate-mid-record":
        os.truncate(log, last.offset + RECORD_HEADER_LEN + last.length // 2)
    else:
        os.truncate(log, last.offset + 7)

    s.start()
    out = full_log(s)
    assert f"truncating torn tail of {log} at offset {last.offset}" in out, out
    assert_nodes(s, acked)
    zk = client(s)
    try:
        assert zk.exists("/torn/last") is None
        # the repaired node takes new writes, and they survive another restart
        zk.create("/torn/after", b"v-after")
    finally:
        close(zk)
    s.stop()
    assert os.path.getsize(log) == last.offset, (size, last.offset)
    s.start()
    out = full_log(s)
    assert out.count("truncating torn tail") == 1, out
    zk = client(s)
    try:
        assert zk.get("/torn/after")[0] == b"v-after"
    finally:
        close(zk)


# --- snapshots -------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "bit-rot"])
def test_damaged_newest_snapshot_falls_back_when_the_log_covers_it(make_server, damage):
    s = make_server(config_lines=SNAP_CONFIG).start()
    paths = write_until_snapshots(s, "/snap", 3)
    s.stop()
    snaps = snapshots(s)
    assert len(snaps) >= 3, snaps
    newest = snaps[-1]
    if damage == "truncate":
        os.truncate(newest, os.path.getsize(newest) // 2)
    else:
        flip_byte(newest, os.path.getsize(newest) // 2)

    s.start()
    out = full_log(s)
    assert f"snapshot {newest} is invalid" in out, out
    assert_nodes(s, paths)


def purged_history(make_server):
    """A data dir whose oldest logs were purged: the logs no longer start the history."""
    s = make_server(config_lines=PURGE_CONFIG)
    paths = []
    for round_ in range(3):
        s.start()
        # three snapshots per round: the next start's autopurge keeps only this round's
        paths += write_until_snapshots(s, "/purge", len(snapshots(s)) + 3, start=len(paths))
        s.stop()
    first_log = logs(s)[0]
    assert not first_log.endswith("log.1"), "autopurge should have removed the first log"
    with open(first_log, "rb") as f:
        header = f.read(LOG_HEADER_LEN)
    assert struct.unpack(">q", header[8:16])[0] != 0, "the first log must not start the history"
    return s, paths


def test_truncated_snapshots_not_covered_by_the_log_refuse(make_server):
    s, _ = purged_history(make_server)
    snaps = snapshots(s)
    assert len(snaps) >= 3, snaps
    for snap in snaps:
        os.truncate(snap, os.path.getsize(snap) - 3)  # lose the end magic

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"snapshot {snaps[-1]} is invalid" in out, out
    assert "the log does not cover 0x0..=" in out, out


def test_only_the_newest_snapshot_truncated_after_purge_falls_back(make_server):
    s, paths = purged_history(make_server)
    newest = snapshots(s)[-1]
    os.truncate(newest, SNAP_HEADER_LEN + 5)
    s.start()
    assert f"snapshot {newest} is invalid" in full_log(s)
    assert_nodes(s, paths)


def test_deleted_snapshots_with_logs_that_need_them_refuse(make_server):
    s, _ = purged_history(make_server)
    first_log = logs(s)[0]
    for snap in snapshots(s):
        os.remove(snap)

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"no valid snapshot in {version2(s)}, but {first_log} starts at" in out, out
    assert "refusing to start from an empty tree" in out, out


def test_snapshot_newer_than_current_epoch_refuses(make_server):
    """ZOOKEEPER-2354: a snapshot of epoch e+1 while currentEpoch says e (a learner that
    took the new leader's snapshot and crashed before writing currentEpoch, without the
    updatingEpoch marker). Produced by hand: re-header a valid snapshot one epoch up (a
    standalone server is an ensemble of one: its first start leads epoch 1)."""
    s = make_server(config_lines=SNAP_CONFIG).start()
    write_nodes(s, "/epoch", 20)
    s.stop()
    src = snapshots(s)[-1]
    with open(src, "rb") as f:
        data = f.read()
    magic, version, zxid, body_len = struct.unpack(">4sIqQ", data[:SNAP_HEADER_LEN])
    epoch = zxid >> 32
    assert magic == b"ZBSN" and epoch == 1
    body = data[SNAP_HEADER_LEN:SNAP_HEADER_LEN + body_len]
    assert struct.unpack(">I", data[-8:-4])[0] == crc32c(data[:SNAP_HEADER_LEN] + body)
    new_zxid = ((epoch + 1) << 32) | (zxid & 0xFFFFFFFF)
    header = struct.pack(">4sIqQ", magic, version, new_zxid, body_len)
    forged = header + body + struct.pack(">I", crc32c(header + body)) + b"ZBSE"
    forged_path = os.path.join(version2(s), f"snapshot.{new_zxid:x}")
    with open(forged_path, "wb") as f:
        f.write(forged)

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert (f"snapshot {forged_path} has zxid 0x{new_zxid:x} of epoch {epoch + 1}, "
            f"newer than currentEpoch {epoch}") in out, out
    # removing the forged snapshot restores a startable data dir
    os.remove(forged_path)
    s.start()


def test_garbage_epoch_file_refuses_naming_it(make_server):
    s = make_server().start()
    write_nodes(s, "/ep", 3)
    s.stop()
    path = os.path.join(version2(s), "currentEpoch")
    with open(path, "w") as f:
        f.write("not a number")

    rc, out = start_expecting_refusal(s)
    assert rc != 0
    assert f"cannot parse epoch file {path}: \"not a number\"" in out, out


# --- operator tools --------------------------------------------------------------------

def run_tool(*args):
    return subprocess.run([zabkeeper_bin(), *args], capture_output=True, text=True, timeout=30)


def test_dump_log_and_dump_snapshot_print_contents(make_server):
    s = make_server(config_lines=SNAP_CONFIG).start()
    zk = client(s)
    zk.create("/dump", b"")
    zk.create("/dump/alpha", b"a")
    zk.set("/dump/alpha", b"aa")
    for i in range(15):
        zk.create(f"/dump/n-{i}", b"x")
    zk.delete("/dump/n-0")
    close(zk)
    s.stop()

    [log] = logs(s)
    res = run_tool("dump-log", log)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "(starts the history)" in out
    # A standalone server leads epoch 1 of its ensemble of one.
    assert "zxid 0x100000001 (epoch 1 counter 1) offset 16" in out and "CreateSession" in out
    assert 'Create { path: "/dump/alpha"' in out
    assert 'SetData { path: "/dump/alpha"' in out
    assert 'Delete { path: "/dump/n-0" }' in out
    assert "CloseSession" in out
    assert "end of records" in out
    assert out.count("\nzxid ") == len(parse_log(log))

    snap = snapshots(s)[-1]
    zxid = int(snap.rsplit(".", 1)[1], 16)
    res = run_tool("dump-snapshot", snap)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"at zxid 0x{zxid:x}" in out
    assert "  /dump czxid=" in out
    assert "  /dump/alpha czxid=" in out and "version=1" in out
    assert "  /zookeeper czxid=" in out

    # a damaged log: the tool prints what is valid and says where it stops
    records = parse_log(log)
    flip_byte(log, records[3].offset + RECORD_HEADER_LEN)
    res = run_tool("dump-log", log)
    assert res.returncode != 0
    assert f"offset {records[3].offset}" in res.stdout + res.stderr
    assert res.stdout.count("\nzxid ") == 3


# --- kill -9 with frequent snapshots and purges -------------------------------------------

@pytest.mark.parametrize("force_sync", ["yes", "no"])
def test_kill9_mid_load_with_frequent_snapshots_and_purges_loses_no_ack(make_server, force_sync):
    """test_durability's kill -9 rounds with snapCount=10 and autopurge on: crashes land
    during snapshot writes and purges, and every restart starts a new log. A process crash
    keeps the page cache, so forceSync=no must lose nothing here either (a power loss
    would)."""
    import random
    import threading
    import time

    from test_durability import Writer, check_all_acked

    rng = random.Random(int(os.environ.get("DURABILITY_SEED", "11")))
    s = make_server(config_lines=PURGE_CONFIG + [f"forceSync={force_sync}"]).start()
    all_writers = []
    for _ in range(4):
        stop = threading.Event()
        writers = [Writer(s.hosts(), len(all_writers) + i, stop) for i in range(3)]
        for w in writers:
            w.start()
        time.sleep(0.3 + rng.random())
        s.kill9()
        stop.set()
        for w in writers:
            w.join(20)
        all_writers.extend(writers)
        assert sum(w.acked_version for w in writers) > 0
        s.start()
        check_all_acked(s, all_writers)
    assert len(snapshots(s)) <= 3 + 1  # retained ones, plus at most one taken since a purge
    assert "snapshot taken" in full_log(s)
    assert "purging" in full_log(s)
