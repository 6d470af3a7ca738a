use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::proto::client::{
    decode_frame, decode_request, encode_reply, ConnectRequest, ConnectResponse,
};
use crate::proto::client::{ReplyHeader, Request, Response};

async fn frame(s: &mut TcpStream, buf: &mut BytesMut) -> bytes::Bytes {
    loop {
        if let Some(f) = decode_frame(buf, 1 << 20).unwrap() {
            return f;
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "client hung up");
    }
}

async fn send(s: &mut TcpStream, b: &[u8]) {
    s.write_all(b).await.unwrap();
    s.flush().await.unwrap();
}

fn lines(words: &str) -> Vec<String> {
    tokenize(words).unwrap()
}

#[tokio::test]
async fn commands_send_the_right_requests_and_print_zkcli_output() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let req = ConnectRequest::decode(&frame(&mut s, &mut buf).await).unwrap();
        let resp = ConnectResponse {
            timeout: 5000,
            session_id: 1,
            passwd: vec![0; 16],
            read_only_present: req.read_only_present,
            ..ConnectResponse::default()
        };
        send(&mut s, &resp.encode()).await;
        let stat = Stat {
            czxid: 0x1f,
            mzxid: 0x20,
            pzxid: 0x1f,
            data_length: 5,
            version: 1,
            ..Stat::default()
        };
        let script: Vec<(Request, i32, Response)> = vec![
            (
                Request::Create(crate::proto::client::CreateRequest {
                    path: "/e-".into(),
                    data: Some(b"hello".to_vec()),
                    acl: vec![Acl {
                        perms: perms::READ,
                        id: Id::anyone(),
                    }],
                    flags: CreateMode::EphemeralSequential.flag(),
                }),
                0,
                Response::Create2 {
                    path: "/e-0000000007".into(),
                    stat,
                },
            ),
            (
                Request::GetData {
                    path: "/e-0000000007".into(),
                    watch: true,
                },
                0,
                Response::GetData {
                    data: Some(b"hello".to_vec()),
                    stat,
                },
            ),
            (
                Request::Delete {
                    path: "/x".into(),
                    version: 3,
                },
                ErrorCode::NotEmpty.code(),
                Response::Empty,
            ),
        ];
        for (want, err, reply) in script {
            let (h, got) = decode_request(&frame(&mut s, &mut buf).await).unwrap();
            // The CLI creates through create2; compare the record.
            let got = match got {
                Request::Create2(c) => Request::Create(c),
                other => other,
            };
            assert_eq!(got, want);
            send(
                &mut s,
                &encode_reply(
                    &ReplyHeader {
                        xid: h.xid,
                        zxid: 0x20,
                        err,
                    },
                    &reply,
                ),
            )
            .await;
        }
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let run = |words: &str| lines(words);
    assert_eq!(
        execute(
            &client,
            &run("create -s -e /e- hello world:anyone:r"),
            &mut out,
            &mut err
        )
        .await,
        Ok(Flow::Continue)
    );
    assert_eq!(
        execute(&client, &run("get -s -w /e-0000000007"), &mut out, &mut err).await,
        Ok(Flow::Continue)
    );
    assert_eq!(
        execute(&client, &run("delete -v 3 /x"), &mut out, &mut err).await,
        Err(())
    );
    assert_eq!(
        execute(&client, &run("create -c -e /c"), &mut out, &mut err).await,
        Err(())
    );
    assert_eq!(
        execute(&client, &run("quit"), &mut out, &mut err).await,
        Ok(Flow::Quit)
    );
    server.await.unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Created /e-0000000007\nhello\ncZxid = 0x1f\nctime = Thu Jan 01 00:00:00 UTC 1970\nmZxid = 0x20\n\
         mtime = Thu Jan 01 00:00:00 UTC 1970\npZxid = 0x1f\ncversion = 0\ndataVersion = 1\naclVersion = 0\n\
         ephemeralOwner = 0x0\ndataLength = 5\nnumChildren = 0\n"
    );
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "Node not empty: /x\n-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.\n"
    );
}
