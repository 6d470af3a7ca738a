//! zkCli's commands: option parsing, each command's behaviour and its
//! messages, worded as ZooKeeper 3.8's `zkCli.sh`.

use super::*;

const USAGE: &str = "ZooKeeper -server host:port cmd args
\taddauth scheme auth
\taddWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE
\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]
\tdelete [-v version] path
\tdeleteall path
\tgetAcl [-s] path
\tgetAllChildrenNumber path
\tgetEphemerals path
\tget [-s] [-w] path
\tls [-s] [-w] [-R] path
\tquit
\tremovewatches path [-c|-d|-a]
\tset [-s] [-v version] path data
\tsetAcl [-s] [-v version] [-R] path acl
\tstat [-w] path
\tsync path
\twhoami";

/// Command-line words split into flags (with their values) and positional
/// arguments, for one command's option spec.
pub(super) struct Parsed {
    pub(super) flags: Vec<(char, Option<String>)>,
    pub(super) args: Vec<String>,
}

impl Parsed {
    /// Splits `words` (without the command name). `with_value` lists flags
    /// that take a value, `plain` those that do not.
    pub(super) fn parse(words: &[String], plain: &str, with_value: &str) -> Result<Parsed, String> {
        let mut flags = Vec::new();
        let mut args = Vec::new();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let mut chars = w.chars();
            match (chars.next(), chars.next(), chars.next()) {
                (Some('-'), Some(f), None) if plain.contains(f) => flags.push((f, None)),
                (Some('-'), Some(f), None) if with_value.contains(f) => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("Missing argument for option: {f}"))?;
                    flags.push((f, Some(v.clone())));
                }
                (Some('-'), Some(f), None) if f.is_ascii_alphabetic() => {
                    return Err(format!("Unrecognized option: -{f}"))
                }
                _ => args.push(w.clone()),
            }
        }
        Ok(Parsed { flags, args })
    }

    pub(super) fn has(&self, f: char) -> bool {
        self.flags.iter().any(|(g, _)| *g == f)
    }

    pub(super) fn value(&self, f: char) -> Option<&str> {
        self.flags
            .iter()
            .find(|(g, _)| *g == f)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(super) fn version(&self) -> Result<i32, String> {
        match self.value('v') {
            None => Ok(-1),
            Some(v) => v
                .parse()
                .map_err(|_| format!("version {v} is not a valid number")),
        }
    }
}

