use super::*;
use crate::state::txn::{ttl_ephemeral_owner, CONTAINER_EPHEMERAL_OWNER};

const T0: i64 = 1_700_000_000_000;

fn txn(zxid: Zxid, body: TxnBody) -> Txn {
    Txn {
        zxid,
        time: T0 + zxid,
        session: 0x11,
        cxid: zxid as i32,
        body,
    }
}

fn create(path: &str, owner: i64, parent_cversion: i32) -> TxnBody {
    TxnBody::Create {
        path: path.into(),
        data: Some(path.as_bytes().to_vec()),
        acl: Acl::open_unsafe(),
        ephemeral_owner: owner,
        parent_cversion,
    }
}

fn apply_ok(t: &mut DataTree, zxid: Zxid, body: TxnBody) -> ApplyOutcome {
    let out = t.apply(&txn(zxid, body));
    assert!(out.result.is_ok(), "{out:?}");
    t.check_invariants().unwrap();
    out
}

#[test]
fn starts_like_zookeeper() {
    let t = DataTree::new();
    assert_eq!(
        t.paths().collect::<Vec<_>>(),
        vec!["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]
    );
    assert_eq!(t.get_children("/").unwrap().0, vec!["zookeeper"]);
    assert_eq!(
        t.get_children("/zookeeper").unwrap().0,
        vec!["config", "quota"]
    );
    // As the running ZooKeeper shows it: no creates yet and one child, so
    // cversion 2 x 0 - 1.
    let root = t.stat("/").unwrap();
    assert_eq!(
        root,
        Stat {
            num_children: 1,
            cversion: -1,
            ..Stat::default()
        }
    );
    assert_eq!(
        t.get_acl("/zookeeper/config").unwrap().0[0].perms,
        perms::READ
    );
    assert_eq!(t.count_all_children("/").unwrap(), 3);
    assert_eq!(t.count_all_children("/zookeeper").unwrap(), 2);
    assert_eq!(t.count_all_children("/nope"), Err(ErrorCode::NoNode));
    assert_eq!(t.node_count(), 4);
    t.check_invariants().unwrap();
}

#[test]
fn create_sets_stats_and_bumps_parent() {
    let mut t = DataTree::new();
    let out = apply_ok(&mut t, 5, create("/a", 0, 1));
    let s = t.stat("/a").unwrap();
    assert_eq!((s.czxid, s.mzxid, s.pzxid), (5, 5, 5));
    assert_eq!((s.ctime, s.mtime), (T0 + 5, T0 + 5));
    assert_eq!(
        (s.version, s.cversion, s.aversion, s.ephemeral_owner),
        (0, 0, 0, 0)
    );
    assert_eq!((s.data_length, s.num_children), (2, 0));
    assert_eq!(
        out.result,
        Ok(OpResult::Create {
            path: "/a".into(),
            stat: s,
            extended: false,
        })
    );
    let root = t.node("/").unwrap().stat();
    assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 5, 2));
    assert_eq!(root.mzxid, 0);
    assert_eq!(
        out.triggers,
        vec![
            ("/a".to_string(), EventType::NodeCreated),
            ("/".to_string(), EventType::NodeChildrenChanged)
        ]
    );
    assert_eq!(acls(&out), vec![Acl::open_unsafe(), Acl::open_unsafe()]);
    assert_eq!(t.last_processed_zxid(), 5);
    // Existing node and missing parent.
    assert_eq!(
        t.apply(&txn(6, create("/a", 0, 2))).result,
        Err(ErrorCode::NodeExists)
    );
    assert_eq!(
        t.apply(&txn(7, create("/x/y", 0, 1))).result,
        Err(ErrorCode::NoNode)
    );
    assert_eq!(t.last_processed_zxid(), 7);
    // parent_cversion -1 means "one more than now"; a lower one leaves cversion and pzxid.
    apply_ok(&mut t, 8, create("/b", 0, -1));
    assert_eq!(
        (
            t.node("/").unwrap().stat().cversion,
            t.stat("/").unwrap().pzxid
        ),
        (2, 8)
    );
    apply_ok(&mut t, 9, create("/c", 0, 1));
    assert_eq!(
        (
            t.node("/").unwrap().stat().cversion,
            t.stat("/").unwrap().pzxid
        ),
        (2, 8)
    );
}

