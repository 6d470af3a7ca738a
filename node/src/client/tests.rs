//! Client tests against tiny scripted fake servers on loopback sockets.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::proto::client::{
    decode_frame, decode_request, encode_event, encode_reply, ConnectRequest, ConnectResponse,
    ReplyHeader, WatcherEvent,
};
use crate::types::{keeper_state, opcode, xid};

const MAX: usize = 1 << 20;

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Option<Bytes> {
    loop {
        if let Some(f) = decode_frame(buf, MAX).unwrap() {
            return Some(f);
        }
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// Accepts one connection and answers its handshake with `resp`
/// (`read_only_present` copied from the request).
async fn accept(
    l: &TcpListener,
    mut resp: ConnectResponse,
) -> (TcpStream, BytesMut, ConnectRequest) {
    let (mut s, _) = l.accept().await.unwrap();
    let mut buf = BytesMut::new();
    let req = ConnectRequest::decode(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
    resp.read_only_present = req.read_only_present;
    send(&mut s, &resp.encode()).await;
    (s, buf, req)
}

fn session(id: i64, timeout_ms: i32, passwd: u8) -> ConnectResponse {
    ConnectResponse {
        timeout: timeout_ms,
        session_id: id,
        passwd: vec![passwd; 16],
        ..ConnectResponse::default()
    }
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<WatchedEvent>) -> WatchedEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event in time")
        .expect("event")
}

async fn wait_state(c: &Client, want: SessionState) {
    let mut rx = c.state_changes();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("state {want:?} in time, at {:?}", c.state()))
        .unwrap();
}

fn state_event(state: i32) -> WatchedEvent {
    WatchedEvent {
        event_type: EventType::None,
        state,
        path: String::new(),
    }
}

#[tokio::test]
async fn session_requests_chroot_and_watch_events() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, mut buf, req) = accept(&l, session(0x42, 3000, 7)).await;
        assert_eq!(
            (req.session_id, req.timeout, req.last_zxid_seen),
            (0, 3000, 0)
        );
        assert!(req.read_only_present);

        // getData with watch, under the chroot; an event for another node
        // precedes the reply on the wire.
        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        assert_eq!(
            r,
            Request::GetData {
                path: "/app/x".into(),
                watch: true
            }
        );
        send(
            &mut s,
            &encode_event(&WatcherEvent {
                event_type: 4,
                state: 3,
                path: "/app/other".into(),
            }),
        )
        .await;
        let stat = Stat {
            mzxid: 0x10,
            data_length: 2,
            ..Stat::default()
        };
        let reply = Response::GetData {
            data: Some(b"v1".to_vec()),
            stat,
        };
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: h.xid,
                    zxid: 0x10,
                    err: 0,
                },
                &reply,
            ),
        )
        .await;

        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        assert_eq!(h.opcode, opcode::CREATE2);
        match r {
            Request::Create2(c) => assert_eq!((c.path.as_str(), c.flags), ("/app/seq-", 2)),
            other => panic!("{other:?}"),
        }
        let reply = Response::Create2 {
            path: "/app/seq-0000000003".into(),
            stat: Stat::default(),
        };
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: h.xid,
                    zxid: 0x11,
                    err: 0,
                },
                &reply,
            ),
        )
        .await;

        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        assert_eq!(
            r,
            Request::Exists {
                path: "/app/missing".into(),
                watch: true
            }
        );
        let nonode = ErrorCode::NoNode.code();
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: h.xid,
                    zxid: 0x11,
                    err: nonode,
                },
                &Response::Empty,
            ),
        )
        .await;

        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        assert_eq!(h.xid, xid::AUTH);
        assert_eq!(
            r,
            Request::Auth {
                auth_type: 0,
                scheme: "digest".into(),
                auth: b"u:p".to_vec()
            }
        );
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: xid::AUTH,
                    zxid: 0,
                    err: 0,
                },
                &Response::Empty,
            ),
        )
        .await;

        send(
            &mut s,
            &encode_event(&WatcherEvent {
                event_type: 3,
                state: 3,
                path: "/app/x".into(),
            }),
        )
        .await;

        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        assert_eq!(r, Request::CloseSession);
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: h.xid,
                    zxid: 0x11,
                    err: 0,
                },
                &Response::Empty,
            ),
        )
        .await;
    });

    let c = Client::connect(
        &format!("{addr}/app"),
        ClientOptions::with_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    assert_eq!(c.state(), SessionState::Connected);
    assert_eq!(c.session_id(), 0x42);
    assert_eq!(c.session_timeout(), Duration::from_secs(3));
    let mut events = c.take_events().unwrap();
    assert!(c.take_events().is_none());
    assert_eq!(
        next_event(&mut events).await,
        state_event(keeper_state::SYNC_CONNECTED)
    );

    let (data, stat) = c.get_data("/x", true).await.unwrap();
    assert_eq!((data.as_slice(), stat.mzxid), (&b"v1"[..], 0x10));
    // The event sent before the reply is already queued.
    assert_eq!(
        events.try_recv().unwrap(),
        WatchedEvent {
            event_type: EventType::NodeChildrenChanged,
            state: 3,
            path: "/other".into()
        }
    );
    assert_eq!(c.last_zxid_seen(), 0x10);

    let (path, _) = c
        .create(
            "/seq-",
            b"",
            &Acl::open_unsafe(),
            CreateMode::PersistentSequential,
        )
        .await
        .unwrap();
    assert_eq!(path, "/seq-0000000003");
    assert_eq!(c.exists("/missing", true).await.unwrap(), None);
    c.add_auth("digest", b"u:p").await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        WatchedEvent {
            event_type: EventType::NodeDataChanged,
            state: 3,
            path: "/x".into()
        }
    );
    assert_eq!(c.last_zxid_seen(), 0x11);
    c.close().await.unwrap();
    assert_eq!(c.state(), SessionState::Closed);
    assert_eq!(
        next_event(&mut events).await,
        state_event(keeper_state::CLOSED)
    );
    assert_eq!(c.get_data("/x", false).await, Err(Error::Closed));
    server.await.unwrap();
}

