//! At 10^6 journal entries: restart time (after a clean stop, and rebuilding
//! the state cache from the journal alone), offline verification speed (in
//! full, and the chain pass alone), and
//! disk bytes per entry (journal plus sled state cache).
//!
//! `cargo bench --bench recovery` prints a table and writes
//! `target/bench/recovery.json`. Set `MFI_BENCH_ENTRIES` for another size.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mfi_ledger::ledger::{Ledger, LedgerConfig};
use mfi_ledger::store::DiskStore;

use support::{FixedClock, grow_journal, ledger_with_members};

const MEMBERS: usize = 1000;
const RUNS: usize = 3;

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

fn start(dir: &Path) -> Ledger {
    let store = DiskStore::open(dir).unwrap();
    Ledger::start(
        Arc::new(store),
        Arc::new(FixedClock),
        LedgerConfig::default(),
    )
    .unwrap()
}

/// The median of `RUNS` timings of `run`.
fn median(mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| run()).collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    // `cargo bench` passes --bench; a filter that excludes us runs nothing.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"recovery".contains(a.as_str()))
    {
        return;
    }
    let target: usize = std::env::var("MFI_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let ledger = runtime.block_on(ledger_with_members(dir.path(), MEMBERS, true));
    let have = ledger.read(|s| s.last_sequence()) as usize;
    let first = "2024-01-02".parse().unwrap();
    runtime.block_on(grow_journal(
        &ledger,
        MEMBERS,
        target.saturating_sub(have),
        first,
        170,
    ));
    let entries = ledger.read(|s| s.last_sequence());
    ledger.shutdown();
    drop(ledger);
    eprintln!(
        "built {entries} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let journal = dir_bytes(&dir.path().join("journal.log"));
    let state = dir_bytes(&dir.path().join("state"));
    let restart = median(|| {
        let begun = Instant::now();
        let ledger = start(dir.path());
        let took = begun.elapsed();
        assert_eq!(ledger.read(|s| s.last_sequence()), entries);
        drop(ledger);
        took
    });
    let rebuild = median(|| {
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("journal.log"),
            copy.path().join("journal.log"),
        )
        .unwrap();
        let begun = Instant::now();
        let ledger = start(copy.path());
        let took = begun.elapsed();
        assert_eq!(ledger.read(|s| s.last_sequence()), entries);
        took
    });
    let verify = median(|| {
        let begun = Instant::now();
        let report = mfi_ledger::verify::verify(dir.path()).unwrap();
        assert_eq!(report.entries, entries);
        begun.elapsed()
    });
    let verify_chain = median(|| {
        let begun = Instant::now();
        let report = mfi_ledger::verify::verify_to(
            dir.path(),
            &Default::default(),
            mfi_ledger::verify::Depth::Chain,
        )
        .unwrap();
        assert_eq!(report.entries, entries);
        begun.elapsed()
    });
    let per_entry = |bytes: u64| bytes as f64 / entries as f64;
    println!("recovery at {entries} entries (median of {RUNS}):");
    println!(
        "  restart after a clean stop      {:>8.3} s",
        restart.as_secs_f64()
    );
    println!(
        "  restart rebuilding the cache    {:>8.3} s",
        rebuild.as_secs_f64()
    );
    println!(
        "  offline verify                  {:>8.3} s  ({:.0} entries/s)",
        verify.as_secs_f64(),
        entries as f64 / verify.as_secs_f64()
    );
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
        "restart_seconds": restart.as_secs_f64(),
        "rebuild_seconds": rebuild.as_secs_f64(),
        "verify_seconds": verify.as_secs_f64(),
        "verify_entries_per_second": entries as f64 / verify.as_secs_f64(),
        "verify_chain_seconds": verify_chain.as_secs_f64(),
        "verify_chain_entries_per_second": entries as f64 / verify_chain.as_secs_f64(),
        "disk_bytes_per_entry": per_entry(journal + state),
        "journal_bytes_per_entry": per_entry(journal),
        "state_bytes_per_entry": per_entry(state),
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/recovery.json",
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
