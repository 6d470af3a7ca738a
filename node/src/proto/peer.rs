//! Peer (quorum) messages: fast leader election notifications and the ZAB
//! packets exchanged between a leader and its learners, with their codec.
//!
//! A frame is `int length` (big-endian, counting the bytes after it), then a
//! version byte ([`PEER_PROTOCOL_VERSION`]), a type byte (ZooKeeper's
//! `Leader.java` packet numbers where one exists) and the body in jute
//! primitives. Decoding checks every length against the bytes present and
//! against a caller-given frame limit, and never panics.

use bytes::Bytes;

use crate::proto::jute::{JuteError, Reader, Writer};
use crate::types::{SessionId, Zxid};

/// A server id (`myid`).
pub type Sid = u64;

/// A ZAB epoch (the high 32 bits of a zxid).
pub type Epoch = u32;

/// The version byte every frame carries after its length.
pub const PEER_PROTOCOL_VERSION: u8 = 1;

/// Bytes of the frame header: the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// A server's state in fast leader election, as ZooKeeper's `ServerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerState {
    /// Electing a leader.
    Looking,
    /// A voter following the leader.
    Following,
    /// The leader.
    Leading,
    /// A non-voter following the leader.
    Observing,
}

impl ServerState {
    fn code(self) -> u8 {
        match self {
            ServerState::Looking => 0,
            ServerState::Following => 1,
            ServerState::Leading => 2,
            ServerState::Observing => 3,
        }
    }

    fn from_code(c: u8) -> Option<ServerState> {
        Some(match c {
            0 => ServerState::Looking,
            1 => ServerState::Following,
            2 => ServerState::Leading,
            3 => ServerState::Observing,
            _ => return None,
        })
    }

    /// ZooKeeper's upper-case name (`LOOKING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Looking => "LOOKING",
            ServerState::Following => "FOLLOWING",
            ServerState::Leading => "LEADING",
            ServerState::Observing => "OBSERVING",
        }
    }
}

/// A vote in fast leader election: the proposed leader and its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The proposed leader.
    pub leader: Sid,
    /// The proposed leader's last logged zxid.
    pub zxid: Zxid,
    /// The proposed leader's current epoch (`peerEpoch`).
    pub peer_epoch: Epoch,
}

/// An FLE notification: the sender's vote, its election round and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Notification {
    pub vote: Vote,
    /// The sender's logical clock (`electionEpoch`).
    pub election_epoch: u64,
    pub state: ServerState,
}

/// A session touch carried by a learner's PING: the session was active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionTouch {
    pub session: SessionId,
    pub timeout_ms: i32,
}

/// Every message one server sends another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// FLE notification (election port).
    Notification(Notification),
    /// Follower -> leader: first packet, with its accepted epoch and last logged zxid.
    FollowerInfo {
        accepted_epoch: Epoch,
        last_zxid: Zxid,
    },
    /// Observer -> leader: as FOLLOWERINFO, for a non-voting learner.
    ObserverInfo {
        accepted_epoch: Epoch,
        last_zxid: Zxid,
    },
    /// Leader -> learner: the new epoch.
    LeaderInfo { new_epoch: Epoch },
    /// Learner -> leader: the new epoch is durable as accepted epoch; the
    /// learner's current epoch and last logged zxid.
    AckEpoch {
        current_epoch: Epoch,
        last_zxid: Zxid,
    },
    /// Leader -> learner: sync by difference; PROPOSAL/COMMIT packets follow.
    Diff { last_zxid: Zxid },
    /// Leader -> learner: drop log entries above `zxid`; DIFF packets follow.
    Trunc { zxid: Zxid },
    /// Leader -> learner: the leader's tree serialized at `zxid`.
    Snap { zxid: Zxid, snapshot: Bytes },
    /// Leader -> learner: how a SNAP travels (ZooKeeper streams the snapshot after its
    /// SNAP packet): in parts of at most [`SNAP_PART_BYTES`], so that no peer frame
    /// needs to hold a whole tree; `last` ends it. The learner's pipeline joins the
    /// parts of its own leader into the core's [`PeerMessage::Snap`].
    SnapPart { zxid: Zxid, last: bool, part: Bytes },
    /// Leader -> follower: a proposed txn.
    Proposal { zxid: Zxid, payload: Bytes },
    /// Follower -> leader: the txn (or NEWLEADER) `zxid` is durable here.
    Ack { zxid: Zxid },
    /// Leader -> learner: the txns up to `zxid` are committed.
    Commit { zxid: Zxid },
    /// Leader -> observer: a committed txn.
    Inform { zxid: Zxid, payload: Bytes },
    /// Leader -> learner: end of the sync data; `zxid` is `epoch << 32`.
    NewLeader { zxid: Zxid },
    /// Leader -> learner: start serving clients.
    UpToDate,
    /// Heartbeat both ways. The leader's carries its heartbeat `round`; a
    /// learner's echoes the last round it heard and carries its sessions'
    /// touches.
    Ping {
        round: u64,
        touches: Vec<SessionTouch>,
    },
    /// Learner -> leader: a client write to prep and propose.
    Request {
        session: SessionId,
        cxid: i32,
        payload: Bytes,
    },
    /// Learner -> leader: a client's `sync`; the leader answers with
    /// [`PeerMessage::SyncDone`] after every earlier proposal committed.
    Sync { id: u64 },
    /// Leader -> learner: the `sync` with this id is done.
    SyncDone { id: u64 },
}

