//! At 10^6 journal entries (repayments and deposits of 1,000 members, each
//! with a 520-installment loan): restart time after a clean stop, after a
//! crash (the writer killed with SIGKILL while it writes), and with the
//! state cache lost (rebuilt from the journal alone); the memory a restarted
//! ledger holds; offline verification speed (in full, and the chain pass
//! alone); disk bytes per entry (journal plus sled state cache).
//!
//! The ledger is configured as `serve` runs it: its checkpoints are signed
//! (a clean stop signs one, so the Merkle tree is not hashed again at the
//! next start). Each restart runs in a process of its own (this binary, run
//! again with `MFI_BENCH_RECOVERY_CHILD` set), so its time and memory are
//! that process's alone.
//!
//! `cargo bench --bench recovery` prints a table and writes
//! `target/bench/recovery.json`. Set `MFI_BENCH_ENTRIES` for another size
//! (its figures go to `target/bench/recovery-SIZE.json`),
//! and `MFI_BENCH_DIR` to build the data directory there and keep it (or to
//! measure the one already there): to profile a restart, run this binary
//! with `MFI_BENCH_RECOVERY_CHILD="restart DIR" ... --bench`.
//!
//! `cargo test` runs it as a smoke run (`support::smoke`): 2,000 entries of
//! 100 members, one run of each figure.

mod support;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mfi_ledger::ledger::{CheckpointPolicy, Ledger, LedgerConfig};
use mfi_ledger::store::DiskStore;

use support::{
    FixedClock, bench_config, grow_journal, ledger_with_members_on, members, out_dir, sized,
    start_request_ids_at,
};