#[test]
fn clients_see_cversion_as_creates_plus_deletes() {
    // ZooKeeper 3.8 (zkCli against the running server): 4 child creates and
    // 2 deletes show cversion 6; the next sequential child is numbered 4.
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/p", 0, -1));
    for (i, c) in ["/p/a", "/p/b", "/p/c", "/p/d"].iter().enumerate() {
        apply_ok(&mut t, 2 + i as i64, create(c, 0, -1));
    }
    for (i, c) in ["/p/a", "/p/b"].iter().enumerate() {
        apply_ok(
            &mut t,
            6 + i as i64,
            TxnBody::Delete {
                path: c.to_string(),
            },
        );
    }
    let s = t.stat("/p").unwrap();
    assert_eq!((s.cversion, s.num_children), (6, 2));
    assert_eq!(t.node("/p").unwrap().stat().cversion, 4);
    // /zookeeper: no creates, two children: -2, as ZooKeeper shows it.
    assert_eq!(t.stat("/zookeeper").unwrap().cversion, -2);
    assert_eq!(t.stat("/zookeeper/config").unwrap().aversion, -1);
}

#[test]
fn containers_and_ttl_nodes_show_no_owner() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/c", CONTAINER_EPHEMERAL_OWNER, -1));
    apply_ok(&mut t, 2, create("/t", ttl_ephemeral_owner(1000), -1));
    apply_ok(&mut t, 3, create("/e", 0x1234, -1));
    assert_eq!(t.stat("/c").unwrap().ephemeral_owner, 0);
    assert_eq!(t.stat("/t").unwrap().ephemeral_owner, 0);
    assert_eq!(t.stat("/e").unwrap().ephemeral_owner, 0x1234);
    assert_eq!(
        t.node("/c").unwrap().stat().ephemeral_owner,
        CONTAINER_EPHEMERAL_OWNER
    );
}

#[test]
fn delete_moves_pzxid_not_cversion() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/a", 0, 1));
    apply_ok(&mut t, 2, create("/a/b", 0, 1));
    assert_eq!(
        t.apply(&txn(3, TxnBody::Delete { path: "/a".into() }))
            .result,
        Err(ErrorCode::NotEmpty)
    );
    let out = apply_ok(
        &mut t,
        4,
        TxnBody::Delete {
            path: "/a/b".into(),
        },
    );
    assert_eq!(
        out.triggers,
        vec![
            ("/a/b".to_string(), EventType::NodeDeleted),
            ("/a".to_string(), EventType::NodeChildrenChanged)
        ]
    );
    let a = t.node("/a").unwrap().stat();
    assert_eq!((a.cversion, a.pzxid, a.num_children, a.mzxid), (1, 4, 0, 1));
    // Clients see the create and the delete.
    assert_eq!(t.stat("/a").unwrap().cversion, 2);
    assert_eq!(
        t.apply(&txn(
            5,
            TxnBody::Delete {
                path: "/a/b".into()
            }
        ))
        .result,
        Err(ErrorCode::NoNode)
    );
    assert_eq!(
        t.apply(&txn(6, TxnBody::Delete { path: "/".into() }))
            .result,
        Err(ErrorCode::BadArguments)
    );
    t.check_invariants().unwrap();
}

#[test]
fn set_data_and_set_acl() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/a", 0, 1));
    let out = apply_ok(
        &mut t,
        2,
        TxnBody::SetData {
            path: "/a".into(),
            data: Some(b"xyz".to_vec()),
            version: 1,
        },
    );
    let s = t.stat("/a").unwrap();
    assert_eq!(out.result, Ok(OpResult::SetData { stat: s }));
    assert_eq!(
        (s.version, s.mzxid, s.mtime, s.pzxid, s.czxid, s.data_length),
        (1, 2, T0 + 2, 1, 1, 3)
    );
    assert_eq!(
        out.triggers,
        vec![("/a".to_string(), EventType::NodeDataChanged)]
    );
    assert_eq!(
        t.get_data("/a").unwrap().0,
        Some(Bytes::from_static(b"xyz"))
    );
    let acl = vec![Acl {
        perms: perms::READ,
        id: Id::anyone(),
    }];
    let out = apply_ok(
        &mut t,
        3,
        TxnBody::SetAcl {
            path: "/a".into(),
            acl: acl.clone(),
            version: 1,
        },
    );
    assert!(out.triggers.is_empty());
    let s = t.stat("/a").unwrap();
    assert_eq!((s.aversion, s.version, s.mzxid), (1, 1, 2));
    assert_eq!(t.get_acl("/a").unwrap().0, acl);
    let missing = TxnBody::SetData {
        path: "/q".into(),
        data: Some(vec![]),
        version: 1,
    };
    assert_eq!(t.apply(&txn(4, missing)).result, Err(ErrorCode::NoNode));
}

