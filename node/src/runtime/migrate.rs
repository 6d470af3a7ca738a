//! `zabkeeper import`: an Apache ZooKeeper 3.x data directory in, a zabkeeper data
//! directory out, holding the same tree (data, ACLs, stats), sessions and last zxid;
//! `zabkeeper export` the other way, for a roll-back.
//!
//! As ZooKeeper's own start-up does: the newest snapshot that reads back whole (older
//! ones if a newer is damaged), then every logged txn after it, in zxid order; a gap
//! in the zxids refuses the import. The output is one zabkeeper snapshot at the last
//! zxid and the epochs, so a zabkeeper server started on it serves that state.

use std::path::{Path, PathBuf};

use crate::runtime::recovery::{encode_frozen, replay};
use crate::state::tree::DataTree;
use crate::state::txn::TxnBody;
use crate::storage::zookeeper::{self, parse_log, parse_snapshot, zxid_of_file};
use crate::storage::{FileStorage, FileStorageOptions, RealFs, Storage};
use crate::types::{zxid_epoch, Acl, SessionId, Stat, Zxid};

/// What an import read and wrote.
#[derive(Debug)]
pub struct ImportReport {
    pub snapshot: Option<PathBuf>,
    pub logs: usize,
    pub txns_replayed: usize,
    pub znodes: usize,
    pub sessions: usize,
    pub zxid: Zxid,
    pub epoch: u32,
}

/// ZooKeeper keeps its files in `<dir>/version-2`; accept that directory itself too.
fn version_dir(dir: &Path) -> PathBuf {
    let v2 = dir.join("version-2");
    if v2.is_dir() {
        v2
    } else {
        dir.to_path_buf()
    }
}

