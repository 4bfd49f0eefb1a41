//! The `mfi-ledger` binary: the server (`serve`), offline verification
//! (`verify`), and the client commands a branch clerk or auditor uses.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use mfi_ledger::api::{self, ServerLimits};
use mfi_ledger::cli;
use mfi_ledger::ledger::{CheckpointPolicy, Clock, FixedClock, Ledger, LedgerConfig, SystemClock};
use mfi_ledger::store::DiskStore;

/// glibc's allocator showed as a fifth of the write path's profile; the
/// ledger allocates many small, short-lived values per command.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An append-only, double-entry ledger for microfinance.
#[derive(Parser)]
#[command(name = "mfi-ledger", version, about)]
struct Cli {
    #[command(flatten)]
    client: cli::ClientOptions,
    /// How log lines on stderr are written: text for a person, json (one
    /// object per line) for a log collector. Colour only on a terminal.
    #[arg(
        long,
        global = true,
        env = "MFI_LEDGER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ledger service.
    Serve(ServeArgs),
    /// Check a data directory offline (server stopped): replay the journal,
    /// check every hash and balance, compare the stored derived state.
    Verify(VerifyArgs),
    /// Copy a ledger's journal between the embedded store and PostgreSQL,
    /// either way, checking the chain on both sides: from a data directory
    /// (server stopped) into an empty PostgreSQL database, or from a
    /// PostgreSQL database into a new data directory.
    Migrate(MigrateArgs),
    /// Drive a running server with concurrent gRPC clients and report
    /// throughput and latency, then check every acknowledged command is in
    /// the ledger.
    Load(mfi_ledger::load::LoadArgs),
    /// Simulate a branch's years through a running server's gRPC API (a
    /// deterministic load a person can watch).
    Simulate(mfi_ledger::sim::SimulateArgs),
    /// Reports for managers, read from a running server.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Serve an echo BranchService that does no ledger work (the RPC
    /// ceiling for benchmarks).
    #[command(hide = true)]
    EchoServer(EchoArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// A branch's year against the previous year: a table, and with --html a
    /// self-contained HTML report with charts.
    Branch(BranchReportArgs),
}

#[derive(Args)]
struct BranchReportArgs {
    /// Branch id, e.g. TB.
    branch: String,
    /// The year reported on, e.g. 2023.
    #[arg(long)]
    year: i32,
    /// Also write the HTML report (one file, no network needed) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
}

/// Where `serve` keeps the journal of record.
#[derive(Clone, Debug)]
enum StoreChoice {
    /// The journal file in the data directory.
    Embedded,
    /// A PostgreSQL database (its connection string).
    Postgres(String),
}

fn parse_store(text: &str) -> Result<StoreChoice, String> {
    if text == "embedded" {
        Ok(StoreChoice::Embedded)
    } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(StoreChoice::Postgres(text.to_owned()))
    } else {
        Err(
            "must be `embedded` or a PostgreSQL connection string (postgres://USER@HOST/DATABASE)"
                .to_owned(),
        )
    }
}