#[test]
fn multi_applies_all_or_reports_errors() {
    let mut t = DataTree::new();
    let ok = TxnBody::Multi(vec![
        create("/a", 0, 1),
        create("/a/b", 0, 1),
        TxnBody::Check {
            path: "/a".into(),
            version: 1,
        },
        TxnBody::SetData {
            path: "/a".into(),
            data: Some(vec![]),
            version: 1,
        },
    ]);
    let out = apply_ok(&mut t, 1, ok);
    let OpResult::Multi(rs) = out.result.unwrap() else {
        panic!()
    };
    assert_eq!(rs.len(), 4);
    assert!(rs.iter().all(Result::is_ok));
    assert_eq!(out.triggers.len(), 5);
    let before = t.clone();
    let failed = TxnBody::Multi(vec![
        create("/c", 0, 2),
        TxnBody::Error {
            err: ErrorCode::BadVersion,
        },
        TxnBody::Delete {
            path: "/a/b".into(),
        },
    ]);
    let out = t.apply(&txn(2, failed));
    assert_eq!(
        out.result,
        Ok(OpResult::Multi(vec![
            Err(ErrorCode::Ok),
            Err(ErrorCode::BadVersion),
            Err(ErrorCode::RuntimeInconsistency)
        ]))
    );
    assert!(out.triggers.is_empty());
    let mut expect = before;
    expect.set_last_processed_zxid(2);
    assert_eq!(t, expect);
}

#[test]
fn ephemerals_and_close_session() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/e1", 0x11, 1));
    apply_ok(&mut t, 2, create("/e2", 0x11, 2));
    apply_ok(&mut t, 3, create("/f", 0x22, 3));
    assert_eq!(t.ephemerals(0x11), vec!["/e1", "/e2"]);
    assert_eq!(t.ephemerals_count(), 3);
    assert_eq!(t.all_ephemerals().len(), 2);
    let close = Txn {
        zxid: 4,
        time: T0,
        session: 0x11,
        cxid: 0,
        body: TxnBody::CloseSession {
            ephemerals: vec!["/e2".into()],
        },
    };
    let out = t.apply(&close);
    assert_eq!(out.result, Ok(OpResult::CloseSession));
    // The listed one first, then the leftover one.
    assert_eq!(out.triggers[0], ("/e2".to_string(), EventType::NodeDeleted));
    assert_eq!(out.triggers[2], ("/e1".to_string(), EventType::NodeDeleted));
    assert!(t.ephemerals(0x11).is_empty());
    assert_eq!(t.ephemerals(0x22), vec!["/f"]);
    t.check_invariants().unwrap();
}

#[test]
fn containers_and_ttls_expire() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/c", CONTAINER_EPHEMERAL_OWNER, 1));
    apply_ok(&mut t, 2, create("/t", ttl_ephemeral_owner(100), 2));
    let mtime = t.stat("/t").unwrap().mtime;
    // A fresh container (cversion 0) is not a candidate; a young TTL node is not either.
    assert!(t.expired_containers_and_ttls(mtime + 100).is_empty());
    assert_eq!(t.expired_containers_and_ttls(mtime + 101), vec!["/t"]);
    apply_ok(&mut t, 3, create("/c/x", 0, 1));
    apply_ok(&mut t, 4, create("/t/x", 0, 1));
    assert!(t.expired_containers_and_ttls(mtime + 1000).is_empty());
    apply_ok(
        &mut t,
        5,
        TxnBody::Delete {
            path: "/c/x".into(),
        },
    );
    apply_ok(
        &mut t,
        6,
        TxnBody::Delete {
            path: "/t/x".into(),
        },
    );
    assert_eq!(
        t.expired_containers_and_ttls(mtime + 1000),
        vec!["/c", "/t"]
    );
    // Modifying a TTL node restarts its clock.
    apply_ok(
        &mut t,
        7,
        TxnBody::SetData {
            path: "/t".into(),
            data: Some(vec![]),
            version: 1,
        },
    );
    let m2 = t.stat("/t").unwrap().mtime;
    assert_eq!(t.expired_containers_and_ttls(m2 + 50), vec!["/c"]);
    assert_eq!(t.containers().len(), 1);
    assert_eq!(t.ttls().len(), 1);
}

