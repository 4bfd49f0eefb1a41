//! `mfi-ledger load`: a gRPC load generator for the ledger service.
//!
//! It sets up a synthetic branch through the real API (a unique branch per
//! run, one center, groups of five, one member per loan with her compulsory
//! savings account and a large disbursed loan), then runs N concurrent
//! clients that record repayments and (every fourth command) savings
//! deposits, one per call (`--mode unary`) or many per `SubmitBatch` call
//! (`--mode batch`), for a fixed `--count` or `--duration`. It prints
//! commands/s, latency percentiles of each call and errors by gRPC code, and
//! finally checks that every acknowledged command is in the journal at the
//! sequence its receipt gave, with the right command name, and that the
//! branch's cash and every savings balance are what the applied commands
//! add up to. A failed check exits non-zero.
//!
//! `--reader KIND` runs one more client beside the writers, looping one of
//! the ledger's most expensive reads (portfolio quality, every page of the
//! loans in arrears, branch totals) until the writers stop; with
//! `--compare-without-reader` the same load then runs again without the
//! reader, and the report puts the write latency of both runs side by side
//! (the verification covers both).
//!
//! `--target echo` runs the same messages at the same concurrency against a
//! server that only echoes (no setup, no verification): the RPC ceiling.
//!
//! Modules: `workload` (which command the n-th one is: deterministic, no
//! randomness), `setup` (the synthetic branch), `drive` (channels, clients,
//! latency, progress), `reader` (the reader beside the writers), `check`
//! (the verification), `report` (summary and JSON).

mod check;
mod drive;
pub mod reader;
mod report;
pub mod setup;
pub mod workload;

pub use drive::group_thousands;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use self::reader::{Reader, ReaderLog};
use self::report::Summary;
use self::workload::Workload;

/// Most concurrent clients.
pub const CLIENTS_MAX: u32 = 1024;
/// Most commands in one `SubmitBatch` call (the service's own limit).
pub const BATCH_SIZE_MAX: u32 = 1000;
/// Most commands one run sends, whether bounded by `--count` or
/// `--duration` (the verification keeps 16 bytes per acknowledged command).
pub const COMMANDS_MAX: u64 = 20_000_000;
/// Longest `--duration`.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most loans (members) set up.
pub const SETUP_LOANS_MAX: u32 = 100_000;
/// Most HTTP/2 connections the clients share.
pub const CONNECTIONS_MAX: u32 = 128;
/// Connections when `--connections` is not given, at most.
pub const CONNECTIONS_DEFAULT_MAX: u32 = 16;

/// How commands are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One `RecordRepayment` or `DepositSavings` per call.
    Unary,
    /// `--batch-size` commands per `SubmitBatch` call.
    Batch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Batch => "batch",
        }
    }
}

/// What the server at `--server` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The ledger service: set up a branch first, verify the journal after.
    Ledger,
    /// `mfi-ledger echo-server`: canned replies, no setup, no verification.
    Echo,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ledger => "ledger",
            Target::Echo => "echo",
        }
    }
}

/// `mfi-ledger load`: concurrent gRPC clients against one server.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Address of the server under load (only this address is contacted).
    // Same id, flag, env and default as the global client option, so that
    // `mfi-ledger --server X load` and `mfi-ledger load --server X` agree.
    #[arg(
        long,
        env = "MFI_LEDGER_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Concurrent clients, each its own task (1 to 1024).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=CLIENTS_MAX as i64))]
    pub clients: u32,
    /// Stop after this many commands in total (1 to 20,000,000).
    #[arg(
        long,
        required_unless_present = "duration",
        conflicts_with = "duration",
        value_parser = clap::value_parser!(u64).range(1..=COMMANDS_MAX)
    )]
    pub count: Option<u64>,
    /// Stop after this long: "10s", "500ms", "2m" (at most 1h; and at most
    /// 20,000,000 commands).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// One command per call, or batches of `--batch-size` per SubmitBatch call.
    #[arg(long, value_enum, default_value_t = Mode::Unary)]
    pub mode: Mode,
    /// Commands per SubmitBatch call in batch mode (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=BATCH_SIZE_MAX as i64))]
    pub batch_size: u32,
    /// Loans (one member each, with compulsory savings) set up and used (1 to 100,000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=SETUP_LOANS_MAX as i64))]
    pub setup_loans: u32,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// The ledger, or an echo server measuring the RPC ceiling.
    #[arg(long, value_enum, default_value_t = Target::Ledger)]
    pub target: Target,
    /// HTTP/2 connections the clients share, round robin (1 to 128)
    /// [default: one per CPU core, at most 16].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=CONNECTIONS_MAX as i64))]
    pub connections: Option<u32>,
    /// Offer at most this many commands per second in total (paced by
    /// command index), to measure latency below the peak; unlimited when unset.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate: Option<u64>,
    /// Also run one client, on its own connection, that loops this read
    /// over the branch while the writers write.
    #[arg(long, value_enum)]
    pub reader: Option<Reader>,
    /// Then run the same load again without the reader, and report the
    /// write latency of both runs side by side.
    #[arg(long, requires = "reader")]
    pub compare_without_reader: bool,
}

