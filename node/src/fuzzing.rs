//! The fuzz targets, one function per input format, shared by the coverage-guided
//! fuzzers (`fuzz/`, `make fuzz`, cargo-afl with AFL++ on the stable toolchain) and by
//! `cargo test`, which replays every corpus file and a seeded stream of mutations of
//! them (`node/tests/fuzz_corpora.rs`).
//!
//! Each takes arbitrary bytes and must neither panic, nor hang, nor allocate beyond what
//! its input holds (every length is checked against the bytes that remain). Where a
//! format has an encoder, what decodes is encoded again and must decode to the same
//! value.

use bytes::BytesMut;

use crate::config::{parse_properties, ServerConfig};
use crate::proto::client::{
    decode_frame, decode_request, four_letter_word, ConnectRequest, Request,
};
use crate::proto::jute::Reader;
use crate::proto::peer::PeerMessage;
use crate::runtime::peer::{decode_handshake, HANDSHAKE_LEN};
use crate::server::forward::Forwarded;
use crate::state::txn::Txn;
use crate::storage::{format, zookeeper};

/// A fuzz target: arbitrary bytes in, a panic if something is wrong.
pub type Target = fn(&[u8]);

/// The targets by name, as `make fuzz` and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("client", client),
    ("peer", peer),
    ("storage", storage),
    ("config", config),
    ("import", import),
];

/// Bytes from a client: the four-letter-word sniff, framing, the ConnectRequest, and
/// every request record by its opcode (multi included).
pub fn client(data: &[u8]) {
    if let Some(first4) = data.get(..4) {
        let _ = four_letter_word(first4.try_into().expect("four bytes"));
    }
    let mut buf = BytesMut::from(data);
    let mut first = true;
    while let Ok(Some(frame)) = decode_frame(&mut buf, 1 << 20) {
        if first {
            first = false;
            if let Ok(c) = ConnectRequest::decode(&frame) {
                let again = c.encode();
                assert_eq!(ConnectRequest::decode(&again[4..]).as_ref(), Ok(&c));
            }
        }
        if let Ok((header, request)) = decode_request(&frame) {
            if matches!(request, Request::Unknown { .. }) {
                continue;
            }
            let again = request.encode(header.xid);
            let (h2, r2) = decode_request(&again[4..]).expect("an encoded request decodes");
            assert_eq!((h2.xid, h2.opcode), (header.xid, header.opcode));
            assert_eq!(r2, request);
        }
    }
}

/// Bytes from a peer: the 16-byte handshake, frame lengths, every peer message, and the
/// learner-to-leader forwarded request inside a REQUEST.
pub fn peer(data: &[u8]) {
    if let Some(h) = data.get(..HANDSHAKE_LEN) {
        let _ = decode_handshake(h.try_into().expect("handshake length"));
    }
    const MAX: usize = 4 << 20;
    let _ = PeerMessage::frame_len(data, MAX);
    if let Ok(m) = PeerMessage::decode(data, MAX) {
        let again = m.encode();
        assert_eq!(PeerMessage::decode(&again, MAX).as_ref(), Ok(&m));
        if let PeerMessage::Request { payload, .. } = &m {
            forwarded(payload);
        }
    }
    forwarded(data);
}

fn forwarded(data: &[u8]) {
    if let Ok(f) = Forwarded::decode(data) {
        assert_eq!(Forwarded::decode(&f.encode()).as_ref(), Ok(&f));
    }
}

/// Bytes from disk: a txn log (scanned as recovery scans it, every record's txn
/// decoded), a snapshot file (frame, then the tree), an epoch file, a bare txn.
pub fn storage(data: &[u8]) {
    let _ = format::check_log_header(data);
    let _ = format::is_torn_log_header(data);
    let _ = format::scan_log(data);
    let mut offset = format::LOG_HEADER_LEN.min(data.len());
    while let Ok(rec) = format::decode_record(data, offset) {
        let _ = Txn::decode(rec.payload(data));
        let end = rec.end() as usize;
        if end <= offset {
            break;
        }
        offset = end;
    }
    if let Ok((_, body)) = format::decode_snapshot(data) {
        let _ = crate::runtime::recovery::decode_snapshot(body);
    }
    let _ = crate::runtime::recovery::decode_snapshot(data);
    let _ = format::decode_epoch(data);
    if let Ok(t) = Txn::decode(data) {
        assert_eq!(Txn::decode(&t.encode()).as_ref(), Ok(&t));
    }
}

/// A zoo.cfg (and its dynamic file's lines): Java-properties parsing and every key's
/// checks.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(props) = parse_properties("zoo.cfg", &text) {
        let _ = ServerConfig::from_properties(&props);
    }
}

/// Apache ZooKeeper's own files, read by `zabkeeper import`: a snapshot, a txn log, a
/// txn in ZooKeeper's encoding.
pub fn import(data: &[u8]) {
    let _ = zookeeper::parse_snapshot(data);
    let _ = zookeeper::parse_log(data);
    let _ = Txn::decode_zookeeper(data);
    let mut r = Reader::new(data);
    let _ = r.read_string();
}
