"""A minimal raw ZooKeeper wire client for tests that need byte-level control
(hostile frames, sessions that stop pinging, handshakes with chosen fields)."""

import socket
import struct


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def ustring(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def buffer(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def connect_request(timeout_ms=10000, session_id=0, passwd=b"\x00" * 16, last_zxid=0):
    return frame(struct.pack(">iqiq", 0, last_zxid, timeout_ms, session_id) + buffer(passwd) + b"\x00")


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        b = sock.recv(n - len(out))
        if not b:
            raise ConnectionError("closed")
        out += b
    return out


def recv_frame(sock):
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, n)


class RawSession:
    def __init__(self, port, timeout_ms=10000, session_id=0, passwd=b"\x00" * 16, expect_valid=True,
                 last_zxid=0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(connect_request(timeout_ms, session_id, passwd, last_zxid))
        resp = recv_frame(self.sock)
        _proto, self.timeout, self.session_id = struct.unpack(">iiq", resp[:16])
        (plen,) = struct.unpack(">i", resp[16:20])
        self.passwd = resp[20:20 + plen]
        self.xid = 0
        if expect_valid:
            assert self.timeout > 0, "session refused"

    def request(self, opcode, body):
        self.xid += 1
        self.sock.sendall(frame(struct.pack(">ii", self.xid, opcode) + body))
        while True:
            reply = recv_frame(self.sock)
            xid, zxid, err = struct.unpack(">iqi", reply[:16])
            if xid == -1:
                continue  # watch event
            return xid, zxid, err, reply[16:]

    def create(self, path, data=b"", flags=0):
        acl = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")
        xid, zxid, err, body = self.request(1, ustring(path) + buffer(data) + acl + struct.pack(">i", flags))
        assert err == 0, f"create failed with {err}"
        return body

    def exists(self, path):
        return self.request(3, ustring(path) + b"\x00")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def string_vector(items):
    out = struct.pack(">i", len(items))
    for s in items:
        out += ustring(s)
    return out


class WireClient(RawSession):
    """A RawSession that keeps watch events apart from replies."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.events = []  # (type, state, path)
        self.last_zxid = 0

    def _read_until_reply(self, want_xid):
        while True:
            reply = recv_frame(self.sock)
            xid, zxid, err = struct.unpack(">iqi", reply[:16])
            if xid == -1:
                etype, state = struct.unpack(">ii", reply[16:24])
                (plen,) = struct.unpack(">i", reply[24:28])
                self.events.append((etype, state, reply[28:28 + plen].decode()))
                if want_xid is None:
                    return None
                continue
            if zxid > 0:
                self.last_zxid = max(self.last_zxid, zxid)
            if want_xid is None or xid == want_xid:
                return xid, zxid, err, reply[16:]

    def call(self, opcode, body, xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.sock.sendall(frame(struct.pack(">ii", xid, opcode) + body))
        return self._read_until_reply(xid)

    def get_data(self, path, watch=False):
        return self.call(4, ustring(path) + (b"\x01" if watch else b"\x00"))

    def exists(self, path, watch=False):
        return self.call(3, ustring(path) + (b"\x01" if watch else b"\x00"))

    def get_children(self, path, watch=False):
        return self.call(8, ustring(path) + (b"\x01" if watch else b"\x00"))

    def set_watches(self, relative_zxid, data=(), exist=(), child=()):
        body = struct.pack(">q", relative_zxid) + string_vector(data) + string_vector(exist) + string_vector(child)
        return self.call(101, body, xid=-8)

    def set_watches2(self, relative_zxid, data=(), exist=(), child=(), persistent=(), recursive=()):
        body = (struct.pack(">q", relative_zxid) + string_vector(data) + string_vector(exist)
                + string_vector(child) + string_vector(persistent) + string_vector(recursive))
        return self.call(105, body, xid=-8)

    def wait_events(self, n, timeout=10.0):
        import time as _t
        deadline = _t.time() + timeout
        self.sock.settimeout(0.2)
        try:
            while len(self.events) < n and _t.time() < deadline:
                try:
                    self._read_until_reply(None)
                except socket.timeout:
                    pass
        finally:
            self.sock.settimeout(10)
        return self.events
