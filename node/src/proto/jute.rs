//! Jute primitives: ZooKeeper's record serialization.
//!
//! All integers are big-endian. `buffer` and `ustring` are an `int` length
//! (-1 for null) followed by the bytes; a `vector` is an `int` count (-1 for
//! null) followed by its elements; `boolean` is one byte.
//!
//! Decoding never panics: every read is bounds-checked and returns
//! [`JuteError`] on truncated or malformed input, and every length is
//! checked against the bytes actually left before anything is allocated.

use bytes::{BufMut, BytesMut};

use crate::types::{Acl, Id, Stat};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteError {
    #[error("truncated record: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("invalid length {len} at offset {offset}")]
    BadLength { offset: usize, len: i32 },
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// Reads jute primitives from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        if self.remaining() < n {
            return Err(JuteError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_bool(&mut self) -> Result<bool, JuteError> {
        Ok(self.take(1)?[0] != 0)
    }

    pub fn read_byte(&mut self) -> Result<u8, JuteError> {
        Ok(self.take(1)?[0])
    }

    pub fn read_int(&mut self) -> Result<i32, JuteError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_long(&mut self) -> Result<i64, JuteError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length prefix; `None` for -1 (null). The length is checked against
    /// the remaining input times `min_elem_size` before anyone allocates.
    fn read_len(&mut self, min_elem_size: usize) -> Result<Option<usize>, JuteError> {
        let offset = self.pos;
        let len = self.read_int()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(JuteError::BadLength { offset, len });
        }
        let len_us = len as usize;
        if len_us.saturating_mul(min_elem_size.max(1)) > self.remaining() && min_elem_size > 0 {
            return Err(JuteError::BadLength { offset, len });
        }
        Ok(Some(len_us))
    }

    /// A `buffer`; null reads as `None`.
    pub fn read_buffer_opt(&mut self) -> Result<Option<&'a [u8]>, JuteError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?)),
        }
    }

    /// A `buffer`; null reads as empty.
    pub fn read_buffer(&mut self) -> Result<&'a [u8], JuteError> {
        Ok(self.read_buffer_opt()?.unwrap_or(&[]))
    }

    /// A `ustring`; null reads as `None`. Bytes that are not UTF-8 become U+FFFD, as
    /// Java's `new String(bytes, UTF_8)` in ZooKeeper's jute makes them.
    pub fn read_string_opt(&mut self) -> Result<Option<String>, JuteError> {
        Ok(self
            .read_buffer_opt()?
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// A `ustring`; null reads as empty.
    pub fn read_string(&mut self) -> Result<String, JuteError> {
        Ok(self.read_string_opt()?.unwrap_or_default())
    }

    /// A `vector`, each element read by `f`; null reads as empty.
    /// `min_elem_size` is the smallest encoding of one element, used to
    /// reject counts larger than the input could hold.
    pub fn read_vec<T>(
        &mut self,
        min_elem_size: usize,
        mut f: impl FnMut(&mut Reader<'a>) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        match self.read_len(min_elem_size)? {
            None => Ok(Vec::new()),
            Some(n) => {
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    v.push(f(self)?);
                }
                Ok(v)
            }
        }
    }

    pub fn read_string_vec(&mut self) -> Result<Vec<String>, JuteError> {
        self.read_vec(4, |r| r.read_string())
    }

    pub fn read_id(&mut self) -> Result<Id, JuteError> {
        Ok(Id {
            scheme: self.read_string()?,
            id: self.read_string()?,
        })
    }

    pub fn read_acl(&mut self) -> Result<Acl, JuteError> {
        Ok(Acl {
            perms: self.read_int()?,
            id: self.read_id()?,
        })
    }

    pub fn read_acl_vec(&mut self) -> Result<Vec<Acl>, JuteError> {
        self.read_vec(12, |r| r.read_acl())
    }

    pub fn read_stat(&mut self) -> Result<Stat, JuteError> {
        Ok(Stat {
            czxid: self.read_long()?,
            mzxid: self.read_long()?,
            ctime: self.read_long()?,
            mtime: self.read_long()?,
            version: self.read_int()?,
            cversion: self.read_int()?,
            aversion: self.read_int()?,
            ephemeral_owner: self.read_long()?,
            data_length: self.read_int()?,
            num_children: self.read_int()?,
            pzxid: self.read_long()?,
        })
    }

    /// ZooKeeper's `StatPersisted`: a [`Stat`] without its derived `dataLength` and
    /// `numChildren` (read as 0), as snapshots store it.
    pub fn read_stat_persisted(&mut self) -> Result<Stat, JuteError> {
        Ok(Stat {
            czxid: self.read_long()?,
            mzxid: self.read_long()?,
            ctime: self.read_long()?,
            mtime: self.read_long()?,
            version: self.read_int()?,
            cversion: self.read_int()?,
            aversion: self.read_int()?,
            ephemeral_owner: self.read_long()?,
            pzxid: self.read_long()?,
            data_length: 0,
            num_children: 0,
        })
    }

    /// The rest of the input, consumed.
    pub fn read_rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Writes jute primitives into a growable buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            buf: BytesMut::new(),
        }
    }

    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: BytesMut::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> bytes::Bytes {
        self.buf.freeze()
    }

    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Overwrites the int written at byte `at` (a length known only after what follows
    /// it was written). Panics if no int was written there.
    pub fn patch_int(&mut self, at: usize, v: i32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.put_u8(v as u8);
    }

    pub fn write_byte(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub fn write_int(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn write_long(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    pub fn write_buffer(&mut self, v: &[u8]) {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v);
    }

    /// A null-able buffer: `None` is written as length -1.
    pub fn write_buffer_opt(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.buf.put_i32(-1),
            Some(b) => self.write_buffer(b),
        }
    }

    pub fn write_string(&mut self, v: &str) {
        self.write_buffer(v.as_bytes());
    }

    pub fn write_vec<T>(&mut self, v: &[T], mut f: impl FnMut(&mut Writer, &T)) {
        self.buf.put_i32(v.len() as i32);
        for e in v {
            f(self, e);
        }
    }

    pub fn write_string_vec(&mut self, v: &[String]) {
        self.write_vec(v, |w, s| w.write_string(s));
    }

    pub fn write_id(&mut self, v: &Id) {
        self.write_string(&v.scheme);
        self.write_string(&v.id);
    }

    pub fn write_acl(&mut self, v: &Acl) {
        self.write_int(v.perms);
        self.write_id(&v.id);
    }

    pub fn write_acl_vec(&mut self, v: &[Acl]) {
        self.write_vec(v, |w, a| w.write_acl(a));
    }

    pub fn write_stat(&mut self, s: &Stat) {
        self.write_long(s.czxid);
        self.write_long(s.mzxid);
        self.write_long(s.ctime);
        self.write_long(s.mtime);
        self.write_int(s.version);
        self.write_int(s.cversion);
        self.write_int(s.aversion);
        self.write_long(s.ephemeral_owner);
        self.write_int(s.data_length);
        self.write_int(s.num_children);
        self.write_long(s.pzxid);
    }

    /// ZooKeeper's `StatPersisted`: see [`Reader::read_stat_persisted`].
    pub fn write_stat_persisted(&mut self, s: &Stat) {
        self.write_long(s.czxid);
        self.write_long(s.mzxid);
        self.write_long(s.ctime);
        self.write_long(s.mtime);
        self.write_int(s.version);
        self.write_int(s.cversion);
        self.write_int(s.aversion);
        self.write_long(s.ephemeral_owner);
        self.write_long(s.pzxid);
    }

    pub fn write_raw(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.write_int(-5);
        w.write_long(1 << 40);
        w.write_bool(true);
        w.write_string("héllo");
        w.write_buffer_opt(None);
        w.write_string_vec(&["a".into(), "bc".into()]);
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            version: 4,
            ..Stat::default()
        };
        w.write_stat(&stat);
        w.write_acl_vec(&Acl::open_unsafe());
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(r.read_int().unwrap(), -5);
        assert_eq!(r.read_long().unwrap(), 1 << 40);
        assert!(r.read_bool().unwrap());
        assert_eq!(r.read_string().unwrap(), "héllo");
        assert_eq!(r.read_buffer_opt().unwrap(), None);
        assert_eq!(
            r.read_string_vec().unwrap(),
            vec!["a".to_string(), "bc".to_string()]
        );
        assert_eq!(r.read_stat().unwrap(), stat);
        assert_eq!(r.read_acl_vec().unwrap(), Acl::open_unsafe());
        assert!(r.is_empty());
    }

    #[test]
    fn stat_is_68_bytes_big_endian() {
        let mut w = Writer::new();
        w.write_stat(&Stat {
            czxid: 0x0102,
            ..Stat::default()
        });
        assert_eq!(w.len(), 68);
        assert_eq!(&w.as_slice()[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        // A vector claiming 2^31-1 elements in a 4-byte input.
        let b = i32::MAX.to_be_bytes();
        assert!(matches!(
            Reader::new(&b).read_string_vec(),
            Err(JuteError::BadLength { .. })
        ));
        // A negative length other than -1.
        let b = (-7i32).to_be_bytes();
        assert!(matches!(
            Reader::new(&b).read_buffer(),
            Err(JuteError::BadLength { .. })
        ));
        // Truncated input.
        assert!(matches!(
            Reader::new(&[0, 0]).read_int(),
            Err(JuteError::Truncated { .. })
        ));
        // Invalid UTF-8 becomes U+FFFD, as in Java.
        let mut w = Writer::new();
        w.write_buffer(b"/a\xff\xfeb");
        assert_eq!(
            Reader::new(w.as_slice()).read_string().unwrap(),
            "/a\u{fffd}\u{fffd}b"
        );
    }
}
