//! The realistic workload: the commands of a simulated TYM branch (collection
//! sheets of center meetings, compulsory and voluntary deposits,
//! disbursements with schedules, tranches, prepayments, reversals,
//! write-offs with their approvals, month-end interest and year-end
//! closes), replayed in process through `Ledger::submit_many` at batch 1,
//! 10, 100 and 1,000, each into a fresh ledger, beside repayments and
//! disbursements alone. Each row gives commands/s (wall) and the process's
//! CPU time per command (user + system, every thread: the writer, the
//! publisher, the persister and the runtime), so a figure does not depend
//! on how many cores are idle.
//!
//! The mix is written once by the release binary: `serve --fixed-clock` and
//! `simulate --preset tym-thai-binh` (scale `MIX_SCALE`, percent, default
//! 100: about 24,000 entries), kept in `target/bench/mix-corpus-SCALE/` and
//! written again when the binary changes. A replay gives the simulated
//! journal entry for entry: its last hash is checked against the corpus's.
//!
//! The mix by size: the simulated branch at each scale of
//! `MIX_GROWTH_SCALES` (percent, default `100,400`: about 24,500 and 98,000
//! entries) restarted by `serve` after its clean stop and with its state
//! cache removed, and after a crash (the server killed with SIGKILL while the
//! load generator writes into it; time until it listens, resident memory),
//! verified in full
//! and by its chain alone, and its disk per entry (`-- growth` runs only
//! these). The same for a longer history: the branch at the scale of
//! `MIX_HISTORY_SCALE` (percent, default 100; none when empty) over ten
//! years, `simulate --preset tym-thai-binh-decade` (about 70,000 entries),
//! its server's clock in 2031.
//!
//! `cargo test` runs it as a smoke run (`support::smoke`): the branch at
//! scale 2 (about 500 entries), each row and size once, written by the
//! test build's binary, results in `target/tmp/bench-smoke-mix`.
//!
//! `cargo bench --bench mix` (results in `target/bench/mix.json`);
//! `cargo bench --bench mix -- WORKLOAD [BATCH]` runs only the rows whose
//! workload starts with WORKLOAD (and of that batch), for a profiler
//! (results in `target/bench/mix-filtered.json`, so the full run's stay).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mfi_ledger::domain::command::{Command, CommandBody};
use mfi_ledger::domain::entry::Entry;
use mfi_ledger::ledger::Ledger;
use mfi_ledger::store::{DiskStore, Store};
use serde_json::json;

use support::{
    FixedClock, bench_config, disbursement, ledger_with_members, members, out_dir, repayment, sized,
};

const BIN: &str = env!("CARGO_BIN_EXE_mfi-ledger");
/// The benchmarks' clock ([`FixedClock`]), so replayed decisions match.
const CLOCK: &str = "2024-06-30T03:00:00Z";
/// The clock of the ten-year branch's server, after its last day.
const DECADE_CLOCK: &str = "2031-06-30T03:00:00Z";

/// How long a history the simulated branch has.
#[derive(Clone, Copy, Debug, PartialEq)]
enum History {
    /// TYM Thái Bình's three years, 2021 to 2023 (`tym-thai-binh`).
    ThreeYears,
    /// The same, then seven more years like 2023 (`tym-thai-binh-decade`).
    TenYears,
}

impl History {
    fn preset(self) -> &'static str {
        match self {
            History::ThreeYears => "tym-thai-binh",
            History::TenYears => "tym-thai-binh-decade",
        }
    }

    fn years(self) -> u32 {
        match self {
            History::ThreeYears => 3,
            History::TenYears => 10,
        }
    }

    /// The fixed clock its server runs on.
    fn clock(self) -> &'static str {
        match self {
            History::ThreeYears => CLOCK,
            History::TenYears => DECADE_CLOCK,
        }
    }

    /// Its name in file names and in the results: the scale, after
    /// `decade-` for the ten years.
    fn label(self, scale: u32) -> String {
        match self {
            History::ThreeYears => scale.to_string(),
            History::TenYears => format!("decade-{scale}"),
        }
    }
}
const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];
/// Commands of one kind in a single-kind row: 20,000, a tenth of it at
/// batch 1, and ten times it for repayments at batch 100 and 1,000, whose
/// rows would otherwise last a fifth of a second: too short for a figure
/// that the start of the row (the cache closed and opened again beside it,
/// the memory the rows before let go of) does not move.
fn single_kind_commands(kind: &str, batch: usize) -> usize {
    let commands = sized(20_000, 200);
    match (kind, batch) {
        (_, 1) => commands / 10,
        ("repayment", 100..) => commands * 10,
        _ => commands,
    }
}

