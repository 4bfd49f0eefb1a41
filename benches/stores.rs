//! The PostgreSQL store beside the embedded one, in one run: durable
//! repayments through `Ledger::submit_many` at batch sizes 1, 10, 100 and
//! 1,000 (one durable barrier per batch: an `fdatasync` of the journal file,
//! or one committed statement), each store's ledger set up alike.
//!
//! The database is the one `MFI_BENCH_POSTGRES_URL` names (`scripts/bench-all`
//! starts a throw-away cluster with `scripts/pg-cluster` and sets it);
//! without it the benchmark says so and measures nothing.
//!
//! `MFI_BENCH_POSTGRES_URL=postgresql://... cargo bench --bench stores`
//!
//! `cargo test` runs it as a smoke run (`support::smoke`: each benchmark
//! once, 100 members), on a cluster of its own started by
//! `scripts/pg-cluster` when `MFI_BENCH_POSTGRES_URL` is not set. Without
//! PostgreSQL the smoke run says so loudly and measures the embedded store
//! alone; under `CI=true` it fails instead.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use mfi_ledger::ledger::Ledger;
use mfi_ledger::store::{DiskStore, PostgresOptions, PostgresStore, Store};

use support::{bench_config, ledger_with_members_on, members, repayment, smoke};

const BATCH_SIZES: [usize; 4] = [1, 10, 100, 1000];

/// A smoke run's own PostgreSQL cluster (`scripts/pg-cluster`), stopped and
/// removed when dropped.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster")
    }

    /// A new cluster and the URL of its database `books`; `None` (after a
    /// loud banner) when it could not be started, a failure under
    /// `CI=true`.
    fn start() -> Option<(Cluster, String)> {
        // Short: the socket's path must fit in 107 bytes.
        let cluster = Cluster {
            dir: PathBuf::from(format!("/tmp/mfi-pgb.{}", std::process::id())),
        };
        let output = Process::new(Self::script())
            .arg("start")
            .arg(&cluster.dir)
            .output();
        let failure = match output {
            Ok(output) if output.status.success() => {
                let url = String::from_utf8(output.stdout).expect("a URL");
                return Some((cluster, url.trim().to_owned()));
            }
            Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
            Err(error) => error.to_string(),
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "stores: the smoke run's PostgreSQL did not start ({failure}); under CI=true \
             it may not be skipped"
        );
        eprintln!(
            "\n{banner}\nSKIPPED: stores: PostgreSQL did not start (scripts/pg-cluster: \
             {failure}).\n{banner}\n",
            banner = "!".repeat(78)
        );
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Process::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn stores(c: &mut Criterion) {
    // A smoke run starts a cluster of its own, kept until the end.
    let mut _cluster = None;
    let url = match std::env::var("MFI_BENCH_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) if smoke() => match Cluster::start() {
            Some((cluster, url)) => {
                _cluster = Some(cluster);
                url
            }
            None => return,
        },
        Err(_) => {
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

criterion_group!(benches, stores);

fn main() {
    support::criterion_main("stores", &[benches]);
}