/// The data directory `serve` creates without `--init`.
const DATA_DEFAULT: &str = "./data";

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MFI_LEDGER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory of the journal and the state cache. Only the default,
    /// ./data, is created when missing; any other needs --init.
    #[arg(long, env = "MFI_LEDGER_DATA", default_value = DATA_DEFAULT)]
    data: PathBuf,
    /// Where the journal of record is kept: `embedded` (a file in the data
    /// directory, fsynced per batch), or a PostgreSQL connection string
    /// (`postgres://USER@HOST:PORT/DATABASE`) whose database then holds the
    /// journal, while the data directory keeps what is derived from it
    /// (state cache, Merkle tree, checkpoints, access log).
    #[arg(long, env = "MFI_LEDGER_STORE", default_value = "embedded", value_name = "STORE",
          value_parser = parse_store, conflicts_with = "read_only")]
    store: StoreChoice,
    /// With a PostgreSQL store: how long the writer's lease on the journal
    /// lasts unless renewed (it is renewed every third of it). A second
    /// server waits to write until the lease is given back (a clean stop) or
    /// expires (a crash).
    #[arg(long, env = "MFI_LEDGER_LEASE_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_seconds: u64,
    /// With a PostgreSQL store: start as a hot standby. It follows the
    /// journal the writer writes, serves every read (point auditors at it),
    /// refuses writes (UNAVAILABLE), and takes over writing, without a
    /// restart, when the writer's lease lapses (given back at its clean
    /// stop, or expired after a crash).
    #[arg(long, env = "MFI_LEDGER_STANDBY", value_parser = BoolishValueParser::new())]
    standby: bool,
    /// Create the data directory if it does not exist: a new, empty ledger
    /// (without it a mistyped --data is refused, not served empty).
    #[arg(long)]
    init: bool,
    /// Serve a copy of the books (a backup, or a directory on read-only
    /// media) without writing to it: every read is answered, every write is
    /// refused (FAILED_PRECONDITION). The state is rebuilt in memory from the
    /// journal; reads are not recorded in the access log.
    #[arg(long, conflicts_with = "init")]
    read_only: bool,
    /// Read settings from this TOML file: each key is an option's long name
    /// with `_` for `-` (e.g. `batch_size_max = 1024`); flags and the
    /// environment win over it. Every key is in the README.
    #[arg(long, env = "MFI_LEDGER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP) on this address,
    /// e.g. 127.0.0.1:9090; off unless given. The names are in the README.
    #[arg(long, env = "MFI_LEDGER_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Most commands made durable together by one fsync.
    #[arg(long, env = "MFI_LEDGER_BATCH_SIZE_MAX", default_value_t = LedgerConfig::default().batch_size_max)]
    batch_size_max: usize,
    /// Most commands waiting for the writer before new ones are refused.
    #[arg(long, env = "MFI_LEDGER_QUEUE_DEPTH_MAX", default_value_t = LedgerConfig::default().queue_depth_max)]
    queue_depth_max: usize,
    /// Most bytes of commands waiting for the writer (each counted at its
    /// encoded size) before new ones are refused.
    #[arg(long, env = "MFI_LEDGER_QUEUE_BYTES_MAX", default_value_t = LedgerConfig::default().queue_bytes_max)]
    queue_bytes_max: usize,
    /// Entries between checkpoints of the derived-state cache (at most this
    /// many are replayed from the journal at startup after a crash).
    #[arg(long, env = "MFI_LEDGER_CHECKPOINT_ENTRIES", default_value_t = LedgerConfig::default().checkpoint_entries)]
    checkpoint_entries: u64,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "MFI_LEDGER_MESSAGE_SIZE_MAX", default_value_t = ServerLimits::default().message_size_max)]
    message_size_max: usize,
    /// Most requests served at once on one connection.
    #[arg(long, env = "MFI_LEDGER_REQUESTS_PER_CONNECTION_MAX", default_value_t = ServerLimits::default().requests_per_connection_max)]
    requests_per_connection_max: usize,
    /// Most connections open at once from one IP address.
    #[arg(long, env = "MFI_LEDGER_CONNECTIONS_PER_PEER_MAX", default_value_t = ServerLimits::default().connections_per_peer_max)]
    connections_per_peer_max: usize,
    /// Most connections open at once in all.
    #[arg(long, env = "MFI_LEDGER_CONNECTIONS_MAX", default_value_t = ServerLimits::default().connections_max)]
    connections_max: usize,
    /// Longest time spent on one request, in milliseconds; past it the client
    /// gets CANCELLED and may retry with the same request id.
    #[arg(long, env = "MFI_LEDGER_REQUEST_TIMEOUT_MS", default_value_t = ServerLimits::default().request_timeout.as_millis() as u64)]
    request_timeout_ms: u64,
    /// Record every entry at this instant (RFC 3339, e.g. 2024-01-01T00:00:00Z)
    /// instead of the system time, so that a simulation run twice gives the
    /// same journal hash for hash. For simulations and demonstrations only:
    /// "today" never moves.
    #[arg(long, value_name = "TIME")]
    fixed_clock: Option<chrono::DateTime<chrono::Utc>>,
    /// The institution's chart of accounts: a TOML file giving the
    /// general-ledger code and name of the lines it names (see the README);
    /// the other lines keep the default MFI chart's.
    #[arg(long, env = "MFI_LEDGER_CHART", value_name = "FILE")]
    chart: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// The journal's signed checkpoints.
