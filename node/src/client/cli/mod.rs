//! `zabkeeper cli`: a zkCli-compatible command line client.
//!
//! Runs one command given on the command line, or reads commands from
//! stdin (one per line) when none is given. Commands, options and output
//! follow ZooKeeper 3.8's `zkCli.sh`: `create [-s] [-e] [-c] [-t ttl] path
//! [data] [acl]`, `get [-s] [-w] path`, `set [-s] [-v version] path data`,
//! `delete [-v version] path`, `deleteall path`, `ls [-s] [-w] [-R] path`,
//! `stat [-w] path`, `getAcl [-s] path`, `setAcl [-s] [-v version] [-R] path
//! acl`, `addauth scheme auth`, `sync path`, `addWatch [-m mode] path`,
//! `removewatches path [-c|-d|-a]`, `getEphemerals [path]`,
//! `getAllChildrenNumber path`, `whoami`, `help`, `quit`. Stats print in
//! zkCli's layout (`cZxid = 0x...`, `ctime = <date>`, ...), dates in UTC.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;

use super::{Client, ClientOptions, Error, WatchedEvent};
use crate::types::{
    keeper_state, perms, watch_mode, watcher_type, Acl, CreateMode, ErrorCode, EventType, Id, Stat,
};

mod commands;
mod format;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

pub use commands::execute;
pub use format::{
    civil_from_days, format_date, format_event, format_stat, parse_acl, perm_string, tokenize,
};

/// Arguments of `zabkeeper cli`.
#[derive(Debug, Clone, clap::Args)]
pub struct CliArgs {
    /// Connect string: `host:port[,host:port...][/chroot]`.
    #[arg(long, default_value = "localhost:2181")]
    pub server: String,
    /// Session timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout: u64,
    /// Accept a read-only server.
    #[arg(long, short = 'r')]
    pub read_only: bool,
    /// Seed for the order in which servers are tried.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The command to run, e.g. `create -e /a data`; none reads commands
    /// from stdin.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Runs the CLI; returns the process exit code (0 ok, 1 a command failed).
pub async fn run(args: CliArgs) -> anyhow::Result<i32> {
    let options = ClientOptions {
        read_only: args.read_only,
        seed: args.seed,
        ..ClientOptions::with_timeout(Duration::from_millis(args.timeout.max(1)))
    };
    let client = Client::connect(&args.server, options)
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let code = if args.command.is_empty() {
        interactive(&client, &args.server).await?
    } else {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        match execute(&client, &args.command, &mut out, &mut err).await {
            Ok(_) => 0,
            Err(()) => 1,
        }
    };
    let _ = client.close().await;
    Ok(code)
}

/// Reads commands from stdin until `quit` or end of input, printing watch
/// events as they arrive.
async fn interactive(client: &Client, server: &str) -> anyhow::Result<i32> {
    if let Some(mut events) = client.take_events() {
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\nWATCHER::\n\n{}\n", format_event(&ev));
                let _ = out.flush();
            }
        });
    }
    let prompt = std::io::stdin().is_terminal();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut n = 0;
    loop {
        if prompt {
            write!(out, "[zk: {server}({:?}) {n}] ", client.state())?;
            out.flush()?;
        }
        let line = read_stdin_line().await?;
        if line.0 == 0 {
            break;
        }
        let words = match tokenize(&line.1) {
            Ok(w) => w,
            Err(e) => {
                writeln!(err, "{e}")?;
                continue;
            }
        };
        if words.is_empty() {
            continue;
        }
        n += 1;
        if let Ok(Flow::Quit) = execute(client, &words, &mut out, &mut err).await {
            break;
        }
    }
    Ok(0)
}

/// Reads one line of stdin (length 0 at end of input) without blocking the
/// runtime.
#[cfg(not(madsim))]
async fn read_stdin_line() -> anyhow::Result<(usize, String)> {
    Ok(tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|len| (len, s))
    })
    .await??)
}

/// Under madsim there is no blocking pool (and the CLI never runs there);
/// read directly so the crate still builds.
#[cfg(madsim)]
async fn read_stdin_line() -> anyhow::Result<(usize, String)> {
    let mut s = String::new();
    let len = std::io::stdin().read_line(&mut s)?;
    Ok((len, s))
}

/// What the caller should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// `quit` was given.
    Quit,
}