impl LoadArgs {
    /// Connections to open: as asked, else one per CPU core (at most 16),
    /// never more than there are clients.
    ///
    /// One connection's HTTP/2 state is driven by one task at a time on each
    /// side, so a single connection caps the rate at what one core can frame;
    /// many connections add per-connection overhead on a machine that also
    /// runs the server. Measured on the 2-core machine against the echo
    /// server, 64 unary clients: 1 connection ~27k calls/s, 2 ~37k, 4 ~31k,
    /// 8 ~28k, 16 ~28k, 64 ~20k.
    fn connections(&self) -> u32 {
        let wanted = self.connections.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get() as u32)
                .min(CONNECTIONS_DEFAULT_MAX)
        });
        wanted.clamp(1, self.clients)
    }

    /// Commands per call.
    fn commands_per_call(&self) -> u32 {
        match self.mode {
            Mode::Unary => 1,
            Mode::Batch => self.batch_size,
        }
    }
}

/// Parses "10s", "500ms", "2m", "1h" or a number of seconds; more than zero,
/// at most an hour.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!("{text:?} is not more than zero"));
    }
    if seconds > DURATION_MAX.as_secs_f64() {
        return Err(format!("{text:?} is more than the 1h allowed"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A fresh branch id for this run: "LG" + Unix seconds + 4 hex digits, so
/// that runs against one server never collide.
fn run_prefix() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let nonce = uuid::Uuid::new_v4().as_u128() as u16;
    format!("LG{seconds}-{nonce:04x}")
}

/// Runs `mfi-ledger load`: setup, load, report, verification. Fails (after
/// printing the report) if any acknowledged command is missing from the
/// journal or a balance is off.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let workload = Arc::new(Workload::new(run_prefix(), args.setup_loans));
    let limit = match (args.count, args.duration) {
        (Some(count), _) => count,
        (None, Some(_)) => COMMANDS_MAX,
        (None, None) => bail!("give --count or --duration"),
    };
    let capacity = workload.capacity();
    let runs = if args.compare_without_reader { 2 } else { 1 };
    if args.target == Target::Ledger
        && args
            .count
            .is_some_and(|count| count.saturating_mul(runs) > capacity)
    {
        bail!(
            "--count {limit} in {runs} run(s) could overpay the {} loans set up (at most \
             {capacity} commands); raise --setup-loans",
            args.setup_loans
        );
    }
    if args.reader.is_some() && args.target == Target::Echo {
        bail!("--reader reads the ledger: it needs --target ledger");
    }
    let limit = limit.min(capacity);
    let connections = args.connections();
    let channels = drive::connect(&args.server, connections)
        .await
        .with_context(|| format!("connecting to {}", args.server))?;

    let setup = match args.target {
        Target::Ledger => Some(
            setup::run(&channels[0], workload.clone())
                .await
                .context("setting up the synthetic branch")?,
        ),
        Target::Echo => None,
    };
    let first_sequence = match args.target {
        Target::Ledger => check::ledger_head(&channels[0]).await? + 1,
        Target::Echo => 0,
    };

    let plan = drive::Plan {
        mode: args.mode,
        clients: args.clients,
        batch_size: args.commands_per_call(),
        first: 0,
        limit,
        duration: args.duration,
        rate: args.rate,
    };
    let (outcome, reader_log) =
        run_with_reader(&channels, &workload, &plan, &args.server, args.reader).await?;
    // The same load again without the reader, on the commands after the first run's.
    let without_reader = if args.compare_without_reader {
        let first = outcome.commands;
        if first >= capacity {
            bail!("the first run used every command the loans allow; raise --setup-loans");
        }
        let plan = drive::Plan {
            first,
            limit: match args.count {
                Some(count) => first + count,
                None => capacity,
            },
            ..plan
        };
        Some(drive::run(&channels, workload.clone(), &plan).await?)
    } else {
        None
    };

    let mut checked = drive::Outcome::acknowledged_of(&outcome, without_reader.as_ref());
    let (verification, unverified) = match args.target {
        Target::Ledger => {
            match check::run(&channels[0], &workload, &mut checked, first_sequence).await {
                Ok(verification) => (Some(verification), None),
                Err(error) => (None, Some(error.context("verifying the journal"))),
            }
        }
        Target::Echo => (None, None),
    };

    // The load's figures are reported even when the verification could not run.
    let mut summary = Summary::new(&args, connections, &workload, setup, &outcome, verification);
    if let Some(log) = &reader_log {
        summary.add_reader(log, without_reader.as_ref());
    }
    if let Some(error) = &unverified {
        summary.verification_failed(crate::cli::describe(error));
    }
    summary.print();
    if let Some(path) = &args.json_out {
        summary
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(error) = unverified {
        return Err(error);
    }
    if let Some(reason) = summary.failure() {
        bail!("{reason}");
    }
    Ok(())
}

/// Runs the load of `plan` with, when `reader` is given, one client looping
/// that read on its own connection to `server` until the writers are done.
///
/// The reader runs on its own thread and runtime, as an auditor's client
/// runs on its own machine: decoding its large pages must not hold up the
/// writers' clients on this process's runtime, or their latency would
/// measure the load generator rather than the server.
async fn run_with_reader(
    channels: &[crate::cli::connect::Conn],
    workload: &Arc<Workload>,
    plan: &drive::Plan,
    server: &str,
    reader: Option<Reader>,
) -> anyhow::Result<(drive::Outcome, Option<ReaderLog>)> {
    let Some(kind) = reader else {
        return Ok((drive::run(channels, workload.clone(), plan).await?, None));
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (connected, ready) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let (done, finished) = tokio::sync::oneshot::channel::<ReaderLog>();
    let thread = {
        let (server, workload, stop) = (server.to_owned(), workload.clone(), stop.clone());
        std::thread::Builder::new()
            .name("load-reader".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = connected.send(Err(error.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let channel = match drive::connect(&server, 1).await {
                        Ok(mut channels) => channels.remove(0),
                        Err(error) => {
                            let _ = connected.send(Err(error));
                            return;
                        }
                    };
                    let _ = connected.send(Ok(()));
                    let _ = done.send(reader::run(channel, workload, kind, stop).await);
                });
            })
            .context("starting the reader's thread")?
    };
    ready.await.context("the reader's thread stopped")??;
    let outcome = drive::run(channels, workload.clone(), plan).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = finished.await.context("the reader's thread stopped")?;
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok((outcome?, Some(log)))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, Subcommand};

    use super::*;

    /// The binary's shape: the client options (with their global --server)
    /// beside a `load` subcommand, as main.rs wires it.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: crate::cli::ClientOptions,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        Load(LoadArgs),
        #[command(flatten)]
        Client(crate::cli::ClientCommand),
    }

    fn load(args: &[&str]) -> LoadArgs {
        let mut argv = vec!["mfi-ledger"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Load(load) => load,
            Command::Client(_) => panic!("not load"),
        }
    }

    #[test]
    fn wires_beside_the_client_commands() {
        Cli::command().debug_assert();
        let args = load(&["load", "--server", "http://h:1", "--count", "5"]);
        assert_eq!(args.server, "http://h:1");
        let args = load(&["--server", "http://h:2", "load", "--duration", "2s"]);
        assert_eq!(args.server, "http://h:2");
        assert_eq!(args.duration, Some(Duration::from_secs(2)));
        let args = load(&["load", "--count", "5", "--mode", "batch"]);
        assert_eq!(args.mode, Mode::Batch);
        assert_eq!(args.batch_size, 100);
        assert_eq!(args.clients, 64);
        assert!((1..=CONNECTIONS_DEFAULT_MAX).contains(&args.connections()));
        let args = load(&[
            "load",
            "--count",
            "5",
            "--clients",
            "1",
            "--connections",
            "4",
        ]);
        assert_eq!(args.connections(), 1, "never more connections than clients");
    }

    #[test]
    fn bounds_are_enforced() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["mfi-ledger", "load"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|_| ())
        };
        assert!(parse(&[]).is_err(), "count or duration is required");
        assert!(parse(&["--count", "1", "--duration", "1s"]).is_err());
        assert!(parse(&["--count", "0"]).is_err());
        assert!(parse(&["--count", "20000001"]).is_err());
        assert!(parse(&["--count", "1", "--clients", "1025"]).is_err());
        assert!(parse(&["--count", "1", "--clients", "0"]).is_err());
        assert!(parse(&["--count", "1", "--batch-size", "1001"]).is_err());
        assert!(parse(&["--count", "1", "--setup-loans", "0"]).is_err());
        assert!(parse(&["--duration", "2h"]).is_err());
        assert!(parse(&["--count", "1", "--clients", "1024", "--batch-size", "1000"]).is_ok());
        assert!(
            parse(&["--count", "1", "--compare-without-reader"]).is_err(),
            "comparing needs a reader"
        );
        assert!(parse(&["--count", "1", "--reader", "sometimes"]).is_err());
        let compare = [
            "--count",
            "1",
            "--reader",
            "arrears",
            "--compare-without-reader",
        ];
        assert!(parse(&compare).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("61m").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn prefixes_are_valid_ids() {
        let prefix = run_prefix();
        assert!(prefix.starts_with("LG"));
        // Member ids add 8 characters; ids are at most 32.
        assert!(prefix.len() + 8 <= crate::domain::ids::ID_LEN_MAX);
    }
}