/// CPU time of `who` (this process, all its threads, `RUSAGE_SELF`; or its
/// waited-for children, `RUSAGE_CHILDREN`): user + system, and system alone.
fn rusage_cpu(who: libc::c_int) -> (Duration, Duration) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let system = micros(usage.ru_stime);
    (
        Duration::from_micros(micros(usage.ru_utime) + system),
        Duration::from_micros(system),
    )
}

/// CPU time this process has used (user + system, all threads), and of
/// it the kernel's (system): page faults, the kernel zeroing fresh pages,
/// file writes and `fdatasync`, waking threads.
fn cpu_time() -> (Duration, Duration) {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// CPU time of this process's waited-for children (user + system).
fn children_cpu_time() -> Duration {
    rusage_cpu(libc::RUSAGE_CHILDREN).0
}

/// The mix written over gRPC: `simulate` (the simulator's own client, in
/// `SubmitBatch` calls of each day's commands) against a fresh server.
struct GrpcRun {
    entries: u64,
    wall: Duration,
    server_cpu: Duration,
    /// Of `server_cpu`, the kernel's.
    server_kernel: Duration,
    client_cpu: Duration,
}

/// A server of the release binary (of the test build's, in a smoke run) on a
/// data directory, killed on drop if not stopped before.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// A server on a fresh data directory (`--init`), its clock at `clock`.
    fn start(data: &Path, clock: &str) -> Server {
        Server::start_with(data, clock, &["--init"])
    }

    /// A server on `data`, its clock at `clock`, with `extra` arguments to
    /// `serve`; returns once it listens (its state read back or rebuilt).
    fn start_with(data: &Path, clock: &str, extra: &[&str]) -> Server {
        let mut child = Process::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--fixed-clock", clock])
            .args(extra)
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .unwrap();
            if let Some(address) = line.split("listening on ").nth(1) {
                break address.trim().to_owned();
            }
        };
        Server {
            child,
            url: format!("http://{address}"),
        }
    }

    fn run(&self, token_file: &Path, args: &[&str]) {
        let status = Process::new(BIN)
            .args(args)
            .args(["--server", &self.url])
            .env("MFI_LEDGER_TOKEN_FILE", token_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .status()
            .expect("run mfi-ledger");
        assert!(status.success(), "mfi-ledger {args:?} failed");
    }

    /// CPU time the server has used so far (user + system, every thread),
    /// and of it the kernel's (system).
    fn cpu(&self) -> (Duration, Duration) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read the server's /proc stat");
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime and stime fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a /proc stat line")
            .1
            .split_whitespace()
            .collect();
        let user: u64 = fields[11].parse().unwrap();
        let system: u64 = fields[12].parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let time = |ticks: u64| Duration::from_micros(ticks * 1_000_000 / per_second);
        (time(user + system), time(system))
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the server's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .expect("a memory figure in /proc status")
        };
        (field("VmRSS"), field("VmHWM"))
    }

    /// Kills the server (SIGKILL), as a crash would.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap();
    }
}

/// A server not stopped by then (a benchmark that panicked) is killed, so
/// that it does not outlive the run.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The simulated branch's data directory at `scale` percent over
/// `history`, written by the current binary.
fn corpus(scale: u32, history: History) -> PathBuf {
    let dir = out_dir().join(format!("mix-corpus-{}", history.label(scale)));
    let binary = std::fs::metadata(BIN).unwrap();
    let stamp = format!("{:?} {}", binary.modified().unwrap(), binary.len());
    let marker = dir.join("written-by");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == stamp) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "writing the mix: simulate --preset {} --scale {scale}",
        history.preset()
    );
    let started = Instant::now();
    simulate_into(&dir, scale, history);
    eprintln!("  written in {:.1?}", started.elapsed());
    std::fs::write(&marker, stamp).unwrap();
    dir
}