/// Runs one command (`words[0]` is its name), writing results to `out` and
/// errors to `err` as zkCli does. `Err(())` means the command failed (its
/// message is already written).
pub async fn execute(
    client: &Client,
    words: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Flow, ()> {
    let Some((cmd, rest)) = words.split_first() else {
        return Ok(Flow::Continue);
    };
    match run_command(client, cmd, rest, out).await {
        Ok(flow) => Ok(flow),
        Err(msg) => {
            let _ = writeln!(err, "{msg}");
            Err(())
        }
    }
}

/// An error message for a failed operation on `path`, worded as zkCli's.
fn describe(e: &Error, path: &str) -> String {
    match e.code() {
        Some(ErrorCode::NoNode) => format!("Node does not exist: {path}"),
        Some(ErrorCode::BadVersion) => format!("version No is not valid : {path}"),
        Some(ErrorCode::NoAuth) => format!("Insufficient permission : {path}"),
        Some(ErrorCode::NotEmpty) => format!("Node not empty: {path}"),
        Some(ErrorCode::NodeExists) => format!("Node already exists: {path}"),
        Some(ErrorCode::NoChildrenForEphemerals) => {
            format!("Ephemerals cannot have children: {path}")
        }
        Some(code) => format!("KeeperErrorCode = {code:?} for {path}"),
        None => format!("{e} for {path}"),
    }
}

fn need(args: &[String], n: usize) -> Result<(), String> {
    if args.len() < n {
        Err(format!("Expected at least {n} argument(s)\n{USAGE}"))
    } else {
        Ok(())
    }
}

fn w(out: &mut dyn Write, s: &str) -> Result<(), String> {
    writeln!(out, "{s}").map_err(|e| e.to_string())
}

async fn run_command(
    client: &Client,
    cmd: &str,
    rest: &[String],
    out: &mut dyn Write,
) -> Result<Flow, String> {
    match cmd {
        "quit" | "exit" => return Ok(Flow::Quit),
        "help" => w(out, USAGE)?,
        "create" => {
            let p = Parsed::parse(rest, "sec", "t")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            let data = p
                .args
                .get(1)
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default();
            let acl = match p.args.get(2) {
                Some(a) => parse_acl(a)?,
                None => Acl::open_unsafe(),
            };
            let (s, e, c) = (p.has('s'), p.has('e'), p.has('c'));
            if c && (s || e) {
                return Err("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential."
                    .into());
            }
            let created = match p.value('t') {
                Some(t) => {
                    if e {
                        return Err("TTLs cannot be used with Ephemeral znodes".into());
                    }
                    if c {
                        return Err("TTLs cannot be used with Container znodes".into());
                    }
                    let ttl: u64 = t
                        .parse()
                        .map_err(|_| format!("ttl {t} is not a valid number"))?;
                    let mode = if s {
                        CreateMode::PersistentSequentialWithTtl
                    } else {
                        CreateMode::PersistentWithTtl
                    };
                    client
                        .create_ttl(path, &data, &acl, mode, Duration::from_millis(ttl))
                        .await
                }
                None => {
                    let mode = match (s, e, c) {
                        (_, _, true) => CreateMode::Container,
                        (true, true, _) => CreateMode::EphemeralSequential,
                        (true, false, _) => CreateMode::PersistentSequential,
                        (false, true, _) => CreateMode::Ephemeral,
                        (false, false, _) => CreateMode::Persistent,
                    };
                    client.create(path, &data, &acl, mode).await
                }
            };
            let (actual, _) = created.map_err(|e| describe(&e, path))?;
            w(out, &format!("Created {actual}"))?;
        }
        "get" => {
            let p = Parsed::parse(rest, "sw", "")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            let (data, stat) = client
                .get_data_opt(path, p.has('w'))
                .await
                .map_err(|e| describe(&e, path))?;
            // zkCli prints null data as "null".
            match data {
                Some(data) => w(out, &String::from_utf8_lossy(&data))?,
                None => w(out, "null")?,
            }
            if p.has('s') {
                w(out, &format_stat(&stat))?;
            }
        }
        "set" => {
            let p = Parsed::parse(rest, "s", "v")?;
            need(&p.args, 2)?;
            let path = &p.args[0];
            let stat = client
                .set_data(path, p.args[1].as_bytes(), p.version()?)
                .await
                .map_err(|e| describe(&e, path))?;
            if p.has('s') {
                w(out, &format_stat(&stat))?;
            }
        }
        "delete" => {
            let p = Parsed::parse(rest, "", "v")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            client
                .delete(path, p.version()?)
                .await
                .map_err(|e| describe(&e, path))?;
        }
        "deleteall" | "rmr" => {
            let p = Parsed::parse(rest, "", "b")?;
            need(&p.args, 1)?;
            delete_all(client, &p.args[0]).await?;
        }
        "ls" | "ls2" => {
            let p = Parsed::parse(rest, "swR", "")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            if p.has('R') {
                for node in subtree(client, path).await? {
                    w(out, &node)?;
                }
            } else {
                let (mut children, stat) = client
                    .get_children2(path, p.has('w'))
                    .await
                    .map_err(|e| describe(&e, path))?;
                children.sort();
                w(out, &format!("[{}]", children.join(", ")))?;
                if p.has('s') || cmd == "ls2" {
                    w(out, &format_stat(&stat))?;
                }
            }
        }
        "stat" => {
            let p = Parsed::parse(rest, "w", "")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            match client
                .exists(path, p.has('w'))
                .await
                .map_err(|e| describe(&e, path))?
            {
                Some(stat) => w(out, &format_stat(&stat))?,
                None => return Err(format!("Node does not exist: {path}")),
            }
        }
        "getAcl" => {
            let p = Parsed::parse(rest, "s", "")?;
            need(&p.args, 1)?;
            let path = &p.args[0];
            let (acl, stat) = client.get_acl(path).await.map_err(|e| describe(&e, path))?;
            for a in &acl {
                w(
                    out,
                    &format!("'{},'{}\n: {}", a.id.scheme, a.id.id, perm_string(a.perms)),
                )?;
            }
            if p.has('s') {
                w(out, &format_stat(&stat))?;
            }
        }
        "setAcl" => {
            let p = Parsed::parse(rest, "sR", "v")?;
            need(&p.args, 2)?;
            let path = &p.args[0];
            let acl = parse_acl(&p.args[1])?;
            let version = p.version()?;
            if p.has('R') {
                for node in subtree(client, path).await? {
                    client
                        .set_acl(&node, &acl, -1)
                        .await
                        .map_err(|e| describe(&e, &node))?;
                }
            } else {
                let stat = client
                    .set_acl(path, &acl, version)
                    .await
                    .map_err(|e| describe(&e, path))?;
                if p.has('s') {
                    w(out, &format_stat(&stat))?;
                }
            }
        }
        "addauth" => {
            need(rest, 1)?;
            let auth = rest.get(1).map(String::as_bytes).unwrap_or_default();
            client
                .add_auth(&rest[0], auth)
                .await
                .map_err(|e| format!("{e}"))?;
        }
        "sync" => {
            need(rest, 1)?;
            client
                .sync(&rest[0])
                .await
                .map_err(|e| format!("Sync returned {}", e.code().map_or(-1, |c| c.code())))?;
            w(out, "Sync is OK")?;
        }
        "addWatch" => {
            let p = Parsed::parse(rest, "", "m")?;
            need(&p.args, 1)?;
            let mode = match p.value('m') {
                None | Some("PERSISTENT_RECURSIVE") => watch_mode::PERSISTENT_RECURSIVE,
                Some("PERSISTENT") => watch_mode::PERSISTENT,
                Some(other) => return Err(format!("Unsupported mode: {other}")),
            };
            let path = &p.args[0];
            client
                .add_watch(path, mode)
                .await
                .map_err(|e| describe(&e, path))?;
        }
        "removewatches" => {
            let p = Parsed::parse(rest, "cdal", "")?;
            need(&p.args, 1)?;
            let kind = if p.has('c') {
                watcher_type::CHILDREN
            } else if p.has('d') {
                watcher_type::DATA
            } else {
                watcher_type::ANY
            };
            let path = &p.args[0];
            client
                .remove_watches(path, kind)
                .await
                .map_err(|e| describe(&e, path))?;
        }
        "getEphemerals" => {
            let path = rest.first().map_or("/", String::as_str);
            let list = client
                .get_ephemerals(path)
                .await
                .map_err(|e| describe(&e, path))?;
            w(out, &format!("[{}]", list.join(", ")))?;
        }
        "getAllChildrenNumber" => {
            need(rest, 1)?;
            let n = client
                .get_all_children_number(&rest[0])
                .await
                .map_err(|e| describe(&e, &rest[0]))?;
            w(out, &n.to_string())?;
        }
        "whoami" => {
            let ids = client.who_am_i().await.map_err(|e| format!("{e}"))?;
            w(out, "Auth scheme: User")?;
            for id in ids {
                w(out, &format!("{}: {}", id.auth_scheme, id.user))?;
            }
        }
        other => {
            return Err(format!(
                "Command not found: Command not found {other}\n{USAGE}"
            ))
        }
    }
    Ok(Flow::Continue)
}

/// Every node of the subtree at `path`, parents before children, siblings
/// sorted (as `ls -R` prints them).
async fn subtree(client: &Client, path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_string()];
    while let Some(node) = stack.pop() {
        let mut children = client
            .get_children(&node, false)
            .await
            .map_err(|e| describe(&e, &node))?;
        children.sort();
        for child in children.iter().rev() {
            stack.push(if node == "/" {
                format!("/{child}")
            } else {
                format!("{node}/{child}")
            });
        }
        out.push(node);
    }
    Ok(out)
}

/// Deletes a node and everything under it, deepest first.
async fn delete_all(client: &Client, path: &str) -> Result<(), String> {
    let nodes = subtree(client, path).await?;
    for node in nodes.iter().rev() {
        if node == "/" || node == "/zookeeper" || node.starts_with("/zookeeper/") {
            continue;
        }
        match client.delete(node, -1).await {
            Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => {}
            Err(e) => return Err(describe(&e, node)),
        }
    }
    Ok(())
}