/// The files of `dir` named `<prefix>.<hex zxid>`, by zxid.
fn files(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(Zxid, PathBuf)>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
    {
        let entry = entry?;
        if let Some(z) = entry
            .file_name()
            .to_str()
            .and_then(|n| zxid_of_file(n, prefix))
        {
            out.push((z, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn read_epoch(dir: &Path, name: &str) -> anyhow::Result<Option<u32>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().parse().map_err(|_| {
            anyhow::anyhow!("{}: not an epoch number: {:?}", path.display(), text.trim())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Imports `zk_data_dir` (and `zk_log_dir`, ZooKeeper's dataLogDir, when it differs)
/// into the empty zabkeeper data directory of `out`.
pub fn import_zookeeper(
    zk_data_dir: &Path,
    zk_log_dir: Option<&Path>,
    out: FileStorageOptions,
) -> anyhow::Result<ImportReport> {
    let snap_dir = version_dir(zk_data_dir);
    let log_dir = version_dir(zk_log_dir.unwrap_or(zk_data_dir));
    let snapshots = files(&snap_dir, "snapshot")?;
    let logs = files(&log_dir, "log")?;
    if snapshots.is_empty() && logs.is_empty() {
        anyhow::bail!(
            "{} holds no ZooKeeper snapshot.* or log.* files",
            snap_dir.display()
        );
    }

    // The newest snapshot that reads back whole, as ZooKeeper's FileSnap.deserialize.
    let mut start = None;
    for (zxid, path) in snapshots.iter().rev() {
        let bytes = std::fs::read(path)?;
        match parse_snapshot(&bytes) {
            Ok(s) => {
                start = Some((*zxid, path.clone(), s));
                break;
            }
            Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
        }
    }
    let (mut tree, mut sessions, snapshot) = match start {
        Some((zxid, path, s)) => {
            let mut nodes = s.nodes;
            // ZooKeeper before 3.5 has no /zookeeper/config; zabkeeper's tree needs it.
            if !nodes
                .iter()
                .any(|n| n.0 == crate::state::tree::CONFIG_ZOOKEEPER)
            {
                let stat = Stat::default();
                nodes.push((
                    crate::state::tree::CONFIG_ZOOKEEPER.to_string(),
                    Some(bytes::Bytes::new()),
                    Acl::open_unsafe(),
                    stat,
                ));
            }
            let tree = DataTree::from_persisted(zxid, nodes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let sessions: std::collections::BTreeMap<SessionId, i32> =
                s.sessions.into_iter().collect();
            (tree, sessions, Some(path))
        }
        None => {
            if !snapshots.is_empty() {
                anyhow::bail!("no snapshot in {} reads back whole", snap_dir.display());
            }
            (DataTree::new(), Default::default(), None)
        }
    };

    // Every logged txn after the snapshot, in zxid order, without gaps.
    let mut replayed = 0;
    let mut last = tree.last_processed_zxid();
    for (_, path) in &logs {
        let bytes = std::fs::read(path)?;
        let txns = parse_log(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for mut txn in txns {
            if txn.zxid <= last {
                continue;
            }
            let follows = last == 0
                || txn.zxid == last + 1
                || (zxid_epoch(txn.zxid) > zxid_epoch(last) && txn.zxid & 0xffff_ffff == 1);
            if !follows {
                anyhow::bail!(
                    "{}: txn 0x{:x} does not follow 0x{last:x}: a log file is missing",
                    path.display(),
                    txn.zxid
                );
            }
            // A closeSession written without its list deletes what the session owns.
            if let TxnBody::CloseSession { ephemerals } = &mut txn.body {
                if ephemerals.is_empty() {
                    *ephemerals = tree.ephemerals(txn.session);
                }
            }
            replay(&mut tree, &mut sessions, &txn);
            last = txn.zxid;
            replayed += 1;
        }
    }
    tree.set_last_processed_zxid(last);

    let zk_epoch = read_epoch(&snap_dir, "currentEpoch")?
        .into_iter()
        .chain(read_epoch(&snap_dir, "acceptedEpoch")?)
        .max()
        .unwrap_or(0);
    let epoch = zk_epoch.max(zxid_epoch(last));

    for dir in [
        out.data_dir.join("version-2"),
        out.data_log_dir.join("version-2"),
    ] {
        refuse_non_empty(&dir, "import into a fresh data dir")?;
    }
    let mut storage = FileStorage::open(RealFs, out)
        .map_err(|e| anyhow::anyhow!("cannot open the output data dir: {e}"))?;
    let sessions: Vec<(SessionId, i32)> = sessions.into_iter().collect();
    let snapshot_bytes = encode_frozen(&tree.freeze(), &sessions);
    storage.write_snapshot(last, &snapshot_bytes)?;
    storage.set_accepted_epoch(epoch)?;
    storage.set_current_epoch(epoch)?;
    Ok(ImportReport {
        snapshot,
        logs: logs.len(),
        txns_replayed: replayed,
        znodes: tree.node_count(),
        sessions: sessions.len(),
        zxid: last,
        epoch,
    })
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportReport {
    pub snapshot: PathBuf,
    pub znodes: usize,
    pub sessions: usize,
    pub zxid: Zxid,
    pub epoch: u32,
}

/// Writes the state of the zabkeeper data dir `from` (a stopped server's) as an Apache
/// ZooKeeper 3.x data dir in the empty `zk_data_dir`: one `snapshot.<zxid>` and the
/// epoch files, which ZooKeeper 3.8 starts from (standalone, or as the member with the
/// newest state of an ensemble).
pub fn export_zookeeper(
    from: FileStorageOptions,
    zk_data_dir: &Path,
) -> anyhow::Result<ExportReport> {
    let mut storage = FileStorage::open(RealFs, from)
        .map_err(|e| anyhow::anyhow!("cannot open the zabkeeper data dir: {e}"))?;
    let recovered = crate::runtime::recovery::recover(&mut storage)
        .map_err(|e| anyhow::anyhow!("cannot recover the zabkeeper data dir: {e}"))?;
    let epochs = storage.epochs();
    let tree = recovered.tree;
    let zxid = tree.last_processed_zxid();
    let out = zk_data_dir.join("version-2");
    refuse_non_empty(&out, "export into a fresh directory")?;
    std::fs::create_dir_all(&out)?;
    let nodes: Vec<_> = tree
        .nodes()
        .map(|(p, n)| {
            (
                p.as_str(),
                n.data_opt().map(|d| d.as_ref()),
                n.acl(),
                n.stat(),
            )
        })
        .collect();
    let bytes = zookeeper::write_snapshot(&recovered.sessions, nodes.iter().cloned());
    let snapshot = out.join(format!("snapshot.{zxid:x}"));
    write_durably(&snapshot, &bytes)?;
    let epoch = epochs.current_epoch.max(zxid_epoch(zxid));
    write_durably(
        &out.join("acceptedEpoch"),
        epochs.accepted_epoch.max(epoch).to_string().as_bytes(),
    )?;
    write_durably(&out.join("currentEpoch"), epoch.to_string().as_bytes())?;
    std::fs::File::open(&out)?.sync_all()?;
    Ok(ExportReport {
        snapshot,
        znodes: tree.node_count(),
        sessions: recovered.sessions.len(),
        zxid,
        epoch,
    })
}

/// Refuses to write into `dir` when it holds anything already.
fn refuse_non_empty(dir: &Path, advice: &str) -> anyhow::Result<()> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!("{} is not empty: {advice}", dir.display());
    }
    Ok(())
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