/// Writes the simulated branch at `scale` percent over `history` into
/// `dir/data` through a server of the release binary, and measures the
/// simulation's part.
fn simulate_into(dir: &Path, scale: u32, history: History) -> GrpcRun {
    let data = dir.join("data");
    std::fs::create_dir_all(dir).unwrap();
    let server = Server::start(&data, history.clock());
    let admin = data.join("admin.token");
    let sim = dir.join("sim.token");
    let checker = dir.join("checker.token");
    for (name, grants, file) in [
        ("sim", "product-admin,manager:TB", &sim),
        ("sim-checker", "manager:TB", &checker),
    ] {
        server.run(
            &admin,
            &[
                "principal-create",
                name,
                "--grant",
                grants,
                "--token-out",
                file.to_str().unwrap(),
            ],
        );
    }
    let (server_cpu, server_kernel) = server.cpu();
    let client_cpu = children_cpu_time();
    let started = Instant::now();
    server.run(
        &sim,
        &[
            "simulate",
            "--preset",
            history.preset(),
            "--scale",
            &scale.to_string(),
            "--no-progress",
            "--json",
            "--approver-token-file",
            checker.to_str().unwrap(),
        ],
    );
    let wall = started.elapsed();
    let (server_cpu_after, server_kernel_after) = server.cpu();
    let run = GrpcRun {
        entries: 0,
        wall,
        server_cpu: server_cpu_after - server_cpu,
        server_kernel: server_kernel_after - server_kernel,
        client_cpu: children_cpu_time() - client_cpu,
    };
    server.stop();
    // The set-up's entries (the first administrator, two principals) are
    // not the simulation's.
    let journal = entries(&data);
    let setup = journal
        .iter()
        .take_while(|e| {
            matches!(
                e.body.command.name(),
                "bootstrap_access" | "create_principal"
            )
        })
        .count();
    assert_eq!(
        setup, 3,
        "the set-up wrote three entries before the simulation"
    );
    GrpcRun {
        entries: (journal.len() - setup) as u64,
        ..run
    }
}

/// Bytes of the files under `path`.
fn bytes_under(path: &Path) -> u64 {
    let meta = std::fs::metadata(path).unwrap();
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| bytes_under(&entry.unwrap().path()))
        .sum()
}

/// Disk of the simulated branch's data directory, per entry.
fn disk(data: &Path, entries: usize) -> serde_json::Value {
    let journal = bytes_under(&data.join("journal.log"));
    let tree = bytes_under(&data.join("merkle.tree"));
    let cache = bytes_under(&data.join("state"));
    let all = bytes_under(data);
    let per = |bytes: u64| bytes as f64 / entries as f64;
    println!(
        "disk: {:.0} bytes per entry (journal {:.0}, state cache {:.0}, Merkle tree {:.0}), {entries} entries",
        per(all),
        per(journal),
        per(cache),
        per(tree)
    );
    json!({
        "entries": entries,
        "bytes_per_entry": per(all),
        "journal_bytes_per_entry": per(journal),
        "cache_bytes_per_entry": per(cache),
        "tree_bytes_per_entry": per(tree),
    })
}

/// Copies the directory `from` to `to`, file by file.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What one start of `serve` on a data directory measured: the time until
/// it listened, and its resident memory then and at its peak.
#[derive(Clone, Copy)]
struct Served {
    seconds: f64,
    resident: u64,
    peak: u64,
}

/// Starts `serve` on `data` (its clock at `clock`), measures it, and stops
/// it cleanly.
fn serve_once(data: &Path, clock: &str) -> Served {
    let started = Instant::now();
    let server = Server::start_with(data, clock, &[]);
    let seconds = started.elapsed().as_secs_f64();
    let (resident, peak) = server.memory();
    server.stop();
    Served {
        seconds,
        resident,
        peak,
    }
}