/// Runs of each figure, whose median is reported.
fn runs() -> usize {
    sized(3, 1)
}
/// Set in a child process: `restart DIR` or `write DIR RUN`.
const CHILD: &str = "MFI_BENCH_RECOVERY_CHILD";
/// The largest journal whose cache is also rebuilt from the journal alone
/// and verified in full (both re-execute every entry).
const SLOW_PARTS_UP_TO: usize = 1_000_000;
/// How long the crashed writer writes before it is killed.
fn write_before_crash() -> Duration {
    sized(Duration::from_secs(3), Duration::from_millis(300))
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| dir_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// The configuration `serve` runs with: checkpoints of the journal signed
/// by the log key it keeps in the data directory (`log.key`, with `log.pub`
/// beside it for `verify`).
fn config(dir: &Path) -> LedgerConfig {
    let signer = mfi_ledger::checkpoint::keys::log_signer(dir, Some("bench.example/log")).unwrap();
    LedgerConfig {
        log_checkpoints: CheckpointPolicy {
            signer: Some(Arc::new(signer)),
            ..CheckpointPolicy::default()
        },
        ..bench_config()
    }
}

fn start(dir: &Path) -> Ledger {
    let store = DiskStore::open(dir).unwrap();
    Ledger::start(Arc::new(store), Arc::new(FixedClock), config(dir)).unwrap()
}

/// A figure of this process from /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// What one restart in a child process measured.
#[derive(Clone, Copy, Debug)]
struct Restart {
    seconds: f64,
    entries: u64,
    resident_bytes: u64,
    peak_bytes: u64,
}

/// The child's side: `restart DIR` starts the ledger, reports, and stops
/// it cleanly; `write DIR RUN` writes until it is killed.
fn child(task: &str) {
    let mut words = task.split(' ');
    let (kind, dir) = (words.next().unwrap(), Path::new(words.next().unwrap()));
    match kind {
        "restart" => {
            let begun = Instant::now();
            let ledger = start(dir);
            // As `serve` does once the ledger started: what startup freed
            // goes back to the system.
            mfi_ledger::allocator::release_freed();
            let seconds = begun.elapsed().as_secs_f64();
            // Memory once what the store does beside a clean restart (the
            // check of the cache's kept hashes, its close and open again,
            // and giving back what the closed instance held) is done, as a
            // second after `serve` listens: not the time's.
            ledger.store().check_state().unwrap();
            println!(
                "{seconds} {} {} {}",
                ledger.read(|s| s.last_sequence()),
                proc_status_bytes("VmRSS"),
                proc_status_bytes("VmHWM")
            );
            ledger.shutdown();
        }
        "write" => {
            let run: u64 = words.next().unwrap().parse().unwrap();
            start_request_ids_at((run + 1) << 40);
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let ledger = start(dir);
            let on = "2024-06-21".parse().unwrap();
            let mut first = true;
            loop {
                runtime.block_on(grow_journal(&ledger, members(), 1000, on, 0));
                if first {
                    println!("writing");
                    first = false;
                }
            }
        }
        other => panic!("unknown child task {other:?}"),
    }
}

/// Runs `task` in a child process of this binary; its stdout. The child
/// is given this process's arguments, so that it runs as a benchmark or as
/// a smoke run as this one does.
fn spawn(task: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(CHILD, task)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Restarts the ledger in `dir` in a child process.
fn restart(dir: &Path) -> Restart {
    let output = spawn(&format!("restart {}", dir.display()))
        .wait_with_output()
        .unwrap();
    assert!(output.status.success(), "restart failed: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let figures: Vec<&str> = text.split_whitespace().collect();
    Restart {
        seconds: figures[0].parse().unwrap(),
        entries: figures[1].parse().unwrap(),
        resident_bytes: figures[2].parse().unwrap(),
        peak_bytes: figures[3].parse().unwrap(),
    }
}

/// Writes into `dir` in a child process for a while and kills it (SIGKILL)
/// mid-write.
fn crash_while_writing(dir: &Path, run: usize) {
    let mut writer = spawn(&format!("write {} {run}", dir.display()));
    let mut line = String::new();
    std::io::BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "writing");
    std::thread::sleep(write_before_crash());
    writer.kill().unwrap();
    writer.wait().unwrap();
}

/// The run with the median time of [`runs`] runs.
fn median(mut run: impl FnMut(usize) -> Restart) -> Restart {
    let mut runs: Vec<Restart> = (0..runs()).map(&mut run).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs[runs.len() / 2]
}

/// The median of [`runs`] timings of `run`.
fn median_time(mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs()).map(|_| run()).collect();
    times.sort();
    times[times.len() / 2]
}

/// Writes a journal of about `target` entries into `dir`; its entries.
fn build(dir: &Path, target: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let ledger = runtime.block_on(async {
        let store = Arc::new(DiskStore::open(dir).unwrap());
        ledger_with_members_on(dir, store, config(dir), members(), true).await
    });
    let have = ledger.read(|s| s.last_sequence()) as usize;
    let first = "2024-01-02".parse().unwrap();
    runtime.block_on(grow_journal(
        &ledger,
        members(),
        target.saturating_sub(have),
        first,
        170,
    ));
    let entries = ledger.read(|s| s.last_sequence());
    ledger.shutdown();
    eprintln!(
        "built {entries} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    entries
}

fn main() {
    mfi_ledger::allocator::configure();
    if let Ok(task) = std::env::var(CHILD) {
        return child(&task);
    }
    // `cargo bench` passes --bench; a filter that excludes us runs nothing
    // (a smoke run's filters are `cargo test`'s).
    if support::filtered_out("recovery")
        || !support::smoke()
            && std::env::args()
                .skip(1)
                .any(|a| !a.starts_with('-') && !"recovery".contains(a.as_str()))
    {
        return;
    }
    let target: usize = support::setting("MFI_BENCH_ENTRIES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(sized(1_000_000, 2_000));
    let kept = support::setting("MFI_BENCH_DIR").map(std::path::PathBuf::from);
    let temporary = tempfile::tempdir().unwrap();
    let dir = kept.as_deref().unwrap_or(temporary.path());
    let entries = match dir.join("journal.log").exists() {
        true => restart(dir).entries,
        false => build(dir, target),
    };

    let journal = dir_bytes(&dir.join("journal.log"));
    let state = dir_bytes(&dir.join("state"));
    let clean = median(|_| {
        let restart = restart(dir);
        assert_eq!(restart.entries, entries);
        restart
    });
    // Rebuilding the cache and the full verify re-execute every entry
    // (about 40 s per 10^6 entries each, three runs): up to 10^6 entries
    // only, so that a run at 10^7 (the memory goal's size) ends in minutes.
    let slow_parts = entries <= SLOW_PARTS_UP_TO as u64;
    let rebuild = slow_parts.then(|| {
        median(|_| {
            let copy = tempfile::tempdir().unwrap();
            for file in ["journal.log", "log.key", "log.pub"] {
                std::fs::copy(dir.join(file), copy.path().join(file)).unwrap();
            }
            let restart = restart(copy.path());
            assert_eq!(restart.entries, entries);
            restart
        })
    });
    let verify = slow_parts.then(|| {
        median_time(|| {
            let begun = Instant::now();
            let report = mfi_ledger::verify::verify(dir).unwrap();
            assert_eq!(report.entries, entries);
            begun.elapsed()
        })
    });
    let verify_chain = median_time(|| {
        let begun = Instant::now();
        let report = mfi_ledger::verify::verify_to(
            dir,
            &Default::default(),
            mfi_ledger::verify::Depth::Chain,
        )
        .unwrap();
        assert_eq!(report.entries, entries);
        begun.elapsed()
    });
    // Last, since each crash adds the entries written before it.
    let mut before = entries;
    let crash = median(|run| {
        crash_while_writing(dir, run);
        let restart = restart(dir);
        assert!(restart.entries > before, "the crashed writer wrote nothing");
        before = restart.entries;
        restart
    });
    let per_entry = |bytes: u64| bytes as f64 / entries as f64;
    println!("recovery at {entries} entries (median of {}):", runs());
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    for (what, restart) in [
        ("restart after a clean stop     ", Some(clean)),
        ("restart after a crash          ", Some(crash)),
        ("restart rebuilding the cache   ", rebuild),
    ] {
        let Some(restart) = restart else {
            println!("  {what}  not measured above {SLOW_PARTS_UP_TO} entries");
            continue;
        };
        println!(
            "  {what} {:>8.3} s  (resident {:.0} MiB, peak {:.0} MiB, {} entries)",
            restart.seconds,
            mib(restart.resident_bytes),
            mib(restart.peak_bytes),
            restart.entries
        );
    }
    match verify {
        Some(verify) => println!(
            "  offline verify                  {:>8.3} s  ({:.0} entries/s)",
            verify.as_secs_f64(),
            entries as f64 / verify.as_secs_f64()
        ),
        None => println!(
            "  offline verify                   not measured above {SLOW_PARTS_UP_TO} entries"
        ),
    }
    println!(
        "  offline verify, chain only      {:>8.3} s  ({:.0} entries/s)",
        verify_chain.as_secs_f64(),
        entries as f64 / verify_chain.as_secs_f64()
    );
    println!(
        "  disk bytes per entry            {:>8.1}    (journal {:.1} + state cache {:.1})",
        per_entry(journal + state),
        per_entry(journal),
        per_entry(state)
    );
    let json = serde_json::json!({
        "entries": entries,
        "restart_seconds": clean.seconds,
        "restart_resident_bytes": clean.resident_bytes,
        "restart_peak_bytes": clean.peak_bytes,
        "crash_restart_seconds": crash.seconds,
        "crash_restart_entries": crash.entries,
        "crash_restart_resident_bytes": crash.resident_bytes,
        "rebuild_seconds": rebuild.map(|r| r.seconds),
        "rebuild_peak_bytes": rebuild.map(|r| r.peak_bytes),
        "verify_seconds": verify.map(|v| v.as_secs_f64()),
        "verify_entries_per_second": verify.map(|v| entries as f64 / v.as_secs_f64()),
        "verify_chain_seconds": verify_chain.as_secs_f64(),
        "verify_chain_entries_per_second": entries as f64 / verify_chain.as_secs_f64(),
        "disk_bytes_per_entry": per_entry(journal + state),
        "journal_bytes_per_entry": per_entry(journal),
        "state_bytes_per_entry": per_entry(state),
    });
    // The default size's figures are the report's; other sizes beside them.
    let file = match support::setting("MFI_BENCH_ENTRIES") {
        None => "recovery.json".to_owned(),
        Some(_) => format!("recovery-{target}.json"),
    };
    std::fs::write(
        out_dir().join(file),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
