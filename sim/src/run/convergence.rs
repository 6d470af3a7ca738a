//! The convergence step that ends the liveness phase of an ensemble run: one final
//! write through the leader, then wait until every replica holds the same tree at or
//! above it. The judging rule itself is [`crate::judge::convergence`].

use super::*;
use crate::judge::convergence;

/// The path prefix of the final write's PERSISTENT_SEQUENTIAL marker nodes.
const CONVERGE_MARKER: &str = "/converge-";

/// The last step of the liveness phase, for ensembles, once every client was answered
/// again: every replica (participants and observers) must reach the same tree, with the
/// same digest at the same zxid, within [`RunOptions::converge_ms`] of virtual time.
///
/// Method: a quiet ensemble still commits (session expiries and closes), so an agreement
/// seen at one instant could be on an old tree that a replica cut off from the leader
/// happens to share. Instead a fresh session first drives one final write through the
/// leader (a PERSISTENT_SEQUENTIAL create under `/`, outside every checked path) and closes;
/// its zxid is the floor. Then the harness polls each server's latest tree, known from the
/// node's observations (the digest after every commit, and every tree load: start-up
/// recovery, SNAP, TRUNC reload), and passes as soon as every server is running with the
/// same (zxid, digest) at or above the floor: every replica then applied the final write,
/// so it follows the current leader, and their trees are equal. Later commits (the
/// marker session's close, expiries) only delay that instant: they reach every replica in
/// the same order. The harness reads state only; polling on the virtual clock adds no
/// nondeterminism.
///
/// Every server was restarted at the heal, so each must be running. The one exception is
/// a server that refused to start on a disk the plan rotted at rest (a corrupt epoch file
/// or log: fail-stop, as in ZooKeeper, where an operator must restore it); it is excused
/// and named in the notes. A server down for any other reason fails the check.
///
/// Returns the liveness failure, if any: the final write not acknowledged in time, or the
/// replicas not converged, listing every server's (zxid, digest).
pub(super) async fn await_convergence(
    sh: &Shared,
    client: &NodeHandle,
    down_state: impl Fn(usize) -> Option<ReplicaTree>,
    notes: &mut Vec<String>,
) -> Option<(Class, String, String)> {
    let bound = Duration::from_millis(sh.opts.converge_ms());
    let t0 = Instant::now();
    let n = sh.opts.total_servers();
    let mut writer = client.spawn(final_write(Arc::clone(&sh.opts)));
    let floor = match madsim::time::timeout(bound, &mut writer).await {
        Ok(Ok(zxid)) => zxid,
        _ => {
            writer.abort();
            return Some((
                Class::Liveness,
                "converged".into(),
                format!(
                    "the final write was not acknowledged within the convergence bound of {}ms",
                    bound.as_millis()
                ),
            ));
        }
    };
    notes.push(format!(
        "converge: final write committed at zxid {floor:#x} after {}ms",
        t0.elapsed().as_millis()
    ));
    loop {
        let trees: Vec<ReplicaTree> = sh
            .observations
            .latest_trees(n)
            .into_iter()
            .enumerate()
            .map(|(i, t)| match (down_state(i), t) {
                (Some(down), _) => down,
                (None, Some((zxid, digest))) => ReplicaTree::At { zxid, digest },
                (None, None) => ReplicaTree::Unknown,
            })
            .collect();
        match convergence(&trees, floor) {
            Ok((zxid, digest)) => {
                let excused: Vec<String> = trees
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| **t == ReplicaTree::RefusedOnRottedDisk)
                    .map(|(i, _)| format!("s{i}"))
                    .collect();
                notes.push(format!(
                    "converge: {} of {n} replicas at ({zxid:#x}, {digest:016x}) after {}ms{}",
                    n - excused.len(),
                    t0.elapsed().as_millis(),
                    if excused.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; excused (refused to start on a rotted disk): {}",
                            excused.join(",")
                        )
                    }
                ));
                return None;
            }
            Err(detail) if t0.elapsed() >= bound => {
                return Some((
                    Class::Liveness,
                    "converged".into(),
                    format!(
                        "{detail} (within the convergence bound of {}ms after every client was answered)",
                        bound.as_millis()
                    ),
                ))
            }
            Err(_) => madsim::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The convergence step's final write, run on a client node: a fresh session creates a
/// [`CONVERGE_MARKER`] node and closes. Returns the create's zxid. Retries (a new
/// session when the old one is gone) until the caller's bound cancels it.
async fn final_write(opts: Arc<RunOptions>) -> i64 {
    let connect: Vec<String> = (0..opts.total_servers())
        .map(|i| server_addr(i).to_string())
        .collect();
    let connect = connect.join(",");
    let session = Duration::from_millis(opts.session_timeout_ms);
    let timeout = Duration::from_millis(opts.workload.op_timeout_ms);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let seed = opts.seed ^ 0xc04e_e6e5 ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut conn =
            match NodeConn::connect(&connect, session, seed, timeout.max(session), false).await {
                Ok(c) => c,
                Err(_) => {
                    madsim::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
        while !conn.is_dead() {
            let create = conn.create_mode(
                CONVERGE_MARKER,
                "",
                zabkeeper::types::CreateMode::PersistentSequential,
            );
            if let Ok(Ok(Ok((_, zxid)))) = madsim::time::timeout(timeout, create).await {
                let _ = madsim::time::timeout(timeout, conn.close()).await;
                return zxid;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