/// Restarts of the simulated branch measured at each size.
fn restarts() -> usize {
    sized(3, 1)
}

/// How long the load generator writes into the simulated branch's server
/// before the server is killed, for the restart after a crash.
fn write_before_crash() -> Duration {
    sized(Duration::from_secs(3), Duration::from_secs(1))
}

/// Writes into `data`'s server with the load generator (its own loans and
/// members beside the branch's) and kills the server
/// mid-write (SIGKILL), leaving its state cache behind its journal.
fn crash_while_writing(data: &Path, clock: &str) {
    let server = Server::start_with(data, clock, &[]);
    let token = data.join("crash-load.token");
    server.run(
        &data.join("admin.token"),
        &[
            "principal-create",
            "crash-load",
            "--grant",
            "product-admin,manager,auditor",
            "--token-out",
            token.to_str().unwrap(),
        ],
    );
    let mut load = Process::new(BIN)
        .args(["load", "--server", &server.url])
        // A few clients, one command a call, on 100 loans of its own: some
        // thousands of entries past the branch's before the crash.
        .args([
            "--clients",
            "4",
            "--duration",
            "60s",
            "--setup-loans",
            "100",
        ])
        .env("MFI_LEDGER_TOKEN_FILE", &token)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the load generator");
    std::thread::sleep(write_before_crash());
    server.kill();
    let _ = load.kill();
    let _ = load.wait();
}

/// The realistic mix's restart, memory, `verify` and disk at `scale`
/// percent over `history`: `serve` restarted on a copy of the simulated
/// branch's directory after its clean stop (the median of [`restarts`]),
/// after a crash and with its state cache removed (rebuilt from the
/// journal), and `verify` of it in full and of its chain alone.
fn growth(scale: u32, history: History) -> serde_json::Value {
    let clock = history.clock();
    let data = corpus(scale, history).join("data");
    let entries = entries(&data).len();
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("data");
    copy_dir(&data, &copy);
    let mut restarts: Vec<Served> = (0..restarts()).map(|_| serve_once(&copy, clock)).collect();
    restarts.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let clean = restarts[restarts.len() / 2];
    let lost = work.path().join("lost");
    copy_dir(&data, &lost);
    std::fs::remove_dir_all(lost.join("state")).unwrap();
    let rebuilt = serve_once(&lost, clock);
    let crashed = work.path().join("crashed");
    copy_dir(&data, &crashed);
    crash_while_writing(&crashed, clock);
    let crash = serve_once(&crashed, clock);
    // Counted after the restart, which is what finds the journal's end.
    // The load's own principal is one entry; the load wrote the others.
    let crash_entries = entries_in(&crashed);
    assert!(
        crash_entries > entries + 1,
        "the load wrote nothing before the crash"
    );
    let begun = Instant::now();
    let report = mfi_ledger::verify::verify(&data).expect("the simulated branch verifies");
    let verify = begun.elapsed().as_secs_f64();
    assert_eq!(report.entries, entries as u64);
    let begun = Instant::now();
    let report =
        mfi_ledger::verify::verify_to(&data, &Default::default(), mfi_ledger::verify::Depth::Chain)
            .expect("the simulated branch's chain verifies");
    let chain = begun.elapsed().as_secs_f64();
    assert_eq!(report.entries, entries as u64);
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "mix at scale {scale}% over {} years ({entries} entries): restart {:.2} s (resident {:.0} MiB, peak {:.0}), \
         after a crash {:.2} s ({crash_entries} entries, resident {:.0} MiB), \
         with the cache lost {:.2} s (peak {:.0} MiB); verify {:.0} entries/s, chain only {:.0}",
        history.years(),
        clean.seconds,
        mib(clean.resident),
        mib(clean.peak),
        crash.seconds,
        mib(crash.resident),
        rebuilt.seconds,
        mib(rebuilt.peak),
        entries as f64 / verify,
        entries as f64 / chain,
    );
    let mut figures = json!({
        "label": history.label(scale),
        "scale": scale,
        "years": history.years(),
        "entries": entries,
        "restart_seconds": clean.seconds,
        "restart_resident_bytes": clean.resident,
        "restart_peak_bytes": clean.peak,
        "rebuild_seconds": rebuilt.seconds,
        "crash_restart_seconds": crash.seconds,
        "crash_restart_resident_bytes": crash.resident,
        "crash_restart_entries": crash_entries,
        "rebuild_resident_bytes": rebuilt.resident,
        "rebuild_peak_bytes": rebuilt.peak,
        "verify_entries_per_second": entries as f64 / verify,
        "verify_chain_entries_per_second": entries as f64 / chain,
    });
    let disk = disk(&data, entries);
    for (key, value) in disk.as_object().unwrap() {
        if key != "entries" {
            figures[key] = value.clone();
        }
    }
    figures
}