#[test]
fn null_data_stays_null_through_set_and_snapshot_and_differs_from_empty() {
    let mut t = DataTree::new();
    let create_with = |path: &str, data: Option<Vec<u8>>| TxnBody::Create {
        path: path.into(),
        data,
        acl: Acl::open_unsafe(),
        ephemeral_owner: 0,
        parent_cversion: 1,
    };
    apply_ok(&mut t, 1, create_with("/n", None));
    apply_ok(&mut t, 2, create_with("/e", Some(vec![])));
    let (data, stat) = t.get_data("/n").unwrap();
    assert_eq!((data, stat.data_length), (None, 0));
    assert_eq!(t.get_data("/e").unwrap().0, Some(Bytes::new()));
    apply_ok(
        &mut t,
        3,
        TxnBody::SetData {
            path: "/e".into(),
            data: None,
            version: 1,
        },
    );
    assert_eq!(t.get_data("/e").unwrap().0, None);
    let back = DataTree::deserialize_snapshot(&t.serialize_snapshot()).unwrap();
    assert_eq!(back.get_data("/n").unwrap().0, None);
    assert_eq!(back.digest(), t.digest());
    // Null and empty data are different trees.
    let mut other = DataTree::new();
    apply_ok(&mut other, 1, create_with("/n", Some(vec![])));
    let mut with_null = DataTree::new();
    apply_ok(&mut with_null, 1, create_with("/n", None));
    assert_ne!(other.digest(), with_null.digest());
}

#[test]
fn snapshot_round_trip_and_corruption() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/a", 0, 1));
    apply_ok(&mut t, 2, create("/a/e", 0x33, 1));
    apply_ok(&mut t, 3, create("/c", CONTAINER_EPHEMERAL_OWNER, 2));
    apply_ok(&mut t, 4, create("/t", ttl_ephemeral_owner(5), 3));
    let snap = t.serialize_snapshot();
    let back = DataTree::deserialize_snapshot(&snap).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.digest(), t.digest());
    assert_eq!(back.last_processed_zxid(), 4);
    assert_eq!(back.ephemerals(0x33), vec!["/a/e"]);
    // Any flipped bit or truncation is detected.
    for i in (0..snap.len()).step_by(7) {
        let mut bad = snap.clone();
        bad[i] ^= 0x10;
        assert!(DataTree::deserialize_snapshot(&bad).is_err(), "flip at {i}");
    }
    for n in 0..snap.len() {
        assert!(DataTree::deserialize_snapshot(&snap[..n]).is_err());
    }
}

/// A frozen tree is the tree at one zxid: creates, data changes, deletes
/// (of leaves and of whole subtrees) and multis applied afterwards do not
/// leak into it, and its snapshot is byte for byte the one the tree gave
/// at the freeze. The live tree stays consistent while sharing structure.
#[test]
fn frozen_tree_is_exactly_one_zxid() {
    let mut t = DataTree::new();
    let mut z = 0;
    for i in 0..300 {
        z += 1;
        apply_ok(&mut t, z, create(&format!("/n{i:03}"), 0, -1));
        z += 1;
        apply_ok(&mut t, z, create(&format!("/n{i:03}/c"), 0, -1));
    }
    let at_freeze = t.serialize_snapshot();
    let digest_at_freeze = t.digest();
    let frozen = t.freeze();
    assert_eq!(frozen.last_processed_zxid(), z);
    assert_eq!(frozen.node_count(), t.node_count());
    for i in 0..300 {
        z += 1;
        let body = match i % 3 {
            0 => TxnBody::SetData {
                path: format!("/n{i:03}"),
                data: Some(b"changed".to_vec()),
                version: 1,
            },
            1 => TxnBody::Multi(vec![
                TxnBody::Delete {
                    path: format!("/n{i:03}/c"),
                },
                TxnBody::Delete {
                    path: format!("/n{i:03}"),
                },
            ]),
            _ => create(&format!("/n{i:03}/new"), 0, -1),
        };
        apply_ok(&mut t, z, body);
    }
    assert_ne!(t.digest(), digest_at_freeze);
    let from_frozen = frozen.serialize_snapshot();
    assert_eq!(from_frozen, at_freeze);
    let back = DataTree::deserialize_snapshot(&from_frozen).unwrap();
    assert_eq!(back.digest(), digest_at_freeze);
    assert_eq!(back.last_processed_zxid(), frozen.last_processed_zxid());
    t.check_invariants().unwrap();
}