#[derive(Args)]
#[command(next_help_heading = "Checkpoints")]
struct LogArgs {
    /// The log's origin (the first line of its checkpoints, and its key's
    /// name), e.g. `ledger.tym.example/thai-binh`; used when the data
    /// directory's log key (DATA/log.key) is created, and checked against it
    /// after. Default: `mfi-ledger/` and 16 random hex digits.
    #[arg(long, env = "MFI_LEDGER_LOG_ORIGIN", value_name = "ORIGIN")]
    log_origin: Option<String>,
    /// Entries after which a checkpoint of the journal is signed.
    #[arg(long, env = "MFI_LEDGER_LOG_CHECKPOINT_ENTRIES", default_value_t = CheckpointPolicy::default().every_entries)]
    log_checkpoint_entries: u64,
    /// Longest time between checkpoints while entries arrive, in seconds.
    #[arg(long, env = "MFI_LEDGER_LOG_CHECKPOINT_SECONDS", default_value_t = CheckpointPolicy::default().every.as_secs())]
    log_checkpoint_seconds: u64,
}

/// How the server protects its connections.
#[derive(Args)]
#[command(next_help_heading = "TLS")]
struct TlsArgs {
    /// Serve over TLS with this certificate chain (PEM, the server's
    /// certificate first); needs --tls-key.
    #[arg(long, env = "MFI_LEDGER_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MFI_LEDGER_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Verify client certificates against this CA (PEM); needs --tls-cert.
    /// A client may still connect without a certificate (and authenticate
    /// with a token), but one presenting a certificate that does not chain
    /// to this CA, has expired or is not for client authentication is
    /// refused.
    #[arg(long, env = "MFI_LEDGER_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Listen without TLS on an address other hosts can reach (behind a
    /// TLS-terminating proxy, or on a network you trust): calls, tokens
    /// included, then cross the network in clear text. Without TLS and
    /// without this flag the server listens only on loopback addresses.
    #[arg(long, env = "MFI_LEDGER_ALLOW_INSECURE_LISTEN", value_parser = BoolishValueParser::new())]
    allow_insecure_listen: bool,
}

#[derive(Args)]
struct MigrateArgs {
    /// The journal to copy: a data directory, or a PostgreSQL connection
    /// string (postgres://USER@HOST/DATABASE).
    #[arg(long, value_name = "DATA|URL")]
    from: String,
    /// Where to copy it: an empty PostgreSQL database (its connection
    /// string), or a new data directory.
    #[arg(long, value_name = "URL|DATA")]
    to: String,
}

#[derive(Args)]
struct VerifyArgs {
    /// Data directory to check. With a PostgreSQL --store: the server's
    /// data directory, whose checkpoints (and log.pub) the journal in the
    /// database is checked against, when it is there.
    #[arg(long, env = "MFI_LEDGER_DATA", default_value = "./data")]
    data: PathBuf,
    /// Where the journal is: `embedded` (in the data directory) or a
    /// PostgreSQL connection string; the database's journal is copied, as
    /// it stands, into a temporary directory and checked there.
    #[arg(long, env = "MFI_LEDGER_STORE", default_value = "embedded", value_name = "STORE",
          value_parser = parse_store)]
    store: StoreChoice,
    /// The log's verifier key (the text, or a file holding it) to check the
    /// checkpoints with, e.g. the one the institution published; default:
    /// the --checkpoints folder's log.pub, else DATA/log.pub, the data
    /// directory's own copy.
    #[arg(long, value_name = "KEY")]
    log_key: Option<String>,
    /// An auditor's folder (`audit fetch --dir DIR`): the journal must also
    /// give every checkpoint kept there (checked with its log.pub unless
    /// --log-key is given), so a copy whose own checkpoints were removed or
    /// replaced is still held to what the auditor saw.
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Check the chain only (checksums, encoding, sequence, hash chain,
    /// balance, the Merkle tree and its checkpoints, the access log),
    /// without re-deciding every command or comparing the stored state:
    /// many times faster, for a frequent check between full ones.
    #[arg(long)]
    chain_only: bool,
}