mod tag {
    pub const REQUEST: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const ACK: u8 = 3;
    pub const COMMIT: u8 = 4;
    pub const PING: u8 = 5;
    pub const SYNC: u8 = 7;
    pub const INFORM: u8 = 8;
    pub const NEWLEADER: u8 = 10;
    pub const FOLLOWERINFO: u8 = 11;
    pub const UPTODATE: u8 = 12;
    pub const DIFF: u8 = 13;
    pub const TRUNC: u8 = 14;
    pub const SNAP: u8 = 15;
    pub const OBSERVERINFO: u8 = 16;
    pub const LEADERINFO: u8 = 17;
    pub const ACKEPOCH: u8 = 18;
    pub const NOTIFICATION: u8 = 100;
    pub const SYNC_DONE: u8 = 101;
    pub const SNAP_PART: u8 = 102;
}

/// The largest part of a SNAP on the wire ([`PeerMessage::SnapPart`]).
pub const SNAP_PART_BYTES: usize = 1 << 20;

/// Why a peer frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCodecError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {declared} does not match the {actual} bytes given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported peer protocol version {0}")]
    Version(u8),
    #[error("unknown peer message type {0}")]
    UnknownType(u8),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error(transparent)]
    Jute(#[from] JuteError),
}

impl PeerMessage {
    /// ZooKeeper's name for the packet type (`PROPOSAL`, `ACKEPOCH`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            PeerMessage::Notification(_) => "NOTIFICATION",
            PeerMessage::FollowerInfo { .. } => "FOLLOWERINFO",
            PeerMessage::ObserverInfo { .. } => "OBSERVERINFO",
            PeerMessage::LeaderInfo { .. } => "LEADERINFO",
            PeerMessage::AckEpoch { .. } => "ACKEPOCH",
            PeerMessage::Diff { .. } => "DIFF",
            PeerMessage::Trunc { .. } => "TRUNC",
            PeerMessage::Snap { .. } => "SNAP",
            PeerMessage::SnapPart { .. } => "SNAP-PART",
            PeerMessage::Proposal { .. } => "PROPOSAL",
            PeerMessage::Ack { .. } => "ACK",
            PeerMessage::Commit { .. } => "COMMIT",
            PeerMessage::Inform { .. } => "INFORM",
            PeerMessage::NewLeader { .. } => "NEWLEADER",
            PeerMessage::UpToDate => "UPTODATE",
            PeerMessage::Ping { .. } => "PING",
            PeerMessage::Request { .. } => "REQUEST",
            PeerMessage::Sync { .. } => "SYNC",
            PeerMessage::SyncDone { .. } => "SYNCDONE",
        }
    }

    /// True for the messages whose correctness depends on the sender's
    /// durable state (ACK, ACKEPOCH). The core only sends these once the
    /// runtime reported the persistence they depend on.
    pub fn requires_durability(&self) -> bool {
        matches!(self, PeerMessage::Ack { .. } | PeerMessage::AckEpoch { .. })
    }

    /// Encodes the message as a complete frame (length prefix included).
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        w.write_int(0); // length, patched below
        w.write_byte(PEER_PROTOCOL_VERSION);
        match self {
            PeerMessage::Notification(n) => {
                w.write_byte(tag::NOTIFICATION);
                w.write_long(n.vote.leader as i64);
                w.write_long(n.vote.zxid);
                w.write_long(n.vote.peer_epoch as i64);
                w.write_long(n.election_epoch as i64);
                w.write_byte(n.state.code());
            }
            PeerMessage::FollowerInfo {
                accepted_epoch,
                last_zxid,
            } => {
                w.write_byte(tag::FOLLOWERINFO);
                w.write_int(*accepted_epoch as i32);
                w.write_long(*last_zxid);
            }
            PeerMessage::ObserverInfo {
                accepted_epoch,
                last_zxid,
            } => {
                w.write_byte(tag::OBSERVERINFO);
                w.write_int(*accepted_epoch as i32);
                w.write_long(*last_zxid);
            }
            PeerMessage::LeaderInfo { new_epoch } => {
                w.write_byte(tag::LEADERINFO);
                w.write_int(*new_epoch as i32);
            }
            PeerMessage::AckEpoch {
                current_epoch,
                last_zxid,
            } => {
                w.write_byte(tag::ACKEPOCH);
                w.write_int(*current_epoch as i32);
                w.write_long(*last_zxid);
            }
            PeerMessage::Diff { last_zxid } => {
                w.write_byte(tag::DIFF);
                w.write_long(*last_zxid);
            }
            PeerMessage::Trunc { zxid } => {
                w.write_byte(tag::TRUNC);
                w.write_long(*zxid);
            }
            PeerMessage::Snap { zxid, snapshot } => {
                w.write_byte(tag::SNAP);
                w.write_long(*zxid);
                w.write_buffer(snapshot);
            }
            PeerMessage::SnapPart { zxid, last, part } => {
                w.write_byte(tag::SNAP_PART);
                w.write_long(*zxid);
                w.write_bool(*last);
                w.write_buffer(part);
            }
            PeerMessage::Proposal { zxid, payload } => {
                w.write_byte(tag::PROPOSAL);
                w.write_long(*zxid);
                w.write_buffer(payload);
            }
            PeerMessage::Ack { zxid } => {
                w.write_byte(tag::ACK);
                w.write_long(*zxid);
            }
            PeerMessage::Commit { zxid } => {
                w.write_byte(tag::COMMIT);
                w.write_long(*zxid);
            }
            PeerMessage::Inform { zxid, payload } => {
                w.write_byte(tag::INFORM);
                w.write_long(*zxid);
                w.write_buffer(payload);
            }
            PeerMessage::NewLeader { zxid } => {
                w.write_byte(tag::NEWLEADER);
                w.write_long(*zxid);
            }
            PeerMessage::UpToDate => w.write_byte(tag::UPTODATE),
            PeerMessage::Ping { round, touches } => {
                w.write_byte(tag::PING);
                w.write_long(*round as i64);
                w.write_vec(touches, |w, t| {
                    w.write_long(t.session);
                    w.write_int(t.timeout_ms);
                });
            }
            PeerMessage::Request {
                session,
                cxid,
                payload,
            } => {
                w.write_byte(tag::REQUEST);
                w.write_long(*session);
                w.write_int(*cxid);
                w.write_buffer(payload);
            }
            PeerMessage::Sync { id } => {
                w.write_byte(tag::SYNC);
                w.write_long(*id as i64);
            }
            PeerMessage::SyncDone { id } => {
                w.write_byte(tag::SYNC_DONE);
                w.write_long(*id as i64);
            }
        }
        let mut buf = w.into_inner();
        let body_len = (buf.len() - FRAME_HEADER_LEN) as u32;
        buf[..FRAME_HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
        buf.freeze()
    }

    /// Reads the length prefix of a frame: `Ok(None)` if fewer than
    /// [`FRAME_HEADER_LEN`] bytes are buffered, else the whole frame's size
    /// (header included), checked against `max_frame`.
    pub fn frame_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, PeerCodecError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let body = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let len = body.saturating_add(FRAME_HEADER_LEN);
        if len > max_frame {
            return Err(PeerCodecError::TooLarge {
                len,
                max: max_frame,
            });
        }
        Ok(Some(len))
    }

    /// Decodes one complete frame (as produced by [`PeerMessage::encode`]).
    pub fn decode(frame: &[u8], max_frame: usize) -> Result<PeerMessage, PeerCodecError> {
        let declared = match PeerMessage::frame_len(frame, max_frame)? {
            Some(n) => n,
            None => {
                return Err(JuteError::Truncated {
                    offset: 0,
                    needed: FRAME_HEADER_LEN - frame.len(),
                }
                .into())
            }
        };
        if declared != frame.len() {
            return Err(PeerCodecError::LengthMismatch {
                declared,
                actual: frame.len(),
            });
        }
        let mut r = Reader::new(&frame[FRAME_HEADER_LEN..]);
        let version = r.read_byte()?;
        if version != PEER_PROTOCOL_VERSION {
            return Err(PeerCodecError::Version(version));
        }
        let t = r.read_byte()?;
        let msg = match t {
            tag::NOTIFICATION => {
                let leader = r.read_long()? as u64;
                let zxid = r.read_long()?;
                let peer_epoch = read_epoch_long(&mut r)?;
                let election_epoch = r.read_long()? as u64;
                let code = r.read_byte()?;
                let state = ServerState::from_code(code)
                    .ok_or_else(|| JuteError::Invalid(format!("server state {code}")))?;
                PeerMessage::Notification(Notification {
                    vote: Vote {
                        leader,
                        zxid,
                        peer_epoch,
                    },
                    election_epoch,
                    state,
                })
            }
            tag::FOLLOWERINFO => PeerMessage::FollowerInfo {
                accepted_epoch: r.read_int()? as u32,
                last_zxid: r.read_long()?,
            },
            tag::OBSERVERINFO => PeerMessage::ObserverInfo {
                accepted_epoch: r.read_int()? as u32,
                last_zxid: r.read_long()?,
            },
            tag::LEADERINFO => PeerMessage::LeaderInfo {
                new_epoch: r.read_int()? as u32,
            },
            tag::ACKEPOCH => PeerMessage::AckEpoch {
                current_epoch: r.read_int()? as u32,
                last_zxid: r.read_long()?,
            },
            tag::DIFF => PeerMessage::Diff {
                last_zxid: r.read_long()?,
            },
            tag::TRUNC => PeerMessage::Trunc {
                zxid: r.read_long()?,
            },
            tag::SNAP => {
                let zxid = r.read_long()?;
                let snapshot = Bytes::copy_from_slice(r.read_buffer()?);
                PeerMessage::Snap { zxid, snapshot }
            }
            tag::SNAP_PART => {
                let zxid = r.read_long()?;
                let last = r.read_bool()?;
                let part = Bytes::copy_from_slice(r.read_buffer()?);
                PeerMessage::SnapPart { zxid, last, part }
            }
            tag::PROPOSAL => {
                let zxid = r.read_long()?;
                PeerMessage::Proposal {
                    zxid,
                    payload: Bytes::copy_from_slice(r.read_buffer()?),
                }
            }
            tag::ACK => PeerMessage::Ack {
                zxid: r.read_long()?,
            },
            tag::COMMIT => PeerMessage::Commit {
                zxid: r.read_long()?,
            },
            tag::INFORM => {
                let zxid = r.read_long()?;
                PeerMessage::Inform {
                    zxid,
                    payload: Bytes::copy_from_slice(r.read_buffer()?),
                }
            }
            tag::NEWLEADER => PeerMessage::NewLeader {
                zxid: r.read_long()?,
            },
            tag::UPTODATE => PeerMessage::UpToDate,
            tag::PING => PeerMessage::Ping {
                round: r.read_long()? as u64,
                touches: r.read_vec(12, |r| {
                    Ok(SessionTouch {
                        session: r.read_long()?,
                        timeout_ms: r.read_int()?,
                    })
                })?,
            },
            tag::REQUEST => {
                let session = r.read_long()?;
                let cxid = r.read_int()?;
                let payload = Bytes::copy_from_slice(r.read_buffer()?);
                PeerMessage::Request {
                    session,
                    cxid,
                    payload,
                }
            }
            tag::SYNC => PeerMessage::Sync {
                id: r.read_long()? as u64,
            },
            tag::SYNC_DONE => PeerMessage::SyncDone {
                id: r.read_long()? as u64,
            },
            other => return Err(PeerCodecError::UnknownType(other)),
        };
        if !r.is_empty() {
            return Err(PeerCodecError::Trailing(r.remaining()));
        }
        Ok(msg)
    }
}