#[tokio::test]
async fn reconnects_to_another_server_and_restores_watches() {
    let (l1, a1) = listener().await;
    let (l2, a2) = listener().await;
    let (obs_tx, mut obs_rx) = mpsc::unbounded_channel::<(ConnectRequest, Option<Request>)>();
    // Whichever server the seeded order picks first serves the new session
    // and then drops the connection; the other one sees the reconnect.
    let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    for l in [l1, l2] {
        let counter = counter.clone();
        let obs_tx = obs_tx.clone();
        tokio::spawn(async move {
            let (mut s, mut buf, req) = accept(&l, session(0x77, 3000, 9)).await;
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = obs_tx.send((req, None));
                let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
                assert_eq!(
                    r,
                    Request::GetData {
                        path: "/w".into(),
                        watch: true
                    }
                );
                let reply = Response::GetData {
                    data: Some(vec![]),
                    stat: Stat::default(),
                };
                send(
                    &mut s,
                    &encode_reply(
                        &ReplyHeader {
                            xid: h.xid,
                            zxid: 0x500,
                            err: 0,
                        },
                        &reply,
                    ),
                )
                .await;
                drop(s);
            } else {
                let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
                assert_eq!(h.xid, xid::SET_WATCHES);
                let _ = obs_tx.send((req, Some(r)));
                send(
                    &mut s,
                    &encode_reply(
                        &ReplyHeader {
                            xid: xid::SET_WATCHES,
                            zxid: 0x500,
                            err: 0,
                        },
                        &Response::Empty,
                    ),
                )
                .await;
                let (h, _) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
                let reply = Response::Stat {
                    stat: Stat::default(),
                };
                send(
                    &mut s,
                    &encode_reply(
                        &ReplyHeader {
                            xid: h.xid,
                            zxid: 0x501,
                            err: 0,
                        },
                        &reply,
                    ),
                )
                .await;
                // Keep the connection until the client goes away.
                let _ = read_frame(&mut s, &mut buf).await;
            }
        });
    }
    drop(obs_tx);
    let c = Client::connect(
        &format!("{a1},{a2}"),
        ClientOptions {
            seed: 5,
            ..ClientOptions::with_timeout(Duration::from_secs(3))
        },
    )
    .await
    .unwrap();
    let mut events = c.take_events().unwrap();
    c.get_data("/w", true).await.unwrap();
    wait_state(&c, SessionState::Disconnected).await;
    wait_state(&c, SessionState::Connected).await;
    assert!(c.exists("/y", false).await.unwrap().is_some());
    assert_eq!(c.last_zxid_seen(), 0x501);

    let (first, _) = obs_rx.recv().await.unwrap();
    assert_eq!(first.session_id, 0);
    let (second, set_watches) = obs_rx.recv().await.unwrap();
    assert_eq!(second.session_id, 0x77);
    assert_eq!(second.passwd, vec![9; 16]);
    assert_eq!(second.last_zxid_seen, 0x500);
    assert_eq!(
        set_watches,
        Some(Request::SetWatches2 {
            relative_zxid: 0x500,
            data: vec!["/w".into()],
            exist: vec![],
            child: vec![],
            persistent: vec![],
            persistent_recursive: vec![],
        })
    );
    let states: Vec<i32> = [
        next_event(&mut events).await,
        next_event(&mut events).await,
        next_event(&mut events).await,
    ]
    .iter()
    .map(|e| e.state)
    .collect();
    assert_eq!(
        states,
        [
            keeper_state::SYNC_CONNECTED,
            keeper_state::DISCONNECTED,
            keeper_state::SYNC_CONNECTED
        ]
    );
}

