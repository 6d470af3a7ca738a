"""SessionMoved (ZooKeeper's `checkSession` with an owner, ZOOKEEPER-710): once a client
resumes its session through another server, a write that still arrives through the
server it left is not applied; that server closes the old connection without an answer
(ZooKeeper's FinalRequestProcessor `sendCloseSession`). Run on a zabkeeper ensemble and
on an Apache ZooKeeper 3.8 ensemble, with raw sockets so that no client library
reconnects behind the test's back."""

import socket
import struct

import pytest

from conftest import Ensemble, server_kinds
from zkwire import RawSession, recv_frame, ustring, buffer, frame



def send_create(s, path, flags=0):
    acl = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")
    s.xid += 1
    s.sock.sendall(frame(struct.pack(">ii", s.xid, 1) + ustring(path) + buffer(b"x") + acl
                         + struct.pack(">i", flags)))


def closed_without_reply(s, timeout=10.0):
    """True if the server closes `s` before sending any reply (watch events aside)."""
    s.sock.settimeout(timeout)
    try:
        while True:
            reply = recv_frame(s.sock)
            xid, _zxid, err = struct.unpack(">iqi", reply[:16])
            if xid != -1:
                raise AssertionError(f"answered xid {xid} with {err}")
    except (ConnectionError, socket.timeout, OSError) as e:
        return not isinstance(e, socket.timeout)


@pytest.mark.parametrize("kind", server_kinds())
def test_a_write_through_the_server_a_session_left_is_session_moved(kind):
    e = Ensemble(kind=kind, tick_time=200)
    try:
        e.start()
        leader = e.leader()
        followers = [i for i in e.ids if i != leader]
        port = lambda i: e.ports[i][0]
        checker = RawSession(port(leader))
        for n, (a, b) in enumerate([(followers[0], followers[1]), (leader, followers[0]),
                                    (followers[1], leader)]):
            old = RawSession(port(a))
            old.create(f"/before-{n}")
            # The client resumes its session through server b; the old connection stays
            # open, as a client's does when it moves without closing it.
            new = RawSession(port(b), session_id=old.session_id, passwd=old.passwd)
            assert new.session_id == old.session_id
            send_create(old, f"/stale-{n}")
            assert closed_without_reply(old), (kind, a, b)
            # The session lives on through b: it writes, and owns an ephemeral there.
            new.create(f"/eph-{n}", flags=1)
            checker.request(9, ustring("/"))  # sync
            _xid, _zxid, err, _ = checker.exists(f"/stale-{n}")
            assert err == -101, (kind, n, "the stale write was applied")
            _xid, _zxid, err, body = checker.exists(f"/eph-{n}")
            assert err == 0, (kind, n, err)
            owner = struct.unpack(">q", body[44:52])[0]  # Stat.ephemeralOwner
            assert owner == old.session_id, (kind, n, hex(owner))
            new.close()
            old.close()
        checker.close()
    finally:
        e.cleanup()
