//! The per-node digest summed into [`DataTree::digest`](super::DataTree::digest).

use super::*;

/// FNV-1a over a canonical encoding of one node (its data by length and kept hash), finished with a
/// SplitMix64 mix so that the wrapping sum over nodes spreads well.
/// `/zookeeper/config` counts as 0: each server writes it locally (as
/// ZooKeeper's digest also leaves it out).
pub(super) fn node_digest(path: &str, n: &DataNode) -> u64 {
    if path == CONFIG_ZOOKEEPER {
        return 0;
    }
    let mut h = crate::hash::Fnv64::new();
    h.bytes(path.as_bytes());
    h.u64(n.data.len() as u64);
    h.u64(n.data_hash);
    if n.null {
        // Null data differs from empty data (only here: older trees keep their digest).
        h.u64(u64::MAX);
    }
    h.u64(n.acl.len() as u64);
    for a in n.acl.iter() {
        h.u64(a.perms as u32 as u64);
        h.bytes(a.id.scheme.as_bytes());
        h.bytes(a.id.id.as_bytes());
    }
    let s = &n.stat;
    for v in [
        s.czxid,
        s.mzxid,
        s.ctime,
        s.mtime,
        s.ephemeral_owner,
        s.pzxid,
    ] {
        h.u64(v as u64);
    }
    for v in [
        s.version,
        s.cversion,
        s.aversion,
        s.data_length,
        s.num_children,
    ] {
        h.u64(v as u32 as u64);
    }
    splitmix64(h.finish())
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