#[tokio::test]
async fn refused_reconnect_expires_the_session() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, mut buf, _) = accept(&l, session(0x99, 3000, 1)).await;
        // Take a request, then vanish without answering.
        let _ = read_frame(&mut s, &mut buf).await;
        drop(s);
        let (_s, _, req) = accept(&l, session(0, 0, 0)).await;
        assert_eq!(req.session_id, 0x99);
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let c = Client::connect(&addr, ClientOptions::with_timeout(Duration::from_secs(3)))
        .await
        .unwrap();
    let in_flight = c.get_data("/a", false).await;
    assert_eq!(in_flight, Err(Error::Keeper(ErrorCode::ConnectionLoss)));
    wait_state(&c, SessionState::Expired).await;
    assert_eq!(
        c.get_data("/a", false).await,
        Err(Error::Keeper(ErrorCode::SessionExpired))
    );
    assert_eq!(c.close().await, Ok(()));
}

#[tokio::test]
async fn pings_when_idle_and_reconnects_when_pings_go_unanswered() {
    let (l, addr) = listener().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // First connection: answer one ping, then go silent (but keep the
        // socket open): the client must time out and reconnect.
        let (mut s, mut buf, _) = accept(&l, session(0x5, 600, 1)).await;
        let (h, r) = decode_request(&read_frame(&mut s, &mut buf).await.unwrap()).unwrap();
        let _ = tx.send((h, r));
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: xid::PING,
                    zxid: 3,
                    err: 0,
                },
                &Response::Empty,
            ),
        )
        .await;
        let (_s2, _, req) = accept(&l, session(0x5, 600, 1)).await;
        let _ = tx.send((
            Default::default(),
            Request::Unknown {
                opcode: req.session_id as i32,
            },
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let c = Client::connect(
        &addr,
        ClientOptions::with_timeout(Duration::from_millis(600)),
    )
    .await
    .unwrap();
    let (h, r) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.xid, h.opcode, r),
        (xid::PING, opcode::PING, Request::Ping)
    );
    wait_state(&c, SessionState::Disconnected).await;
    let (_, r) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r,
        Request::Unknown { opcode: 5 },
        "the reconnect resumes session 5"
    );
    wait_state(&c, SessionState::Connected).await;
}