/// How many entries the journal in `data` holds.
fn entries_in(data: &Path) -> usize {
    let store = DiskStore::open(data).unwrap();
    store.last_sequence() as usize
}

/// Every entry of the journal in `data`.
fn entries(data: &Path) -> Vec<Entry> {
    let store = DiskStore::open(data).unwrap();
    let mut entries = Vec::new();
    loop {
        let page = store.read_entries(entries.len() as u64 + 1, 4096).unwrap();
        if page.is_empty() {
            break;
        }
        entries.extend(page);
    }
    entries
}

/// The command an entry records, as its client sent it.
fn command_of(entry: &Entry) -> Command {
    entry.body.client_command()
}

/// One row: `commands` commands in `batches`, wall and CPU time.
struct Run {
    commands: usize,
    wall: Duration,
    cpu: Duration,
    /// Of `cpu`, the kernel's.
    kernel: Duration,
    /// `cpu` and what the ledger then spent until its state cache held
    /// what the commands changed (the stop's checkpoint and flush): work
    /// the ledger defers to its next checkpoint, which a run shorter than
    /// `LedgerConfig::checkpoint_interval` would otherwise leave out.
    with_cache: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.commands as f64 / self.wall.as_secs_f64()
    }
    fn cpu_micros(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.commands as f64
    }
    fn kernel_micros(&self) -> f64 {
        self.kernel.as_secs_f64() * 1e6 / self.commands as f64
    }
    fn with_cache_micros(&self) -> f64 {
        self.with_cache.as_secs_f64() * 1e6 / self.commands as f64
    }
    fn json(&self, workload: &str, batch: usize) -> serde_json::Value {
        json!({
            "workload": workload,
            "batch": batch,
            "commands": self.commands,
            "commands_per_second": self.per_second(),
            "cpu_us_per_command": self.cpu_micros(),
            "kernel_cpu_us_per_command": self.kernel_micros(),
            "cpu_with_cache_us_per_command": self.with_cache_micros(),
        })
    }
}

/// A single-kind row: its name, its command for a member, its batch sizes.
type SingleKind = (&'static str, fn(usize) -> Command, &'static [usize]);

/// Submits `batches` in order, each as one `submit_many`; every command
/// must be accepted. Then stops the ledger, whose state cache must hold
/// nothing else written before (a fresh ledger, or one started again).
fn submit(runtime: &tokio::runtime::Runtime, ledger: &Ledger, batches: Vec<Vec<Command>>) -> Run {
    let commands = batches.iter().map(Vec::len).sum();
    let (cpu, kernel) = cpu_time();
    let started = Instant::now();
    for batch in batches {
        for result in runtime.block_on(ledger.submit_many(batch)) {
            if let Err(e) = result {
                panic!("a command of the workload was refused: {e}");
            }
        }
    }
    let wall = started.elapsed();
    let (cpu_after, kernel_after) = cpu_time();
    ledger.shutdown();
    let (stopped, _) = cpu_time();
    Run {
        commands,
        wall,
        cpu: cpu_after - cpu,
        kernel: kernel_after - kernel,
        with_cache: stopped - cpu,
    }
}

