//! Connect strings (`host:port,host:port[/chroot]`) and chroot path mapping.

use crate::proto::client::{MultiOp, MultiResult, Request, Response};

use super::Error;

/// ZooKeeper's default client port.
pub const DEFAULT_PORT: u16 = 2181;

/// A parsed connect string, as ZooKeeper's `ConnectStringParser` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// The servers, in the order given, as (host, port). IPv6 hosts are
    /// stored without brackets.
    pub hosts: Vec<(String, u16)>,
    /// The chroot, e.g. `/app`, or `None` (a chroot of `/` is none).
    pub chroot: Option<String>,
}

impl ConnectString {
    /// Parses `host[:port][,host[:port]...][/chroot]`. Ports default to
    /// 2181; IPv6 hosts are written `[addr]:port`.
    pub fn parse(s: &str) -> Result<ConnectString, Error> {
        let bad = |why: String| Error::BadArguments(why);
        let (hosts_part, chroot) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                if c.ends_with('/') || c.contains("//") || c.contains('\0') {
                    return Err(bad(format!("invalid chroot {c:?}")));
                }
                if c.split('/').any(|seg| seg == "." || seg == "..") {
                    return Err(bad(format!("relative chroot {c:?}")));
                }
                Some(c.to_string())
            }
        };
        let mut hosts = Vec::new();
        for entry in hosts_part
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            hosts.push(
                parse_host(entry)
                    .ok_or_else(|| bad(format!("invalid server address {entry:?}")))?,
            );
        }
        if hosts.is_empty() {
            return Err(bad(format!("no server in connect string {s:?}")));
        }
        Ok(ConnectString { hosts, chroot })
    }
}

