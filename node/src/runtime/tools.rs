//! Operator tools: `zabkeeper dump-log FILE` and `zabkeeper dump-snapshot FILE`.

use std::io::Write;
use std::path::Path;

use crate::state::txn::Txn;
use crate::storage::{dump, format, Fs, RealFs};

/// Prints every txn of a log file, then how the file ends.
pub fn dump_log_file(path: &Path) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let decode = |bytes: &[u8]| match Txn::decode(bytes) {
        Ok(txn) => format!(
            "session 0x{:x} cxid 0x{:x} time {} {:?}",
            txn.session, txn.cxid, txn.time, txn.body
        ),
        Err(e) => format!("<undecodable txn: {e}>"),
    };
    let summary = dump::dump_log(&RealFs, path, &mut out, &decode)?;
    out.flush()?;
    if !summary.clean {
        anyhow::bail!("{} does not end cleanly (see above)", path.display());
    }
    Ok(())
}

/// Prints a snapshot's header, sessions and every znode with its stat.
pub fn dump_snapshot_file(path: &Path) -> anyhow::Result<()> {
    let data = RealFs.read(path)?;
    let (zxid, body) = format::decode_snapshot(&data)
        .map_err(|e| anyhow::anyhow!("{}: invalid snapshot: {e}", path.display()))?;
    let (tree, sessions) = super::recovery::decode_snapshot(body)
        .map_err(|e| anyhow::anyhow!("{}: unreadable snapshot body: {e}", path.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "snapshot {} at zxid 0x{zxid:x}", path.display())?;
    writeln!(out, "sessions ({}):", sessions.len())?;
    for (id, timeout) in &sessions {
        writeln!(out, "  0x{id:x} timeout {timeout} ms")?;
    }
    writeln!(
        out,
        "znodes ({}), digest 0x{:x}:",
        tree.node_count(),
        tree.digest()
    )?;
    for p in tree.paths() {
        if let Some(node) = tree.node(p) {
            let s = node.stat();
            writeln!(
                out,
                "  {p} czxid=0x{:x} mzxid=0x{:x} pzxid=0x{:x} version={} cversion={} aversion={} \
                 ephemeralOwner=0x{:x} dataLength={} numChildren={}",
                s.czxid,
                s.mzxid,
                s.pzxid,
                s.version,
                s.cversion,
                s.aversion,
                s.ephemeral_owner,
                s.data_length,
                s.num_children
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