/// `-- by-kind`: the mix at batch 1, wall time summed by kind of command,
/// most expensive first (where the mix's time goes).
fn by_kind(runtime: &tokio::runtime::Runtime, commands: &[Command]) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DiskStore::open(dir.path()).unwrap());
    let ledger = Ledger::start(store, Arc::new(FixedClock), bench_config()).unwrap();
    let mut kinds: std::collections::BTreeMap<&str, (usize, Duration)> = Default::default();
    let mut lines = 0;
    for command in commands {
        let started = Instant::now();
        let result = runtime.block_on(ledger.submit(command.clone()));
        let took = started.elapsed();
        result.expect("a command of the workload was refused");
        if let CommandBody::RecordCollectionSheet { lines: sheet, .. } = &command.body {
            lines += sheet.len();
        }
        let kind = kinds.entry(command.body.name()).or_default();
        kind.0 += 1;
        kind.1 += took;
    }
    ledger.shutdown();
    let sheets = kinds.get("record_collection_sheet").map_or(0, |k| k.0);
    println!(
        "collection sheets: {sheets}, {:.1} lines each",
        lines as f64 / sheets.max(1) as f64
    );
    let total: Duration = kinds.values().map(|k| k.1).sum();
    let mut rows: Vec<_> = kinds.into_iter().collect();
    rows.sort_by_key(|(_, (_, took))| std::cmp::Reverse(*took));
    println!(
        "{:<32} {:>8} {:>10} {:>8} {:>12}",
        "kind", "count", "total ms", "share", "µs each"
    );
    for (kind, (count, took)) in rows {
        println!(
            "{kind:<32} {count:>8} {:>10.0} {:>7.1}% {:>12.0}",
            took.as_secs_f64() * 1e3,
            100.0 * took.as_secs_f64() / total.as_secs_f64(),
            took.as_secs_f64() * 1e6 / count as f64
        );
    }
}