#[tokio::test]
async fn connect_fails_with_connection_loss_when_no_server_answers() {
    let (l, addr) = listener().await;
    drop(l);
    let opts = ClientOptions {
        connect_timeout: Some(Duration::from_millis(300)),
        reconnect_delay: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    assert_eq!(
        Client::connect(&addr, opts).await.err(),
        Some(Error::Keeper(ErrorCode::ConnectionLoss))
    );
    assert!(matches!(
        Client::connect("", ClientOptions::default()).await,
        Err(Error::BadArguments(_))
    ));
}

#[tokio::test]
async fn failed_auth_ends_the_session_and_managed_requests_are_refused() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, mut buf, _) = accept(&l, session(0x6, 3000, 1)).await;
        let _ = read_frame(&mut s, &mut buf).await.unwrap();
        let failed = ErrorCode::AuthFailed.code();
        send(
            &mut s,
            &encode_reply(
                &ReplyHeader {
                    xid: xid::AUTH,
                    zxid: 0,
                    err: failed,
                },
                &Response::Empty,
            ),
        )
        .await;
        let _ = read_frame(&mut s, &mut buf).await;
    });
    let c = Client::connect(&addr, ClientOptions::with_timeout(Duration::from_secs(3)))
        .await
        .unwrap();
    assert!(matches!(
        c.submit(Request::Ping).await,
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        c.submit(Request::CloseSession).await,
        Err(Error::BadArguments(_))
    ));
    assert_eq!(
        c.add_auth("digest", b"bad").await,
        Err(Error::Keeper(ErrorCode::AuthFailed))
    );
    wait_state(&c, SessionState::AuthFailed).await;
    assert_eq!(
        c.exists("/", false).await,
        Err(Error::Keeper(ErrorCode::AuthFailed))
    );
}

/// A client that allows read-only sessions and began on a read-only server asks every
/// server for a new session until a read-write one takes it (ZooKeeper's
/// `seenRwServerBefore`): the read-only server's local session is known nowhere else.
/// From then on it resumes that session as usual.
#[tokio::test]
async fn a_session_begun_read_only_becomes_a_real_one_on_a_read_write_server() {
    let (l, addr) = listener().await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut ro = session(0x51, 3000, 1);
        ro.read_only = true;
        // The read-only server: a local session, then it leaves read-only mode.
        let (s, _, req) = accept(&l, ro.clone()).await;
        seen_tx.send(req).unwrap();
        drop(s);
        // Another read-only server (or the same one again): a new local session.
        let (s, _, req) = accept(&l, ro).await;
        seen_tx.send(req).unwrap();
        drop(s);
        // A read-write server makes a real session, which is resumed afterwards.
        let (s, _, req) = accept(&l, session(0x77, 3000, 9)).await;
        seen_tx.send(req).unwrap();
        drop(s);
        let (mut s, mut buf, req) = accept(&l, session(0x77, 3000, 9)).await;
        seen_tx.send(req).unwrap();
        let _ = read_frame(&mut s, &mut buf).await;
    });
    let c = Client::connect(
        &addr,
        ClientOptions {
            read_only: true,
            reconnect_delay: Duration::ZERO,
            ..ClientOptions::with_timeout(Duration::from_secs(3))
        },
    )
    .await
    .unwrap();
    let mut events = c.take_events().unwrap();
    let mut reqs = Vec::new();
    for _ in 0..4 {
        reqs.push(next_req(&mut seen_rx).await);
    }
    assert!(reqs.iter().all(|r| r.read_only));
    let sessions: Vec<(i64, Vec<u8>)> = reqs
        .iter()
        .map(|r| (r.session_id, r.passwd.clone()))
        .collect();
    assert_eq!(
        sessions,
        [
            (0, vec![0; 16]),
            (0, vec![0; 16]),
            (0, vec![0; 16]),
            (0x77, vec![9; 16])
        ]
    );
    wait_state(&c, SessionState::Connected).await;
    assert_eq!(c.session_id(), 0x77);
    let mut states = Vec::new();
    for _ in 0..7 {
        states.push(next_event(&mut events).await.state);
    }
    use keeper_state::{CONNECTED_READ_ONLY as RO, DISCONNECTED as D, SYNC_CONNECTED as RW};
    assert_eq!(states, [RO, D, RO, D, RW, D, RW]);
}

async fn next_req(rx: &mut mpsc::UnboundedReceiver<ConnectRequest>) -> ConnectRequest {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("handshake in time")
        .expect("handshake")
}
