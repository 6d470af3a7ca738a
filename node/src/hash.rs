//! The one stable hash of the code base: 64-bit FNV-1a, deterministic on every platform
//! and in every process (std's hasher is randomly keyed per process). It names txns in
//! the observation hook ([`crate::server::observe::txn_hash`]), feeds the tree digest
//! ([`crate::state`]) and derives the simulator's per-scenario seeds.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    for &b in bytes {
        h.byte(b);
    }
    h.finish()
}

/// A running FNV-1a over fields (for canonical encodings of structured values).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

impl Fnv64 {
    /// The empty hash.
    pub fn new() -> Fnv64 {
        Fnv64(OFFSET)
    }

    /// Feed one byte.
    pub fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(PRIME);
    }

    /// Feed a u64, big-endian.
    pub fn u64(&mut self, v: u64) {
        for b in v.to_be_bytes() {
            self.byte(b);
        }
    }

    /// Feed bytes, length-prefixed so that field boundaries are unambiguous.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        for &x in b {
            self.byte(x);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
        assert_ne!(fnv1a(b"ab"), fnv1a(b"ba"));
    }

    #[test]
    fn length_prefixes_separate_fields() {
        let (mut a, mut b) = (Fnv64::new(), Fnv64::new());
        a.bytes(b"ab");
        a.bytes(b"c");
        b.bytes(b"a");
        b.bytes(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
