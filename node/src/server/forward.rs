//! The learner-to-leader codec of a forwarded write (ZooKeeper's `Request` inside a
//! QuorumPacket REQUEST): session creation and close, or a client request body with the
//! sender's auth ids (`QuorumPacket.authinfo`).

use bytes::Bytes;

use crate::proto::jute::{JuteError, Reader, Writer};
use crate::types::Id;

/// A write forwarded from a learner to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forwarded {
    CreateSession {
        timeout_ms: i32,
    },
    CloseSession,
    /// The session was resumed through the sender (ZooKeeper's `setOwner` when a
    /// learner's REVALIDATE succeeds): the leader takes its later writes through the
    /// sender only. Nothing is proposed.
    SetOwner,
    /// A client request body (without its header) and the sender's auth ids.
    Client {
        opcode: i32,
        auth: Vec<Id>,
        body: Vec<u8>,
    },
}

impl Forwarded {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        match self {
            Forwarded::CreateSession { timeout_ms } => {
                w.write_int(1);
                w.write_int(*timeout_ms);
            }
            Forwarded::CloseSession => w.write_int(2),
            Forwarded::SetOwner => w.write_int(4),
            Forwarded::Client { opcode, auth, body } => {
                w.write_int(3);
                w.write_int(*opcode);
                w.write_vec(auth, |w, id| w.write_id(id));
                w.write_buffer(body);
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Forwarded, JuteError> {
        let mut r = Reader::new(bytes);
        let f = match r.read_int()? {
            1 => Forwarded::CreateSession {
                timeout_ms: r.read_int()?,
            },
            2 => Forwarded::CloseSession,
            4 => Forwarded::SetOwner,
            3 => Forwarded::Client {
                opcode: r.read_int()?,
                auth: r.read_vec(8, |r| r.read_id())?,
                body: r.read_buffer()?.to_vec(),
            },
            k => return Err(JuteError::Invalid(format!("unknown forwarded kind {k}"))),
        };
        if !r.is_empty() {
            return Err(JuteError::Invalid(
                "trailing bytes after a forwarded request".into(),
            ));
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_round_trip_and_hostile_bytes() {
        let cases = vec![
            Forwarded::CreateSession { timeout_ms: 4000 },
            Forwarded::CloseSession,
            Forwarded::SetOwner,
            Forwarded::Client {
                opcode: 1,
                auth: vec![Id::new("digest", "bob:x")],
                body: vec![1, 2, 3],
            },
        ];
        for f in cases {
            assert_eq!(Forwarded::decode(&f.encode()).unwrap(), f);
        }
        assert!(Forwarded::decode(&[0, 0, 0, 9]).is_err());
        assert!(Forwarded::decode(&[0, 0, 0, 3, 0]).is_err());
        let mut long = Forwarded::CloseSession.encode().to_vec();
        long.push(0);
        assert!(Forwarded::decode(&long).is_err());
    }
}