fn read_epoch_long(r: &mut Reader<'_>) -> Result<Epoch, JuteError> {
    let v = r.read_long()?;
    u32::try_from(v).map_err(|_| JuteError::Invalid(format!("epoch {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn samples() -> Vec<PeerMessage> {
        vec![
            PeerMessage::Notification(Notification {
                vote: Vote {
                    leader: 3,
                    zxid: 0x1_0000_0002,
                    peer_epoch: 1,
                },
                election_epoch: 7,
                state: ServerState::Leading,
            }),
            PeerMessage::FollowerInfo {
                accepted_epoch: 2,
                last_zxid: 5,
            },
            PeerMessage::ObserverInfo {
                accepted_epoch: 2,
                last_zxid: 5,
            },
            PeerMessage::LeaderInfo { new_epoch: 3 },
            PeerMessage::AckEpoch {
                current_epoch: 2,
                last_zxid: 5,
            },
            PeerMessage::Diff { last_zxid: 9 },
            PeerMessage::Trunc { zxid: 4 },
            PeerMessage::Snap {
                zxid: 4,
                snapshot: Bytes::from_static(b"tree"),
            },
            PeerMessage::Proposal {
                zxid: 10,
                payload: Bytes::from_static(b"p"),
            },
            PeerMessage::Ack { zxid: 10 },
            PeerMessage::Commit { zxid: 10 },
            PeerMessage::Inform {
                zxid: 10,
                payload: Bytes::new(),
            },
            PeerMessage::NewLeader { zxid: 3 << 32 },
            PeerMessage::UpToDate,
            PeerMessage::Ping {
                round: 4,
                touches: vec![SessionTouch {
                    session: 1,
                    timeout_ms: 30,
                }],
            },
            PeerMessage::Request {
                session: 5,
                cxid: 6,
                payload: Bytes::from_static(b"w"),
            },
            PeerMessage::Sync { id: 1 },
            PeerMessage::SyncDone { id: 1 },
            PeerMessage::SnapPart {
                zxid: 7,
                last: true,
                part: Bytes::from_static(b"tree"),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let frame = m.encode();
            assert_eq!(
                PeerMessage::frame_len(&frame, MAX).unwrap(),
                Some(frame.len())
            );
            assert_eq!(PeerMessage::decode(&frame, MAX).unwrap(), m, "{}", m.name());
        }
    }

    #[test]
    fn frame_header_is_length_then_version_then_type() {
        let f = PeerMessage::Ack { zxid: 1 }.encode();
        assert_eq!(&f[..4], &10u32.to_be_bytes());
        assert_eq!(f[4], PEER_PROTOCOL_VERSION);
        assert_eq!(f[5], 3);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut f = PeerMessage::Commit { zxid: 1 }.encode().to_vec();
        assert!(matches!(
            PeerMessage::decode(&f, 8),
            Err(PeerCodecError::TooLarge { .. })
        ));
        f[4] = 9;
        assert_eq!(
            PeerMessage::decode(&f, MAX),
            Err(PeerCodecError::Version(9))
        );
        f[4] = PEER_PROTOCOL_VERSION;
        f[5] = 99;
        assert_eq!(
            PeerMessage::decode(&f, MAX),
            Err(PeerCodecError::UnknownType(99))
        );
        f.push(0);
        assert!(matches!(
            PeerMessage::decode(&f, MAX),
            Err(PeerCodecError::LengthMismatch { .. })
        ));
        let mut g = PeerMessage::UpToDate.encode().to_vec();
        g.push(1);
        g[3] += 1;
        assert_eq!(
            PeerMessage::decode(&g, MAX),
            Err(PeerCodecError::Trailing(1))
        );
        assert_eq!(PeerMessage::frame_len(&[0, 0], MAX), Ok(None));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PeerMessage::decode(&bytes, MAX);
        }

        #[test]
        fn decode_never_panics_on_valid_headers(
            t in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
            f.push(PEER_PROTOCOL_VERSION);
            f.push(t);
            f.extend_from_slice(&body);
            let _ = PeerMessage::decode(&f, MAX);
        }

        #[test]
        fn proposals_round_trip(zxid in any::<i64>(), payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            let m = PeerMessage::Proposal { zxid, payload: Bytes::from(payload) };
            prop_assert_eq!(PeerMessage::decode(&m.encode(), MAX).unwrap(), m);
        }
    }
}