fn main() {
    if support::filtered_out("mix") {
        return;
    }
    mfi_ledger::allocator::configure();
    let scale: u32 = support::setting("MIX_SCALE").map_or(sized(100, 2), |s| {
        s.parse().expect("MIX_SCALE is a percentage")
    });
    // cargo bench passes --bench; the rest filter the rows (in a smoke run
    // they are cargo test's, which chose this benchmark by its name).
    let filters: Vec<String> = std::env::args()
        .filter(|_| !support::smoke())
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |workload: &str, batch: usize| {
        filters
            .first()
            .is_none_or(|w| workload.starts_with(w.as_str()) || w == "by-kind")
            && filters.get(1).is_none_or(|b| *b == batch.to_string())
    };
    // The corpus is read only when a row replays it (a profile of the
    // single-kind rows then holds nothing else).
    let (commands, head, disk) = if BATCH_SIZES.iter().any(|&b| wanted("mix", b)) {
        let data = corpus(scale, History::ThreeYears).join("data");
        let journal = entries(&data);
        let last = journal.last().expect("the mix has entries");
        let head = (last.body.sequence, last.hash);
        let disk = disk(&data, journal.len());
        (journal.iter().map(command_of).collect(), head, disk)
    } else {
        (Vec::new(), (0, Default::default()), serde_json::Value::Null)
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if filters.first().is_some_and(|f| f == "by-kind") {
        by_kind(&runtime, &commands);
        return;
    }
    let mut results = Vec::new();
    if !commands.is_empty() {
        println!(
            "realistic mix: {} commands of a simulated TYM branch (scale {scale}%)",
            commands.len()
        );
    }
    println!(
        "{:<28} {:>6} {:>10} {:>14} {:>12} {:>10} {:>14}",
        "workload", "batch", "commands", "commands/s", "CPU µs/cmd", "of it sys", "+ cache µs/cmd"
    );
    if wanted("mix over gRPC", 0) {
        let dir = tempfile::tempdir().unwrap();
        let run = simulate_into(dir.path(), scale, History::ThreeYears);
        let per_entry = |cpu: Duration| cpu.as_secs_f64() * 1e6 / run.entries as f64;
        println!(
            "{:<28} {:>6} {:>10} {:>14.0} {:>12.1} {:>10.1}   (server; the simulator's client {:.1} µs/entry)",
            "mix over gRPC (simulate)",
            "day",
            run.entries,
            run.entries as f64 / run.wall.as_secs_f64(),
            per_entry(run.server_cpu),
            per_entry(run.server_kernel),
            per_entry(run.client_cpu),
        );
        results.push(json!({
            "workload": "mix over gRPC",
            "batch": "day",
            "commands": run.entries,
            "commands_per_second": run.entries as f64 / run.wall.as_secs_f64(),
            "server_cpu_us_per_command": per_entry(run.server_cpu),
            "server_kernel_cpu_us_per_command": per_entry(run.server_kernel),
            "client_cpu_us_per_command": per_entry(run.client_cpu),
        }));
    }
    let mut row = |workload: &str, batch: usize, run: Run| {
        println!(
            "{workload:<28} {batch:>6} {:>10} {:>14.0} {:>12.1} {:>10.1} {:>14.1}",
            run.commands,
            run.per_second(),
            run.cpu_micros(),
            run.kernel_micros(),
            run.with_cache_micros()
        );
        results.push(run.json(workload, batch));
    };
    for batch in BATCH_SIZES {
        if !wanted("mix", batch) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let ledger = Ledger::start(store, Arc::new(FixedClock), bench_config()).unwrap();
        let batches = commands.chunks(batch).map(<[Command]>::to_vec).collect();
        let run = submit(&runtime, &ledger, batches);
        let replayed = ledger.read(|s| (s.last_sequence(), s.last_hash()));
        assert_eq!(replayed, head, "the replay gives the simulated journal");
        row("mix", batch, run);
    }
    let kinds: [SingleKind; 2] = [
        ("repayment", |member| repayment(member, 1000), &BATCH_SIZES),
        ("disbursement (50 inst.)", disbursement, &[100]),
    ];
    for (kind, make, batches) in kinds {
        for &batch in batches {
            if !wanted(kind, batch) {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            // The members and their loans in the state cache before the
            // run: it is started again on them.
            runtime
                .block_on(ledger_with_members(dir.path(), members(), true))
                .shutdown();
            let store = Arc::new(DiskStore::open(dir.path()).unwrap());
            let ledger = Ledger::start(store, Arc::new(FixedClock), bench_config()).unwrap();
            // MIX_COMMANDS: more commands, for a profile that the setup
            // (the members' loans) does not dominate.
            let count = match support::setting("MIX_COMMANDS") {
                Some(count) => count.parse().expect("MIX_COMMANDS is a count"),
                None => single_kind_commands(kind, batch),
            };
            let commands: Vec<Command> = (0..count).map(|i| make(i % members())).collect();
            let batches = commands.chunks(batch).map(<[Command]>::to_vec).collect();
            let run = submit(&runtime, &ledger, batches);
            row(kind, batch, run);
        }
    }
    // The mix's figures by size: its simulated branch at each scale of
    // MIX_GROWTH_SCALES (percent; about 24,500 entries at 100) over its
    // three years, and at the scale of MIX_HISTORY_SCALE over ten (about
    // 70,000 entries at 100; none when empty).
    let mut sizes = Vec::new();
    if filters.is_empty() || filters[0] == "growth" {
        let percent = |scale: &str| -> u32 {
            scale
                .trim()
                .parse()
                .expect("MIX_GROWTH_SCALES and MIX_HISTORY_SCALE are percentages")
        };
        let scales =
            support::setting("MIX_GROWTH_SCALES").unwrap_or_else(|| sized("100,400", "2").into());
        for scale in scales.split(',') {
            sizes.push(growth(percent(scale), History::ThreeYears));
        }
        let decade =
            support::setting("MIX_HISTORY_SCALE").unwrap_or_else(|| sized("100", "2").into());
        if !decade.trim().is_empty() {
            sizes.push(growth(percent(&decade), History::TenYears));
        }
    }
    // A filtered run (for a profiler) never replaces the full run's results,
    // which the report reads.
    let name = if filters.is_empty() {
        "mix.json"
    } else {
        "mix-filtered.json"
    };
    let path = out_dir().join(name);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(
            &json!({ "scale": scale, "rows": results, "disk": disk, "growth": sizes }),
        )
        .unwrap(),
    )
    .unwrap();
    println!("written to {}", path.display());
}