/// A shared lock on DATA/journal.log (none when there is no journal), or
/// a refusal when a server holds it: a directory being served changes
/// under a verification, and a copy or a backup is what to verify.
fn journal_lock_shared(data: &std::path::Path) -> anyhow::Result<Option<std::fs::File>> {
    let path = data.join("journal.log");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use: a running server holds its journal's lock. Verify a backup or a \
             copy of the directory, or stop the server first",
            data.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The PostgreSQL journal at `url`, copied as it stands into a temporary
/// data directory with the server's log key, checkpoints and access log
/// from `data`, copied first and in that order: every checkpoint is then of
/// a journal size the copy holds, and every access-log record one anchors
/// is in the copy. Those two files are copied as they are: on a running
/// server, a record being appended at that instant may be cut, and
/// `verify` then says so (verify again).
fn copy_for_verify(url: &str, data: &std::path::Path) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::Builder::new()
        .prefix("mfi-ledger-verify-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("making a temporary directory for the journal's copy")?;
    use mfi_ledger::store::{access_log::ACCESS_LOG_FILE, checkpoint_log::CHECKPOINT_LOG_FILE};
    let log_pub = mfi_ledger::checkpoint::keys::LOG_VERIFIER_FILE;
    for name in [log_pub, CHECKPOINT_LOG_FILE, ACCESS_LOG_FILE] {
        let from = data.join(name);
        if from.exists() {
            std::fs::copy(&from, scratch.path().join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    mfi_ledger::store::export_journal(url, scratch.path())
        .context("copying the PostgreSQL journal to verify it")?;
    Ok(scratch)
}

fn run_migrate(args: MigrateArgs, json: bool) -> anyhow::Result<()> {
    let is_url = |text: &str| text.starts_with("postgres://") || text.starts_with("postgresql://");
    let (copied, next) = match (is_url(&args.from), is_url(&args.to)) {
        (false, true) => {
            let from = std::path::Path::new(&args.from);
            let options = mfi_ledger::store::PostgresOptions::new(&args.to);
            let copied = mfi_ledger::store::import_journal(from, &options).with_context(|| {
                format!("copying the journal in {} to PostgreSQL", from.display())
            })?;
            let next = format!(
                "serve it with `mfi-ledger serve --store URL --data NEW_DIR`; copy log.key and \
                 log.pub from {} into NEW_DIR first to go on signing checkpoints with the same key",
                from.display()
            );
            (copied, next)
        }
        (true, false) => {
            let to = std::path::Path::new(&args.to);
            let copied = mfi_ledger::store::export_journal(&args.from, to)
                .with_context(|| format!("copying the PostgreSQL journal to {}", to.display()))?;
            let next = format!(
                "serve it with `mfi-ledger serve --data {}` (its first start rebuilds the state); \
                 copy log.key and log.pub from the PostgreSQL server's data directory into it \
                 first to go on signing checkpoints with the same key",
                to.display()
            );
            (copied, next)
        }
        _ => bail!(
            "--from and --to: one must be a data directory and the other a PostgreSQL connection \
             string (postgres://...)"
        ),
    };
    let last_hash = hex::encode(copied.last_hash);
    cli::Report {
        text: format!(
            "copied {} entries; the copy ends at the same hash as the original, {last_hash}, \
             and every entry's hash matches\n{next}\n",
            copied.entries
        ),
        json: serde_json::json!({ "entries": copied.entries, "last_hash": last_hash }),
    }
    .print(json)
}

/// A key given as its text or as the path of a file holding it.
fn key_text(key: &str) -> anyhow::Result<String> {
    let path = std::path::Path::new(key);
    if path.exists() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading the key in {}", path.display()));
    }
    Ok(key.to_owned())
}

/// The client's options are global (every client command takes them), but
/// `serve`, `verify` and `echo-server` are no clients, and `report` only
/// reads: their help lists none of the options that are not theirs. An
/// argument of the subcommand's own with the same id keeps clap from
/// copying the global one in; it is hidden, and nothing reads it.
fn without_foreign_options(cli: clap::Command) -> clap::Command {
    // (id, long name) of each.
    const CLIENT: [(&str, &str); 9] = [
        ("server", "server"),
        ("json", "json"),
        ("actor", "actor"),
        ("request_id", "request-id"),
        ("token", "token"),
        ("token_file", "token-file"),
        ("ca", "ca"),
        ("cert", "cert"),
        ("key", "key"),
    ];
    const WRITE: [(&str, &str); 2] = [("actor", "actor"), ("request_id", "request-id")];
    let shadow = |command: clap::Command, options: &[(&'static str, &'static str)]| {
        options.iter().fold(command, |command, (id, long)| {
            command.arg(clap::Arg::new(*id).long(*long).hide(true).num_args(0..=1))
        })
    };
    cli.mut_subcommand("serve", |c| shadow(c, &CLIENT))
        .mut_subcommand("verify", |c| shadow(c, &CLIENT))
        .mut_subcommand("echo-server", |c| shadow(c, &CLIENT))
        .mut_subcommand("report", |report| {
            report.mut_subcommand("branch", |c| shadow(c, &WRITE))
        })
}

/// Stands `serve --config FILE`'s keys in for the environment variables not
/// already set (see `serve_config`), before the command line is parsed.
fn read_serve_config() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = mfi_ledger::serve_config::config_path(&args) else {
        return Ok(());
    };
    let file = mfi_ledger::serve_config::ServeFile::read(&path)?;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    for (name, value) in file.variables(dir) {
        if std::env::var_os(name).is_none() {
            // SAFETY: called first thing in main, before any other thread
            // (the runtime, the logger) exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    mfi_ledger::allocator::configure();
    if let Err(error) = read_serve_config() {
        eprintln!("error: {}", cli::describe(&error));
        return ExitCode::FAILURE;
    }
    let matches = without_foreign_options(Cli::command()).get_matches();
    let args = match Cli::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if !matches!(args.command, Command::Serve(_) | Command::Verify(_)) {
        match args.client.credentials() {
            Ok(credentials) => cli::connect::set_credentials(credentials),
            Err(error) => {
                eprintln!("error: {}", cli::describe(&error));
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match args.command {
        Command::Serve(serve) => runtime.block_on(run_server(serve)),
        Command::Verify(verify) => run_verify(verify),
        Command::Migrate(migrate) => run_migrate(migrate, args.client.json),
        Command::EchoServer(echo) => runtime.block_on(run_echo(echo)),
        Command::Load(load) => runtime.block_on(mfi_ledger::load::run(load)),
        Command::Simulate(simulate) => runtime.block_on(mfi_ledger::sim::run(
            &args.client.server,
            args.client.json,
            simulate,
        )),
        Command::Report(ReportCommand::Branch(report)) => {
            runtime.block_on(run_branch_report(&args.client, report))
        }
        Command::Client(command) => runtime.block_on(cli::run(args.client, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", cli::describe(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServeArgs) -> anyhow::Result<()> {
    // Before the port is bound and the data directory opened: a server that
    // may not listen as asked touches nothing.
    let tls = server_tls(args.listen, &args.tls)?;
    let chart = match &args.chart {
        None => mfi_ledger::domain::books::Chart::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the chart of accounts {}", path.display()))?;
            mfi_ledger::domain::books::Chart::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("the chart of accounts {}: {e}", path.display()))?
        }
    };
    if !args.init && args.data != std::path::Path::new(DATA_DEFAULT) && !args.data.exists() {
        bail!(
            "data directory {} does not exist: to start a new, empty ledger there, add --init \
             (nothing was created)",
            args.data.display()
        );
    }
    // The port first: a server that cannot listen creates no data directory.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let metrics_listener = match args.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening for metrics on {address}"))?,
        ),
        None => None,
    };
    if args.standby && matches!(args.store, StoreChoice::Embedded) {
        bail!("--standby follows a PostgreSQL journal: give --store postgres://...");
    }
    let (store, keys, follower) = open_store(&args)?;
    let config = LedgerConfig {
        batch_size_max: args.batch_size_max,
        queue_depth_max: args.queue_depth_max,
        queue_bytes_max: args.queue_bytes_max,
        checkpoint_entries: args.checkpoint_entries,
        read_only: args.read_only,
        standby: args.standby,
        log_checkpoints: CheckpointPolicy {
            signer: keys.signer.map(Arc::new),
            verifier: keys.verifier,
            every_entries: args.log.log_checkpoint_entries.max(1),
            every: std::time::Duration::from_secs(args.log.log_checkpoint_seconds.max(1)),
        },
        chart: Arc::new(chart),
        ..LedgerConfig::default()
    };
    let clock: Arc<dyn Clock> = match args.fixed_clock {
        Some(at) => {
            tracing::warn!(%at, "every entry is recorded at a fixed time (--fixed-clock)");
            Arc::new(FixedClock(at))
        }
        None => Arc::new(SystemClock),
    };
    let ledger = Arc::new(Ledger::start(store, clock, config)?);
    // What startup freed goes back to the system.
    mfi_ledger::allocator::release_freed();
    if let Some(follower) = follower {
        mfi_ledger::ledger::standby::spawn_follower(follower, ledger.clone())
            .context("starting the standby's follower")?;
    }
    let bootstrap = match args.read_only || args.standby {
        true => None,
        false => mfi_ledger::auth::bootstrap(&ledger, &args.data).await?,
    };
    if let Some(path) = bootstrap {
        tracing::info!(
            principal = mfi_ledger::auth::FIRST_ADMINISTRATOR,
            token_file = %path.display(),
            "created the first administrator; its token is in the token file (readable by \
             this user only): use it to create the principals who work with the ledger"
        );
    }
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        data = %args.data.display(),
        tls = tls.is_some(),
        client_certificates = args.tls.tls_client_ca.is_some(),
        "serving"
    );
    if tls.is_none() && !address.ip().to_canonical().is_loopback() {
        tracing::warn!(%address, "listening without TLS (--allow-insecure-listen)");
    }
    // Scripts and tests read the bound address (the port may be 0) from here.
    println!("mfi-ledger listening on {address}");
    let metrics = match metrics_listener {
        Some(metrics_listener) => {
            let metrics_address = metrics_listener.local_addr()?;
            tracing::info!(address = %metrics_address, "serving metrics at /metrics");
            // Second line, after the address scripts wait for; one that
            // stopped reading is no reason to stop serving.
            let _ = writeln!(std::io::stdout(), "mfi-ledger metrics on {metrics_address}");
            Some(tokio::spawn(api::metrics_http::serve_metrics(
                metrics_listener,
                ledger.clone(),
                args.data.join("journal.log"),
                std::future::pending(),
            )))
        }
        None => None,
    };
    let limits = ServerLimits {
        message_size_max: args.message_size_max,
        requests_per_connection_max: args.requests_per_connection_max,
        connections_per_peer_max: args.connections_per_peer_max,
        connections_max: args.connections_max,
        request_timeout: std::time::Duration::from_millis(args.request_timeout_ms.max(1)),
    };
    // The ledger runs until the server has answered every call it received
    // (`api::serve` drains before it returns); only then does it stop.
    api::serve(listener, ledger.clone(), limits, tls, shutdown_signal()).await?;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    tracing::info!("every call answered; stopping the ledger");
    tokio::task::spawn_blocking(move || ledger.shutdown()).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The log's keys a server holds.
struct LogKeys {
    /// The signing key (`DATA/log.key`), on the server of record.
    signer: Option<mfi_ledger::checkpoint::Signer>,
    /// The verifier key alone (`DATA/log.pub`), on a read-only copy.
    verifier: Option<mfi_ledger::checkpoint::Verifier>,
}

/// The data directory's store and the log's keys: read-only with
/// `--read-only` (nothing created or written, and only the verifier key
/// read: an auditor's copy need not hold the private key), else the
/// embedded store and the signing key, created when missing.
/// A PostgreSQL store opened as a standby, which its follower thread drives.
type Follower = Option<Arc<mfi_ledger::store::PostgresStore>>;

fn open_store(
    args: &ServeArgs,
) -> anyhow::Result<(Arc<dyn mfi_ledger::store::Store>, LogKeys, Follower)> {
    use mfi_ledger::checkpoint::keys;
    let opening = || format!("opening data directory {}", args.data.display());
    if !args.read_only {
        let mut follower = None;
        let store: Arc<dyn mfi_ledger::store::Store> = match &args.store {
            StoreChoice::Embedded => Arc::new(DiskStore::open(&args.data).with_context(opening)?),
            StoreChoice::Postgres(url) if args.standby => {
                let options = mfi_ledger::store::PostgresOptions {
                    lease: std::time::Duration::from_secs(args.lease_seconds),
                    ..mfi_ledger::store::PostgresOptions::new(url)
                };
                let store = mfi_ledger::store::PostgresStore::open_standby(&args.data, &options)
                    .with_context(|| {
                        format!(
                            "opening the PostgreSQL journal as a standby, with its derived \
                             files in {}",
                            args.data.display()
                        )
                    })?;
                let store = Arc::new(store);
                follower = Some(store.clone());
                store
            }
            StoreChoice::Postgres(url) => {
                let options = mfi_ledger::store::PostgresOptions {
                    lease: std::time::Duration::from_secs(args.lease_seconds),
                    ..mfi_ledger::store::PostgresOptions::new(url)
                };
                let store = mfi_ledger::store::PostgresStore::open(&args.data, &options)
                    .with_context(|| {
                        format!(
                            "opening the PostgreSQL journal, with its derived files in {}",
                            args.data.display()
                        )
                    })?;
                Arc::new(store)
            }
        };
        let signer = keys::log_signer(&args.data, args.log.log_origin.as_deref())
            .context("the log's signing key")?;
        tracing::info!(
            verifier_key = %signer.verifier().to_text(),
            "checkpoints are signed with the log key in DATA/log.key; its verifier key is in DATA/log.pub"
        );
        let keys = LogKeys {
            signer: Some(signer),
            verifier: None,
        };
        return Ok((store, keys, follower));
    }
    let store = mfi_ledger::store::ReadOnlyStore::open(&args.data).with_context(opening)?;
    let verifier = keys::log_verifier(&args.data)?;
    if verifier.is_none() {
        tracing::warn!(
            "no log verifier key (log.pub) in the data directory: the checkpoints kept are \
             served, without it"
        );
    }
    tracing::warn!(
        data = %args.data.display(),
        "serving a read-only copy of the books: every write is refused, no checkpoint is \
         signed, and reads are not recorded in the access log (it cannot be appended to)"
    );
    let keys = LogKeys {
        signer: None,
        verifier,
    };
    Ok((Arc::new(store), keys, None))
}

/// The server's TLS configuration, or `None` to listen in clear text.
/// Refuses a certificate without its key (or a key without its
/// certificate), a client CA without TLS, and clear text on an address that
/// is not loopback unless `--allow-insecure-listen` is given.
fn server_tls(
    listen: SocketAddr,
    args: &TlsArgs,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(certificate), Some(key)) => Ok(Some(api::tls::server_config(
            certificate,
            key,
            args.tls_client_ca.as_deref(),
        )?)),
        (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key, PEM)"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert (the server's certificate, PEM)"),
        (None, None) if args.tls_client_ca.is_some() => bail!(
            "--tls-client-ca needs --tls-cert and --tls-key: \
             client certificates are only verified over TLS"
        ),
        (None, None)
            if !listen.ip().to_canonical().is_loopback() && !args.allow_insecure_listen =>
        {
            bail!(
                "refusing to listen on {listen} without TLS: other hosts could read and \
                 send the ledger's calls in clear text. Give --tls-cert and --tls-key, \
                 or listen on a loopback address (e.g. --listen 127.0.0.1:50051), or, \
                 behind a TLS-terminating proxy or on a network you trust, \
                 pass --allow-insecure-listen"
            )
        }
        (None, None) => Ok(None),
    }
}

async fn run_branch_report(
    client: &cli::ClientOptions,
    args: BranchReportArgs,
) -> anyhow::Result<()> {
    let report = mfi_ledger::report::gather_from(&client.server, &args.branch, args.year).await?;
    if let Some(path) = &args.html {
        std::fs::write(path, mfi_ledger::report::render_html(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut text = mfi_ledger::report::render_table(&report);
    if let Some(path) = &args.html {
        text += &format!("HTML report written to {}\n", path.display());
    }
    // Printed as every client command prints: a reader that stops early
    // (`| head`) ends the output, not the process with a panic.
    cli::Report {
        text,
        json: serde_json::to_value(&report)?,
    }
    .print(client.json)
}

async fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("mfi-ledger echo listening on {}", listener.local_addr()?);
    api::echo::serve_echo(listener, ServerLimits::default(), shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    // Held while verifying: a running server holds the journal's lock, and
    // no server starts on the directory meanwhile.
    let _journal_lock = journal_lock_shared(&args.data)?;
    // A PostgreSQL journal is checked in a copy, as it stands now.
    let scratch = match &args.store {
        StoreChoice::Embedded => None,
        StoreChoice::Postgres(url) => Some(copy_for_verify(url, &args.data)?),
    };
    let data = scratch
        .as_ref()
        .map_or(args.data.as_path(), |scratch| scratch.path());
    let log_key = match &args.log_key {
        Some(key) => Some(mfi_ledger::checkpoint::Verifier::parse(
            key_text(key)?.trim(),
        )?),
        None => None,
    };
    let evidence = mfi_ledger::verify::Evidence {
        log_key: log_key.as_ref(),
        auditor_folder: args.checkpoints.as_deref(),
    };
    let depth = if args.chain_only {
        mfi_ledger::verify::Depth::Chain
    } else {
        mfi_ledger::verify::Depth::Full
    };
    let report = mfi_ledger::verify::verify_to(data, &evidence, depth)?;
    cli::Report {
        text: report.to_string(),
        json: serde_json::Value::Null,
    }
    .print(false)
}