proptest::proptest! {
    /// Corrupt bytes behind a valid checksum: decoding never panics, and
    /// whatever decodes is a consistent tree.
    #[test]
    fn snapshot_decode_survives_hostile_bytes(pos in 0usize..2000, byte in 0u8..=255, cut in 0usize..2000) {
        let mut t = DataTree::new();
        t.apply(&txn(1, create("/a", 0x33, 1)));
        t.apply(&txn(2, create("/a/b", 0, 1)));
        t.apply(&txn(3, create("/c", CONTAINER_EPHEMERAL_OWNER, 2)));
        let snap = t.serialize_snapshot();
        let mut body = snap[..snap.len() - 4].to_vec();
        let p = pos % body.len();
        body[p] = byte;
        body.truncate(body.len() - cut % 9);
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        if let Ok(back) = DataTree::deserialize_snapshot(&body) {
            proptest::prop_assert!(back.check_invariants().is_ok());
        }
    }
}

/// Every permission to one digest identity.
fn all_to_digest(id: &str) -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id::new("digest", id),
    }]
}

/// The ACLs an apply's triggers carry, as plain lists.
fn acls(out: &ApplyOutcome) -> Vec<Vec<Acl>> {
    out.trigger_acls.iter().map(|a| a.to_vec()).collect()
}

#[test]
fn nodes_with_the_same_acl_share_one_list() {
    let mut t = DataTree::new();
    let secret = all_to_digest("u:x");
    let with_acl = |path: &str, acl: Vec<Acl>| TxnBody::Create {
        path: path.into(),
        data: None,
        acl,
        ephemeral_owner: 0,
        parent_cversion: -1,
    };
    for (i, acl) in [
        Acl::open_unsafe(),
        secret.clone(),
        Acl::open_unsafe(),
        secret.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        apply_ok(&mut t, 10 + i as i64, with_acl(&format!("/n{i}"), acl));
    }
    let list = |t: &DataTree, p: &str| t.nodes[p].acl.clone();
    assert!(std::sync::Arc::ptr_eq(&list(&t, "/n0"), &list(&t, "/n2")));
    assert!(std::sync::Arc::ptr_eq(&list(&t, "/n1"), &list(&t, "/n3")));
    assert!(std::sync::Arc::ptr_eq(&list(&t, "/n0"), &list(&t, "/")));
    // open, secret, and the read-only list of /zookeeper/config
    assert_eq!(t.acls.lists.len(), 3);
    // Lists no node uses any more are dropped once the cache has doubled.
    for i in 0..100 {
        let acl = all_to_digest(&format!("user{i}:x"));
        apply_ok(&mut t, 100 + 2 * i, with_acl("/churn", acl));
        apply_ok(
            &mut t,
            101 + 2 * i,
            TxnBody::Delete {
                path: "/churn".into(),
            },
        );
    }
    assert!(
        t.acls.lists.len() <= 2 * 32 + 1,
        "{} lists",
        t.acls.lists.len()
    );
    assert!(std::sync::Arc::ptr_eq(&list(&t, "/n1"), &list(&t, "/n3")));
}

#[test]
fn trigger_acls_name_the_node_each_event_is_about() {
    let mut t = DataTree::new();
    let secret = all_to_digest("bob:x");
    apply_ok(&mut t, 1, create("/a", 0, 1));
    let mk = TxnBody::Create {
        path: "/a/s".into(),
        data: Some(vec![]),
        acl: secret.clone(),
        ephemeral_owner: 0,
        parent_cversion: 1,
    };
    let out = apply_ok(&mut t, 2, mk);
    assert_eq!(acls(&out), vec![secret.clone(), Acl::open_unsafe()]);
    let out = apply_ok(
        &mut t,
        3,
        TxnBody::SetData {
            path: "/a/s".into(),
            data: Some(vec![]),
            version: 1,
        },
    );
    assert_eq!(acls(&out), vec![secret.clone()]);
    let out = apply_ok(
        &mut t,
        4,
        TxnBody::Delete {
            path: "/a/s".into(),
        },
    );
    assert_eq!(acls(&out), vec![secret, Acl::open_unsafe()]);
    assert_eq!(out.trigger_acls.len(), out.triggers.len());
}