fn parse_host(entry: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (addr, port)
    } else {
        match entry.rsplit_once(':') {
            Some((h, "")) => (h, DEFAULT_PORT),
            Some((h, p)) => (h, p.parse().ok()?),
            None => (entry, DEFAULT_PORT),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

/// Maps client-visible paths to server paths and back under a chroot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chroot(Option<String>);

impl Chroot {
    /// A chroot (`None` for the real root).
    pub fn new(chroot: Option<String>) -> Chroot {
        Chroot(chroot)
    }

    /// The server path of a client path.
    pub fn prefix(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_string(),
            Some(root) if path == "/" => root.clone(),
            Some(root) => format!("{root}{path}"),
        }
    }

    /// The client path of a server path (unchanged if outside the chroot).
    pub fn strip(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_string(),
            Some(root) => match path.strip_prefix(root.as_str()) {
                Some("") => "/".to_string(),
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                _ => path.to_string(),
            },
        }
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }

    fn prefix_op(&self, op: MultiOp) -> MultiOp {
        let p = |s: String| self.prefix(&s);
        match op {
            MultiOp::Create(mut c) => {
                c.path = p(c.path);
                MultiOp::Create(c)
            }
            MultiOp::Create2(mut c) => {
                c.path = p(c.path);
                MultiOp::Create2(c)
            }
            MultiOp::CreateContainer(mut c) => {
                c.path = p(c.path);
                MultiOp::CreateContainer(c)
            }
            MultiOp::CreateTtl(mut c) => {
                c.path = p(c.path);
                MultiOp::CreateTtl(c)
            }
            MultiOp::Delete { path, version } => MultiOp::Delete {
                path: p(path),
                version,
            },
            MultiOp::SetData {
                path,
                data,
                version,
            } => MultiOp::SetData {
                path: p(path),
                data,
                version,
            },
            MultiOp::Check { path, version } => MultiOp::Check {
                path: p(path),
                version,
            },
            MultiOp::GetChildren { path, watch } => MultiOp::GetChildren {
                path: p(path),
                watch,
            },
            MultiOp::GetData { path, watch } => MultiOp::GetData {
                path: p(path),
                watch,
            },
        }
    }

    /// The request with every path mapped to its server path.
    pub fn prefix_request(&self, req: Request) -> Request {
        if self.is_none() {
            return req;
        }
        let p = |s: String| self.prefix(&s);
        let ps = |v: Vec<String>| v.into_iter().map(|s| self.prefix(&s)).collect::<Vec<_>>();
        match req {
            Request::Create(mut c) => {
                c.path = p(c.path);
                Request::Create(c)
            }
            Request::Create2(mut c) => {
                c.path = p(c.path);
                Request::Create2(c)
            }
            Request::CreateContainer(mut c) => {
                c.path = p(c.path);
                Request::CreateContainer(c)
            }
            Request::CreateTtl(mut c) => {
                c.path = p(c.path);
                Request::CreateTtl(c)
            }
            Request::Delete { path, version } => Request::Delete {
                path: p(path),
                version,
            },
            Request::Exists { path, watch } => Request::Exists {
                path: p(path),
                watch,
            },
            Request::GetData { path, watch } => Request::GetData {
                path: p(path),
                watch,
            },
            Request::SetData {
                path,
                data,
                version,
            } => Request::SetData {
                path: p(path),
                data,
                version,
            },
            Request::GetAcl { path } => Request::GetAcl { path: p(path) },
            Request::SetAcl { path, acl, version } => Request::SetAcl {
                path: p(path),
                acl,
                version,
            },
            Request::GetChildren { path, watch } => Request::GetChildren {
                path: p(path),
                watch,
            },
            Request::Sync { path } => Request::Sync { path: p(path) },
            Request::GetChildren2 { path, watch } => Request::GetChildren2 {
                path: p(path),
                watch,
            },
            Request::Check { path, version } => Request::Check {
                path: p(path),
                version,
            },
            Request::Multi(ops) => {
                Request::Multi(ops.into_iter().map(|o| self.prefix_op(o)).collect())
            }
            Request::MultiRead(ops) => {
                Request::MultiRead(ops.into_iter().map(|o| self.prefix_op(o)).collect())
            }
            Request::CheckWatches { path, watcher_type } => Request::CheckWatches {
                path: p(path),
                watcher_type,
            },
            Request::RemoveWatches { path, watcher_type } => Request::RemoveWatches {
                path: p(path),
                watcher_type,
            },
            Request::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
            } => Request::SetWatches {
                relative_zxid,
                data: ps(data),
                exist: ps(exist),
                child: ps(child),
            },
            Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive,
            } => Request::SetWatches2 {
                relative_zxid,
                data: ps(data),
                exist: ps(exist),
                child: ps(child),
                persistent: ps(persistent),
                persistent_recursive: ps(persistent_recursive),
            },
            Request::GetEphemerals { prefix_path } => Request::GetEphemerals {
                prefix_path: p(prefix_path),
            },
            Request::GetAllChildrenNumber { path } => {
                Request::GetAllChildrenNumber { path: p(path) }
            }
            Request::AddWatch { path, mode } => Request::AddWatch {
                path: p(path),
                mode,
            },
            other @ (Request::Ping
            | Request::Reconfig { .. }
            | Request::Auth { .. }
            | Request::Sasl { .. }
            | Request::WhoAmI
            | Request::CloseSession
            | Request::Unknown { .. }) => other,
        }
    }

    /// The response with every server path mapped back to a client path.
    pub fn strip_response(&self, resp: Response) -> Response {
        if self.is_none() {
            return resp;
        }
        let s = |p: String| self.strip(&p);
        let strip_result = |r: MultiResult| match r {
            MultiResult::Create { path } => MultiResult::Create { path: s(path) },
            MultiResult::Create2 { path, stat } => MultiResult::Create2 {
                path: s(path),
                stat,
            },
            other => other,
        };
        match resp {
            Response::Create { path } => Response::Create { path: s(path) },
            Response::Create2 { path, stat } => Response::Create2 {
                path: s(path),
                stat,
            },
            Response::Sync { path } => Response::Sync { path: s(path) },
            Response::Multi(results) => {
                Response::Multi(results.into_iter().map(strip_result).collect())
            }
            Response::MultiRead(results) => {
                Response::MultiRead(results.into_iter().map(strip_result).collect())
            }
            Response::GetEphemerals { ephemerals } => Response::GetEphemerals {
                ephemerals: ephemerals.into_iter().map(s).collect(),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::client::CreateRequest;
    use crate::types::Stat;

    fn hosts(v: &[(&str, u16)]) -> Vec<(String, u16)> {
        v.iter().map(|(h, p)| (h.to_string(), *p)).collect()
    }

    #[test]
    fn parses_hosts_ports_and_chroot() {
        let cs = ConnectString::parse("a:1, b ,[::1]:3,[fe80::2],c:/app/x").unwrap();
        assert_eq!(
            cs.hosts,
            hosts(&[
                ("a", 1),
                ("b", 2181),
                ("::1", 3),
                ("fe80::2", 2181),
                ("c", 2181)
            ])
        );
        assert_eq!(cs.chroot.as_deref(), Some("/app/x"));
        let cs = ConnectString::parse("127.0.0.1:2182/").unwrap();
        assert_eq!(cs.hosts, hosts(&[("127.0.0.1", 2182)]));
        assert_eq!(cs.chroot, None);
    }

    #[test]
    fn rejects_bad_connect_strings() {
        for bad in [
            "",
            ",",
            "/app",
            "a:x",
            "a:99999",
            ":1",
            "a/app/",
            "a/app//b",
            "a/app/../b",
            "[::1",
        ] {
            assert!(
                matches!(ConnectString::parse(bad), Err(Error::BadArguments(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn chroot_maps_paths_both_ways() {
        let c = Chroot::new(Some("/app".into()));
        assert_eq!(c.prefix("/"), "/app");
        assert_eq!(c.prefix("/x/y"), "/app/x/y");
        assert_eq!(c.strip("/app"), "/");
        assert_eq!(c.strip("/app/x"), "/x");
        assert_eq!(
            c.strip("/apple"),
            "/apple",
            "a sibling is not inside the chroot"
        );
        let none = Chroot::default();
        assert_eq!(none.prefix("/x"), "/x");
        assert_eq!(none.strip("/x"), "/x");
    }

    #[test]
    fn chroot_applies_to_requests_and_responses() {
        let c = Chroot::new(Some("/app".into()));
        let req = Request::Multi(vec![
            MultiOp::Create(CreateRequest {
                path: "/a".into(),
                ..CreateRequest::default()
            }),
            MultiOp::Delete {
                path: "/b".into(),
                version: -1,
            },
        ]);
        match c.prefix_request(req) {
            Request::Multi(ops) => {
                assert_eq!(ops[0].path(), "/app/a");
                assert_eq!(ops[1].path(), "/app/b");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            c.prefix_request(Request::GetData {
                path: "/".into(),
                watch: true
            }),
            Request::GetData {
                path: "/app".into(),
                watch: true
            }
        );
        let watches = Request::SetWatches2 {
            relative_zxid: 5,
            data: vec!["/d".into()],
            exist: vec!["/".into()],
            child: vec![],
            persistent: vec!["/p".into()],
            persistent_recursive: vec!["/r".into()],
        };
        assert_eq!(
            c.prefix_request(watches),
            Request::SetWatches2 {
                relative_zxid: 5,
                data: vec!["/app/d".into()],
                exist: vec!["/app".into()],
                child: vec![],
                persistent: vec!["/app/p".into()],
                persistent_recursive: vec!["/app/r".into()],
            }
        );
        let resp = Response::Multi(vec![
            MultiResult::Create2 {
                path: "/app/a0000000001".into(),
                stat: Stat::default(),
            },
            MultiResult::Delete,
        ]);
        assert_eq!(
            c.strip_response(resp),
            Response::Multi(vec![
                MultiResult::Create2 {
                    path: "/a0000000001".into(),
                    stat: Stat::default()
                },
                MultiResult::Delete,
            ])
        );
    }
}
