//! `zabkeeper`: the server, the command-line client, and operator tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use zabkeeper::runtime::{self, ServerConfig, SystemClock};

#[derive(Parser)]
#[command(
    name = "zabkeeper",
    version,
    about = "A ZooKeeper-compatible coordination service"
)]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server, from a zoo.cfg or from the quick flags.
    Server(ServerArgs),
    /// A zkCli-style client: runs one command, or reads commands from stdin.
    Cli(zabkeeper::client::cli::CliArgs),
    /// Print the txns of a transaction log file.
    DumpLog { file: PathBuf },
    /// Print the contents of a snapshot file.
    DumpSnapshot { file: PathBuf },
    /// Make a zabkeeper data dir from an Apache ZooKeeper 3.x one (its snapshot and the
    /// logged txns after it): the same tree, ACLs, sessions and last zxid.
    Import(ImportArgs),
    /// Write a zabkeeper data dir (a stopped server's) as an Apache ZooKeeper 3.x data
    /// dir, to roll back to ZooKeeper.
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// The zabkeeper dataDir.
    #[arg(long)]
    data_dir: PathBuf,
    /// The zabkeeper dataLogDir (default: the dataDir).
    #[arg(long)]
    data_log_dir: Option<PathBuf>,
    /// The new ZooKeeper dataDir (must hold no data yet).
    #[arg(long)]
    zk_data_dir: PathBuf,
}

#[derive(Args)]
struct ImportArgs {
    /// ZooKeeper's dataDir (snapshots, epochs; its version-2 directory or the one above).
    #[arg(long)]
    zk_data_dir: PathBuf,
    /// ZooKeeper's dataLogDir, if it is not its dataDir.
    #[arg(long)]
    zk_data_log_dir: Option<PathBuf>,
    /// The new zabkeeper dataDir (must hold no data yet).
    #[arg(long)]
    data_dir: PathBuf,
    /// The new zabkeeper dataLogDir (default: the dataDir).
    #[arg(long)]
    data_log_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServerArgs {
    /// ZooKeeper's zoo.cfg.
    #[arg(long, conflicts_with_all = ["port", "data_dir"])]
    config: Option<PathBuf>,
    /// Client port (quick form).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory for snapshots, logs and epochs (quick form).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (quick form).
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// tickTime in milliseconds (quick form).
    #[arg(long)]
    tick_time: Option<u64>,
    /// Four-letter words to allow, comma separated, or * (quick form).
    #[arg(long)]
    four_letter_words: Option<String>,
    /// Accept TTL nodes (ZooKeeper's `extendedTypesEnabled`; quick form).
    #[arg(long)]
    extended_types: bool,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn server_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    if let Some(path) = &args.config {
        return Ok(ServerConfig::from_file(path)?);
    }
    let (Some(port), Some(dir)) = (args.port, args.data_dir.clone()) else {
        anyhow::bail!("give either --config zoo.cfg, or both --port and --data-dir");
    };
    let mut cfg = ServerConfig::standalone(port, dir);
    cfg.client_port_address = args.address;
    if let Some(t) = args.tick_time {
        anyhow::ensure!(t > 0, "--tick-time must be positive");
        cfg.tick_time_ms = t;
        cfg.min_session_timeout_ms = (2 * t) as i32;
        cfg.max_session_timeout_ms = (20 * t) as i32;
    }
    if let Some(w) = &args.four_letter_words {
        cfg.four_letter_words = w.split(',').map(|s| s.trim().to_string()).collect();
    }
    cfg.extended_types_enabled = args.extended_types;
    cfg.validate()?;
    Ok(cfg)
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let config = server_config(&args)?;
    if !config.servers.is_empty() {
        tracing::info!(
            "server {} of an ensemble of {} (server.N entries in the configuration)",
            config.my_id,
            config.servers.len()
        );
    }
    let storage = runtime::open_file_storage(&config)?;
    let handle = runtime::start(config, storage, Arc::new(SystemClock)).await?;
    let stop = handle.stopper();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupted: shutting down");
            stop.stop();
        }
    });
    handle.wait().await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: anyhow::Result<i32> = rt.block_on(async move {
        match cli.command {
            Command::Server(args) => run_server(args).await.map(|_| 0),
            Command::Cli(args) => zabkeeper::client::cli::run(args).await,
            Command::DumpLog { file } => runtime::tools::dump_log_file(&file).map(|_| 0),
            Command::DumpSnapshot { file } => runtime::tools::dump_snapshot_file(&file).map(|_| 0),
            Command::Import(a) => {
                let log_dir = a.data_log_dir.unwrap_or_else(|| a.data_dir.clone());
                let out = zabkeeper::storage::FileStorageOptions::new(&a.data_dir, &log_dir);
                let r = runtime::migrate::import_zookeeper(
                    &a.zk_data_dir,
                    a.zk_data_log_dir.as_deref(),
                    out,
                )?;
                println!(
                    "imported {} znodes and {} sessions at zxid 0x{:x} (epoch {}): {}, then {} txns from {} log files",
                    r.znodes,
                    r.sessions,
                    r.zxid,
                    r.epoch,
                    r.snapshot.map_or("no snapshot".into(), |p| p.display().to_string()),
                    r.txns_replayed,
                    r.logs
                );
                Ok(0)
            }
            Command::Export(a) => {
                let log_dir = a.data_log_dir.unwrap_or_else(|| a.data_dir.clone());
                let from = zabkeeper::storage::FileStorageOptions::new(&a.data_dir, &log_dir);
                let r = runtime::migrate::export_zookeeper(from, &a.zk_data_dir)?;
                println!(
                    "exported {} znodes and {} sessions at zxid 0x{:x} (epoch {}) to {}",
                    r.znodes,
                    r.sessions,
                    r.zxid,
                    r.epoch,
                    r.snapshot.display()
                );
                Ok(0)
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("zabkeeper: {e:#}");
            ExitCode::from(1)
        }
    }
}