#[test]
fn config_node_is_local_and_outside_the_digest() {
    let mut t = DataTree::new();
    let d = t.digest();
    t.set_config_data(b"server.1=a:2888:3888;2181", 0x1_0000_0000, 42);
    assert_eq!(t.digest(), d);
    let (data, stat) = t.get_data(CONFIG_ZOOKEEPER).unwrap();
    assert_eq!(&data.unwrap()[..], b"server.1=a:2888:3888;2181");
    assert_eq!(
        (stat.mzxid, stat.mtime, stat.version),
        (0x1_0000_0000, 42, -1)
    );
    t.check_invariants().unwrap();
}

#[test]
fn ephemerals_under_prefix() {
    let mut t = DataTree::new();
    apply_ok(&mut t, 1, create("/a", 0, 1));
    apply_ok(&mut t, 2, create("/a/e", 0x11, 1));
    apply_ok(&mut t, 3, create("/ab", 0x11, 2));
    apply_ok(&mut t, 4, create("/b", 0x11, 3));
    assert_eq!(t.ephemerals_under(0x11, "/"), vec!["/a/e", "/ab", "/b"]);
    assert_eq!(t.ephemerals_under(0x11, ""), vec!["/a/e", "/ab", "/b"]);
    assert_eq!(t.ephemerals_under(0x11, "/a"), vec!["/a/e", "/ab"]);
    assert!(t.ephemerals_under(0x22, "/").is_empty());
}

#[test]
fn digest_tracks_content_not_history() {
    let mut a = DataTree::new();
    let mut b = DataTree::new();
    assert_eq!(a.digest(), b.digest());
    apply_ok(&mut a, 1, create("/x", 0, 1));
    assert_ne!(a.digest(), b.digest());
    apply_ok(&mut b, 1, create("/x", 0, 1));
    assert_eq!(a.digest(), b.digest());
    apply_ok(
        &mut a,
        2,
        TxnBody::SetData {
            path: "/x".into(),
            data: Some(vec![1]),
            version: 1,
        },
    );
    apply_ok(
        &mut b,
        2,
        TxnBody::SetData {
            path: "/x".into(),
            data: Some(vec![2]),
            version: 1,
        },
    );
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), a.recompute_digest());
}

#[test]
fn invalid_names_are_refused_at_apply() {
    let mut t = DataTree::new();
    assert_eq!(
        t.apply(&txn(1, create("/a/", 0, 1))).result,
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        t.apply(&txn(2, create("nope", 0, 1))).result,
        Err(ErrorCode::BadArguments)
    );
    t.check_invariants().unwrap();
}

#[test]
fn persisted_nodes_load_in_any_order_and_bad_sets_are_refused() {
    let mut t = DataTree::new();
    for (i, p) in ["/a", "/a/b", "/a-c", "/a/b/d"].into_iter().enumerate() {
        apply_ok(&mut t, 1 + i as i64, create(p, 0, -1));
    }
    let persisted = |t: &DataTree| -> Vec<(String, Option<Bytes>, Vec<Acl>, Stat)> {
        t.paths()
            .map(|p| {
                let n = t.node(p).unwrap();
                (
                    p.to_string(),
                    n.data_opt().cloned(),
                    n.acl().to_vec(),
                    n.stat(),
                )
            })
            .collect()
    };
    let sorted = persisted(&t);
    let back = DataTree::from_persisted(4, sorted.clone()).unwrap();
    assert_eq!(back, t);
    back.check_invariants().unwrap();
    // An imported snapshot may list nodes in another order.
    let mut shuffled = sorted.clone();
    shuffled.reverse();
    assert_eq!(DataTree::from_persisted(4, shuffled).unwrap(), t);
    let refused = |nodes: Vec<(String, Option<Bytes>, Vec<Acl>, Stat)>| {
        DataTree::from_persisted(4, nodes).unwrap_err().to_string()
    };
    let mut twice = sorted.clone();
    twice.insert(0, sorted[1].clone());
    assert!(refused(twice).contains("duplicate path"));
    let orphan: Vec<_> = sorted.iter().filter(|n| n.0 != "/a/b").cloned().collect();
    assert!(refused(orphan).contains("\"/a/b/d\" has no parent"));
    let rootless: Vec<_> = sorted
        .iter()
        .filter(|n| n.0 != "/zookeeper/quota")
        .cloned()
        .collect();
    assert!(refused(rootless).contains("missing /zookeeper/quota"));
}
