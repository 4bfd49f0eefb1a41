//! The PostgreSQL store beside the embedded one, in one run: durable
//! repayments through `Ledger::submit_many` at batch sizes 1, 10, 100 and
//! 1,000 (one durable barrier per batch, or per chunk of 256 entries at
//! 1,000: an `fdatasync` of the journal file, or one committed statement),
//! each store's ledger set up alike.
//!
//! The database is the one `MFI_BENCH_POSTGRES_URL` names (`scripts/bench-all`
//! starts a throw-away cluster with `scripts/pg-cluster` and sets it);
//! without it the benchmark says so and measures nothing.
//!
//! `MFI_BENCH_POSTGRES_URL=postgresql://... cargo bench --bench stores`
//!
//! `cargo test` runs it as a smoke run (`support::smoke`: each benchmark
//! once, 100 members), on a cluster of its own started by
//! `scripts/pg-cluster`. Without PostgreSQL the smoke run says so loudly
//! and runs nothing; in CI (`CI=true`) it fails instead.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mfi_ledger::ledger::Ledger;
use mfi_ledger::store::{DiskStore, PostgresOptions, PostgresStore, Store};

use support::{bench_config, ledger_with_members_on, members, repayment, smoke};

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];

/// A smoke run's own PostgreSQL cluster (`scripts/pg-cluster`), stopped and
/// removed when dropped (a run killed outright leaves it running, as
/// `scripts/bench-postgres-store` does).
struct Cluster {
    dir: tempfile::TempDir,
}

/// Whether this runs in CI (`CI` set to anything but empty, `0` or
/// `false`, as the tests read it).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
    })
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster")
    }

    /// A new cluster and the URL of its database `books`; `None` (after a
    /// loud banner) when PostgreSQL is not installed here or did not start,
    /// a failure in CI.
    fn start() -> Option<(Cluster, String)> {
        // PostgreSQL's programs, where the tests look for them: without
        // them, scripts/pg-cluster would install them, which a test run
        // should not do behind its user's back.
        let installed = std::env::var_os("PG_BIN_DIR").is_some()
            || std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
                versions
                    .flatten()
                    .any(|version| version.path().join("bin/postgres").exists())
            });
        let failure = if installed {
            // Short: the socket's path must fit in 107 bytes.
            let dir = tempfile::Builder::new()
                .prefix("mfi-pgb.")
                .tempdir_in("/tmp")
                .expect("a directory for the cluster");
            let cluster = Cluster { dir };
            let output = Process::new(Self::script())
                .arg("start")
                .arg(cluster.dir.path())
                .output();
            match output {
                Ok(output) if output.status.success() => {
                    let url = String::from_utf8(output.stdout).expect("a URL");
                    return Some((cluster, url.trim().to_owned()));
                }
                Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                Err(error) => error.to_string(),
            }
        } else {
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, and \
             PG_BIN_DIR is not set)"
                .to_owned()
        };
        assert!(
            !in_ci(),
            "stores: the smoke run's PostgreSQL did not start ({failure}); in CI it may not \
             be skipped (install Debian's postgresql package)"
        );
        eprintln!(
            "\n{banner}\nSKIPPED: stores: {failure}; nothing was run.\n{banner}\n",
            banner = "!".repeat(78)
        );
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Process::new(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn stores(c: &mut Criterion) {
    // A smoke run starts a cluster of its own, kept until the end.
    let mut _cluster = None;
    let url = match support::setting("MFI_BENCH_POSTGRES_URL") {
        Some(url) => url,
        None if smoke() => match Cluster::start() {
            Some((cluster, url)) => {
                _cluster = Some(cluster);
                url
            }
            None => return,
        },
        None => {
            eprintln!(
                "stores: MFI_BENCH_POSTGRES_URL is not set, nothing measured (scripts/bench-all \
                 starts a PostgreSQL and sets it)"
            );
            return;
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let embedded_dir = tempfile::tempdir().unwrap();
    let postgres_dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(DiskStore::open(embedded_dir.path()).unwrap());
    let postgres: Arc<dyn Store> =
        Arc::new(PostgresStore::open(postgres_dir.path(), &PostgresOptions::new(url)).unwrap());
    let ledgers: [(&str, Arc<Ledger>); 2] = [
        ("embedded", {
            let dir = embedded_dir.path();
            runtime.block_on(ledger_with_members_on(
                dir,
                embedded,
                bench_config(),
                members(),
                true,
            ))
        }),
        ("postgres", {
            let dir = postgres_dir.path();
            runtime.block_on(ledger_with_members_on(
                dir,
                postgres,
                bench_config(),
                members(),
                true,
            ))
        }),
    ];
    let members = members();
    let next = AtomicUsize::new(0);
    let mut group = c.benchmark_group("stores");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for batch in BATCH_SIZES {
        group.throughput(Throughput::Elements(batch as u64));
        for (store, ledger) in &ledgers {
            group.bench_with_input(BenchmarkId::new(*store, batch), &batch, |b, &batch| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let commands = (0..batch)
                            .map(|_| {
                                repayment(next.fetch_add(1, Ordering::Relaxed) % members, 1000)
                            })
                            .collect();
                        let start = Instant::now();
                        let results = runtime.block_on(ledger.submit_many(commands));
                        elapsed += start.elapsed();
                        assert!(results.iter().all(Result::is_ok));
                    }
                    elapsed
                })
            });
        }
    }
    group.finish();
    for (_, ledger) in ledgers {
        ledger.shutdown();
    }
}

fn main() {
    support::criterion_main("stores", &[stores]);
}
