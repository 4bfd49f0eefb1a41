//! The PostgreSQL store: the journal of record in a PostgreSQL database, one
//! row an entry; everything derived from it (the state cache, the Merkle
//! tree's hashes, the checkpoints issued, the access log) in the local data
//! directory, as the embedded store keeps them.
//!
//! Two tables, created when missing ([`SCHEMA`]): `mfi_ledger_journal`, the
//! entries, and `mfi_ledger_head`, one row holding the journal's head (the
//! last entry's sequence number and hash) and the writer's lease (an epoch
//! that rises with every new writer, who holds it, and until when).
//!
//! **Fencing.** A batch is one SQL statement ([`APPEND`]): it moves the head
//! from the entry this writer last wrote to the batch's last entry, on the
//! condition that the epoch is still this writer's, and inserts the batch's
//! rows only if the head moved. A writer that lost its lease (another took
//! it, the epoch rose) moves no head and inserts nothing: its next batch
//! fails, and the store stops. Nothing in this depends on clocks: the lease's
//! expiry only says when another writer may take the lease, and every append
//! is checked against the epoch by the database itself. The sequence number
//! is the table's primary key, a second guard against a fork.
//!
//! **Outcomes.** A statement answered by the database committed (all of the
//! batch) or did not (none of it). A statement whose answer was lost (the
//! connection broke, the server restarted or failed over) has an unknown
//! outcome: the store connects again, as many times as it takes, and reads
//! the head. At the batch's last entry, it committed; at the entry before
//! the batch, with this writer's epoch, it did not and is sent again; else
//! another writer took over. The caller (the ledger's writer) waits
//! meanwhile: nothing is acknowledged that is not committed.
//!
//! **Portability.** The SQL is meant for PostgreSQL and for the engines that
//! speak its protocol (CockroachDB, YugabyteDB): what it relies on is listed
//! in ARCHITECTURE.md. No advisory locks, no LISTEN/NOTIFY, no COPY.
//!
//! The client is tokio-postgres on a runtime of the store's own (one
//! thread), so that the ledger's writer thread and the gRPC handlers (on
//! the service's runtime) can both wait on it.

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::domain::entry::{Entry, EntryBody, GENESIS_HASH, Hash, chain_hash};
use crate::domain::request_index::RequestIndex;

mod copy;

pub use copy::{Copied, export_journal, import_journal};

use super::disk::LocalFiles;
use super::journal_file::JOURNAL_FILE_NAME;
use super::{Store, StoreError};

/// The tables, created when missing (statements run one by one).
pub const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS mfi_ledger_journal (
        seq BIGINT PRIMARY KEY,
        prev_hash BYTEA NOT NULL,
        hash BYTEA NOT NULL,
        request_id TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        body BYTEA NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS mfi_ledger_journal_request_id
        ON mfi_ledger_journal (request_id)",
    "CREATE TABLE IF NOT EXISTS mfi_ledger_head (
        id INT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        epoch BIGINT NOT NULL,
        holder TEXT NOT NULL,
        lease_expires TIMESTAMPTZ NOT NULL)",
    "INSERT INTO mfi_ledger_head (id, seq, hash, epoch, holder, lease_expires)
        VALUES (1, 0, $1, 0, '', now()) ON CONFLICT (id) DO NOTHING",
];

/// Takes the lease when no one holds it (never held, given back, or
/// expired): the epoch rises. Parameters: holder, lease length.
const TAKE_LEASE: &str = "UPDATE mfi_ledger_head
    SET epoch = epoch + 1, holder = $1, lease_expires = now() + CAST($2::TEXT AS INTERVAL)
    WHERE id = 1 AND (holder = '' OR lease_expires < now())
    RETURNING epoch, seq, hash";

/// Extends the lease of the writer whose epoch it is.
const RENEW_LEASE: &str = "UPDATE mfi_ledger_head
    SET lease_expires = now() + CAST($2::TEXT AS INTERVAL)
    WHERE id = 1 AND epoch = $1";

/// Gives the lease back at a clean stop, so that the next writer need not
/// wait for it to expire.
const GIVE_BACK_LEASE: &str = "UPDATE mfi_ledger_head
    SET holder = '', lease_expires = now()
    WHERE id = 1 AND epoch = $1";

/// The head and the lease as they stand.
const READ_HEAD: &str = "SELECT seq, hash, epoch, holder,
    CAST(EXTRACT(EPOCH FROM (lease_expires - now())) AS BIGINT), lease_expires < now()
    FROM mfi_ledger_head WHERE id = 1";

/// One batch: moves the head from this writer's last entry to the batch's
/// last (and extends the lease), and inserts the batch's rows only if the
/// head moved. Parameters: new head sequence and hash, lease length, epoch,
/// expected head sequence and hash, then the rows' columns as arrays.
const APPEND: &str = "WITH moved AS (
        UPDATE mfi_ledger_head
        SET seq = $1, hash = $2, lease_expires = now() + CAST($3::TEXT AS INTERVAL)
        WHERE id = 1 AND epoch = $4 AND seq = $5 AND hash = $6
        RETURNING epoch)
    INSERT INTO mfi_ledger_journal (seq, prev_hash, hash, request_id, epoch, recorded_at, body)
    SELECT e.seq, e.prev_hash, e.hash, e.request_id, moved.epoch, e.recorded_at, e.body
    FROM moved, UNNEST($7::BIGINT[], $8::BYTEA[], $9::BYTEA[], $10::TEXT[],
                       $11::TIMESTAMPTZ[], $12::BYTEA[])
        AS e (seq, prev_hash, hash, request_id, recorded_at, body)";

/// Entries `$1..=$2`, in order.
const READ_ENTRIES: &str = "SELECT seq, hash, body FROM mfi_ledger_journal
    WHERE seq >= $1 AND seq <= $2 ORDER BY seq";

/// Every entry's request id up to the head read at open (a writer may
/// append meanwhile, on a standby), for the exactly-once index.
const READ_REQUEST_IDS: &str =
    "SELECT seq, request_id FROM mfi_ledger_journal WHERE seq <= $1 ORDER BY seq";

/// The journal's last row up to the head read at open: the head's own.
const READ_LAST: &str = "SELECT seq, hash, body FROM mfi_ledger_journal
    WHERE seq <= $1 ORDER BY seq DESC LIMIT 1";

/// How the store reaches its database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A PostgreSQL connection string (`postgres://user@host:port/db` or
    /// `host=... dbname=...`).
    pub url: String,
    /// How long a lease lasts unless renewed; renewed a few times within it.
    pub lease: Duration,
    /// How long to wait for a lease another writer holds before giving up
    /// (`None`: as long as it takes).
    pub lease_wait: Option<Duration>,
}

impl PostgresOptions {
    /// Options for `url` with the default lease (5 s) and no limit on the
    /// wait for it.
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            lease: Duration::from_secs(5),
            lease_wait: None,
        }
    }
}

/// The journal in PostgreSQL plus the derived files in a local directory.
pub struct PostgresStore {
    journal: PgJournal,
    local: LocalFiles,
    /// Held for as long as the store is open: one process a data directory.
    _lock: File,
}

impl PostgresStore {
    /// Opens the store: the database's journal (creating its tables when
    /// missing, and taking the writer's lease, waiting for it as
    /// `options.lease_wait` says) and the derived files in `dir`.
    pub fn open(dir: &Path, options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_as(dir, options, false)
    }

    fn open_as(
        dir: &Path,
        options: &PostgresOptions,
        standby: bool,
    ) -> Result<PostgresStore, StoreError> {
        LocalFiles::create_dir(dir)?;
        if dir.join(JOURNAL_FILE_NAME).exists() {
            return Err(StoreError::Inconsistent(format!(
                "{} holds an embedded journal ({JOURNAL_FILE_NAME}): its books are there, not in \
                 the database. Copy them with `mfi-ledger migrate`, or use another data directory",
                dir.display()
            )));
        }
        let lock = lock_dir(dir)?;
        let journal = match standby {
            true => PgJournal::open_standby(options)?,
            false => PgJournal::open(options)?,
        };
        Ok(PostgresStore {
            journal,
            local: LocalFiles::open(dir, true)?,
            _lock: lock,
        })
    }

    /// Opens the store as a standby: the database's journal is read, not
    /// written (no lease is taken) until [`PostgresStore::follow`] takes
    /// over; the derived files are in `dir`.
    pub fn open_standby(
        dir: &Path,
        options: &PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_as(dir, options, true)
    }

    /// On a standby: follows the journal, handing each run of entries the
    /// writer wrote to `apply` (the ledger's [`crate::ledger::Ledger::apply_followed`]),
    /// until the writer's lease lapses; then takes the lease and returns
    /// `Ok(true)`: this store writes from then on (the caller then makes
    /// the ledger the writer). `Ok(false)` once `stopping` says so.
    pub fn follow(
        &self,
        apply: &mut dyn FnMut(Vec<Entry>) -> Result<(), String>,
        stopping: &dyn Fn() -> bool,
    ) -> Result<bool, StoreError> {
        self.journal.follow(apply, stopping)
    }

    /// The lease's epoch this store writes under; `None` on a standby.
    pub fn epoch(&self) -> Option<i64> {
        self.journal
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .epoch
    }
}

/// Locks `DATA/postgres.lock`: a second process on the same data directory
/// would share its derived files.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("postgres.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(format!("opening {}", path.display())))?;
    super::lock_for_this_process(&file, &path)?;
    Ok(file)
}

impl Store for PostgresStore {
    fn append(&self, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        self.journal.append(entries)
    }

    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.journal.read_entries(from, limit)
    }

    fn take_request_index(&self) -> RequestIndex {
        std::mem::take(
            &mut *self
                .journal
                .request_index
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn last_sequence(&self) -> u64 {
        self.journal.last_sequence()
    }

    fn barrier_count(&self) -> u64 {
        self.journal.barriers.load(Ordering::SeqCst)
    }

    super::disk::local_files_methods!();

    fn watch_ledger(&self, failed: Arc<AtomicBool>) {
        let _ = self.journal.flags.ledger_failed.set(failed);
    }

    fn release(&self) {
        self.journal.flags.release();
    }

    fn writable(&self) -> bool {
        self.journal.flags.writing.load(Ordering::SeqCst)
    }
}

/// The writer's view of the head: the last entry it wrote.
struct Head {
    sequence: u64,
    hash: Hash,
}

/// The writer's connection, lease and head, or why it stopped.
struct Writer {
    client: Option<Arc<Client>>,
    /// The last entry written (or, on a standby, followed).
    head: Head,
    /// The lease's epoch this store writes under; `None` on a standby.
    epoch: Option<i64>,
    stopped: Option<String>,
}

/// The journal in PostgreSQL.
pub(super) struct PgJournal {
    /// Taken at drop, to shut down without waiting (it may be dropped on
    /// a thread of another runtime, where waiting is not allowed).
    runtime: Option<tokio::runtime::Runtime>,
    config: Arc<tokio_postgres::Config>,
    /// The lease's length, as the SQL interval text (`"5 seconds"`).
    lease_text: Arc<str>,
    lease: Duration,
    /// Who this store is, in the lease's row: host, process, and a random
    /// part.
    holder: Arc<str>,
    writer: Mutex<Writer>,
    /// The readers' connection (shared), made again when it breaks.
    reader: Mutex<Option<Arc<Client>>>,
    last_sequence: AtomicU64,
    barriers: AtomicU64,
    request_index: Mutex<RequestIndex>,
    /// What the store and the lease's renewal share.
    flags: Arc<LeaseFlags>,
    renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the store and the lease's renewal task share.
#[derive(Default)]
struct LeaseFlags {
    /// Another writer's epoch was found: this store writes no more.
    fenced: AtomicBool,
    /// This store gives the lease up (it stopped after a fault, or it is
    /// released at shutdown): the renewal gives it back, and a batch
    /// waiting for the database gives up, unacknowledged.
    released: AtomicBool,
    /// The lease was given back.
    given_back: AtomicBool,
    /// The ledger's failure flag ([`Store::watch_ledger`]): once it is set,
    /// the lease is given back, so that a standby takes over.
    ledger_failed: std::sync::OnceLock<Arc<AtomicBool>>,
    /// This store holds the lease and may write.
    writing: AtomicBool,
}

impl LeaseFlags {
    /// Whether the lease is to be given back.
    fn given_up(&self) -> bool {
        self.released.load(Ordering::SeqCst)
            || self
                .ledger_failed
                .get()
                .is_some_and(|failed| failed.load(Ordering::SeqCst))
    }

    /// Stops writing; the renewal then gives the lease back.
    fn release(&self) {
        self.writing.store(false, Ordering::SeqCst);
        self.released.store(true, Ordering::SeqCst);
    }
}

/// What a failed statement means for the batch it carried.
enum Failure {
    /// The database refused it: nothing was written; trying again may do.
    Retry(String),
    /// Nothing was written, and the journal is another writer's now.
    Fenced(String),
    /// Nothing was written, and writing cannot go on (a fault to fix).
    Fatal(String),
    /// The answer was lost: written or not, the head will tell.
    Unknown(String),
}

fn classify(error: &tokio_postgres::Error) -> Failure {
    let Some(db) = error.as_db_error() else {
        // A broken connection, or one that timed out: the answer was lost.
        // Anything else (a value the client could not encode) failed
        // before anything was sent, and would fail again.
        let lost = error.is_closed()
            || std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>());
        return match lost {
            true => Failure::Unknown(error.to_string()),
            false => Failure::Fatal(error.to_string()),
        };
    };
    let code = db.code();
    let text = format!("{} ({})", db.message(), code.code());
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        Failure::Retry(text)
    } else if *code == SqlState::UNIQUE_VIOLATION {
        Failure::Fenced(format!("another writer appended to the journal: {text}"))
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || code.code().starts_with("08")
    {
        Failure::Unknown(text)
    } else {
        Failure::Fatal(text)
    }
}

fn database_error(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |error| StoreError::Database(format!("{what}: {}", describe(&error)))
}

/// A database error with the server's own message when there is one.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// The client's configuration for `url`: a broken connection is noticed
/// within seconds (TCP keepalives), and one that cannot be made gives up
/// after five.
fn connection_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Database(format!("the PostgreSQL connection string: {e}")))?;
    config
        .application_name("mfi-ledger")
        .connect_timeout(Duration::from_secs(5))
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15));
    Ok(config)
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = %error, "a connection to the PostgreSQL journal ended");
        }
    });
    Ok(client)
}

/// The head row as it stands.
struct HeadRow {
    sequence: u64,
    hash: Hash,
    epoch: i64,
    /// Who holds the lease (empty when it was given back).
    holder: String,
    seconds_left: i64,
    /// The lease has expired or was given back: another may take it.
    lapsed: bool,
}

async fn read_head(client: &Client) -> Result<HeadRow, tokio_postgres::Error> {
    let row = client.query_one(READ_HEAD, &[]).await?;
    let holder: String = row.get(3);
    Ok(HeadRow {
        sequence: row.get::<_, i64>(0) as u64,
        hash: hash_of(row.get(1)),
        epoch: row.get(2),
        lapsed: row.get::<_, bool>(5) || holder.is_empty(),
        holder,
        seconds_left: row.get(4),
    })
}

/// A 32-byte hash from a column; zeros when it is not 32 bytes (it then
/// matches nothing the ledger computed).
fn hash_of(bytes: &[u8]) -> Hash {
    bytes.try_into().unwrap_or([0; 32])
}

impl PgJournal {
    /// Opens the journal as its writer: takes the lease (waiting for it as
    /// `options.lease_wait` says).
    pub(super) fn open(options: &PostgresOptions) -> Result<PgJournal, StoreError> {
        PgJournal::start(options, false)
    }

    /// Opens the journal as a standby: reads it, takes no lease, writes
    /// nothing until [`PgJournal::follow`] takes over.
    pub(super) fn open_standby(options: &PostgresOptions) -> Result<PgJournal, StoreError> {
        PgJournal::start(options, true)
    }

    fn start(options: &PostgresOptions, standby: bool) -> Result<PgJournal, StoreError> {
        let config = connection_config(&options.url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-store")
            .enable_all()
            .build()
            .map_err(StoreError::io("starting the PostgreSQL store's runtime"))?;
        let config = Arc::new(config);
        let lease_text: Arc<str> = format!("{} milliseconds", options.lease.as_millis()).into();
        let holder: Arc<str> = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        )
        .into();
        let opened = {
            let (config, holder, lease_text, lease_wait) = (
                config.clone(),
                holder.clone(),
                lease_text.clone(),
                options.lease_wait,
            );
            let opened = block(&runtime, async move {
                let lease = match standby {
                    true => None,
                    false => Some((&*holder, &*lease_text, lease_wait)),
                };
                open_journal(&config, lease).await
            });
            match opened {
                Ok(Ok(opened)) => opened,
                Ok(Err(error)) | Err(error) => {
                    // Not dropped as it is: this may run on a thread of the
                    // service's runtime, where a runtime may not be dropped.
                    runtime.shutdown_background();
                    return Err(error);
                }
            }
        };
        let journal = PgJournal {
            runtime: Some(runtime),
            config,
            lease_text,
            lease: options.lease,
            holder,
            last_sequence: AtomicU64::new(opened.head.sequence),
            writer: Mutex::new(Writer {
                client: Some(opened.client.clone()),
                head: opened.head,
                epoch: opened.epoch,
                stopped: None,
            }),
            reader: Mutex::new(Some(opened.client)),
            barriers: AtomicU64::new(0),
            request_index: Mutex::new(opened.request_index),
            flags: Arc::new(LeaseFlags::default()),
            renewal: Mutex::new(None),
        };
        match opened.epoch {
            Some(epoch) => {
                journal.hold_lease(epoch);
                journal.flags.writing.store(true, Ordering::SeqCst);
            }
            None => tracing::info!(
                entries = journal.last_sequence(),
                "following the PostgreSQL journal as a standby"
            ),
        }
        Ok(journal)
    }

    /// Starts renewing the lease of `epoch`, which this store holds.
    fn hold_lease(&self, epoch: i64) {
        let renewal = self.runtime().spawn(renew_lease(
            self.config.clone(),
            epoch,
            self.lease_text.clone(),
            self.lease / 3,
            self.flags.clone(),
        ));
        *self
            .renewal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(renewal);
        tracing::info!(
            epoch,
            entries = self.last_sequence(),
            "holding the lease of the PostgreSQL journal"
        );
    }

    /// On a standby: follows the journal another server writes, handing
    /// each run of new entries, in order, to `apply` (which applies them to
    /// the ledger's state), until the writer's lease lapses (given back at
    /// a clean stop, or expired after a crash); then takes the lease,
    /// applies what the writer wrote last, and returns `Ok(true)`: from then
    /// on this store writes. Returns `Ok(false)` as soon as `stopping` says
    /// so, and an error when `apply` refuses an entry. While the database
    /// cannot be reached it tries again, as long as it takes.
    pub(super) fn follow(
        &self,
        apply: &mut dyn FnMut(Vec<Entry>) -> Result<(), String>,
        stopping: &dyn Fn() -> bool,
    ) -> Result<bool, StoreError> {
        let mut client: Option<Arc<Client>> = None;
        let mut outage = 0u32;
        while !stopping() {
            let applied = self.last_sequence();
            let step = block(
                self.runtime(),
                follow_step(
                    self.config.clone(),
                    client.take(),
                    applied,
                    self.holder.clone(),
                    self.lease_text.clone(),
                ),
            )?;
            let (connected, step) = step;
            client = connected;
            match step {
                Ok(Step::Entries(entries)) => {
                    outage = 0;
                    self.apply_followed(entries, apply)?;
                }
                Ok(Step::Idle) => {
                    outage = 0;
                    std::thread::sleep(FOLLOW_POLL);
                }
                Ok(Step::TookLease { epoch, head }) => {
                    let taken = self.take_over(epoch, &head, client.take(), apply, stopping);
                    if taken.is_err() {
                        // Given back: another standby may do better.
                        self.flags.release();
                    }
                    return taken;
                }
                Err(why) => {
                    if outage.is_multiple_of(240) {
                        tracing::warn!(%why, "the standby cannot read the PostgreSQL journal; trying again");
                    }
                    outage += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        Ok(false)
    }

    /// Having taken the lease of `epoch` at `head`: applies what the writer
    /// wrote last, then writes from then on (`Ok(true)`); `Ok(false)` when
    /// `stopping` says so first. The catch-up's reads are tried again while
    /// the database cannot be reached.
    fn take_over(
        &self,
        epoch: i64,
        head: &Head,
        client: Option<Arc<Client>>,
        apply: &mut dyn FnMut(Vec<Entry>) -> Result<(), String>,
        stopping: &dyn Fn() -> bool,
    ) -> Result<bool, StoreError> {
        // Renewed from now on: catching up may take a while.
        self.hold_lease(epoch);
        let mut failures = 0u32;
        while self.last_sequence() < head.sequence {
            if stopping() {
                return Ok(false);
            }
            let (from, to) = (
                self.last_sequence() + 1,
                head.sequence.min(self.last_sequence() + CHUNK as u64),
            );
            let config = self.config.clone();
            let fetched = block(self.runtime(), async move {
                let client = connect(&config)
                    .await
                    .map_err(database_error("connecting to read the journal"))?;
                fetch(&client, from, to).await
            })?;
            match fetched {
                Ok(entries) => self.apply_followed(entries, apply)?,
                Err(error @ StoreError::Database(_)) => {
                    failures += 1;
                    if failures > 120 {
                        return Err(error);
                    }
                    tracing::warn!(%error, "catching up with the journal after taking the lease; trying again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(error) => return Err(error),
            }
        }
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if writer.head.hash != head.hash {
            return Err(StoreError::Inconsistent(format!(
                "the journal's head names entry {} with another hash than the one followed",
                head.sequence
            )));
        }
        writer.epoch = Some(epoch);
        writer.client = client;
        self.flags.writing.store(true, Ordering::SeqCst);
        tracing::info!(
            epoch,
            entries = head.sequence,
            "the writer's lease lapsed: this server took it and writes the journal now"
        );
        Ok(true)
    }

    /// Counts followed entries as the journal's (they are committed), then
    /// hands them to `apply`: a reader sent to the store by what the ledger
    /// published finds them.
    fn apply_followed(
        &self,
        entries: Vec<Entry>,
        apply: &mut dyn FnMut(Vec<Entry>) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let head = Head {
            sequence: last.body.sequence,
            hash: last.hash,
        };
        self.last_sequence.store(head.sequence, Ordering::SeqCst);
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .head = head;
        apply(entries).map_err(|why| {
            StoreError::Inconsistent(format!("a followed entry was not applied: {why}"))
        })
    }

    /// The last entry written.
    fn last_sequence(&self) -> u64 {
        self.last_sequence.load(Ordering::SeqCst)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is there until the journal is dropped")
    }

    fn append(&self, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(why) = &writer.stopped {
            return Err(StoreError::Stopped(why.clone()));
        }
        let Some(epoch) = writer.epoch else {
            return Err(StoreError::Stopped(
                "a standby does not write the journal".to_owned(),
            ));
        };
        if self.flags.fenced.load(Ordering::SeqCst) || self.flags.given_up() {
            let why = match self.flags.fenced.load(Ordering::SeqCst) {
                true => "another writer took the journal's lease".to_owned(),
                false => "this server gave the journal's lease up".to_owned(),
            };
            writer.stopped = Some(why.clone());
            return Err(StoreError::Fenced(why));
        }
        let expected = writer.head.sequence + 1;
        if entries[0].body.sequence != expected {
            return Err(StoreError::Stopped(format!(
                "append out of order: expected entry {expected}"
            )));
        }
        let batch = Batch::of(entries, &writer.head)?;
        let from = Head {
            sequence: writer.head.sequence,
            hash: writer.head.hash,
        };
        let to = Head {
            sequence: last.body.sequence,
            hash: last.hash,
        };
        let client = writer.client.take();
        let outcome = block(
            self.runtime(),
            append_batch(
                self.config.clone(),
                client,
                batch,
                epoch,
                self.lease_text.clone(),
                self.flags.clone(),
                (
                    from,
                    Head {
                        sequence: to.sequence,
                        hash: to.hash,
                    },
                ),
            ),
        )?;
        match outcome {
            Ok(client) => {
                writer.client = Some(client);
                writer.head = to;
                self.last_sequence
                    .store(last.body.sequence, Ordering::SeqCst);
                self.barriers.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "the PostgreSQL journal refused a batch; the store stops accepting writes");
                writer.stopped = Some(error.to_string());
                match &error {
                    StoreError::Fenced(_) => {
                        self.flags.writing.store(false, Ordering::SeqCst);
                        self.flags.fenced.store(true, Ordering::SeqCst);
                    }
                    // Nothing more is written here: another may take over.
                    _ => self.flags.release(),
                }
                Err(error)
            }
        }
    }

    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let first = from.max(1);
        let last = self
            .last_sequence
            .load(Ordering::SeqCst)
            .min(first.saturating_add(limit as u64).saturating_sub(1));
        if last < first {
            return Ok(Vec::new());
        }
        // One connection for every reader: tokio-postgres pipelines the
        // queries of concurrent callers over it.
        let client = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let config = self.config.clone();
        let (client, entries) = block(self.runtime(), async move {
            // A connection that broke is made again.
            let client = match client {
                Some(client) if !client.is_closed() => client,
                _ => Arc::new(
                    connect(&config)
                        .await
                        .map_err(database_error("connecting to read the journal"))?,
                ),
            };
            let entries = fetch(&client, first, last).await?;
            Ok::<_, StoreError>((client, entries))
        })??;
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reader.as_ref().is_none_or(|kept| kept.is_closed()) {
            *reader = Some(client);
        }
        Ok(entries)
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        let renewal = self
            .renewal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(renewal) = renewal {
            renewal.abort();
        }
        let (stopped, epoch) = {
            let writer = self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (writer.stopped.is_some(), writer.epoch)
        };
        if let Some(epoch) = epoch
            && !stopped
            && !self.flags.fenced.load(Ordering::SeqCst)
            && !self.flags.given_back.load(Ordering::SeqCst)
        {
            self.give_back_lease(epoch);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgJournal {
    fn give_back_lease(&self, epoch: i64) {
        // Give the lease back, so that the next writer starts at once. At
        // worst (the database is gone) it expires.
        let config = self.config.clone();
        let given = block(self.runtime(), async move {
            tokio::time::timeout(Duration::from_secs(2), async move {
                let client = connect(&config).await?;
                client.execute(GIVE_BACK_LEASE, &[&epoch]).await
            })
            .await
        });
        match given {
            Ok(Ok(Ok(_))) => tracing::info!(epoch, "gave the PostgreSQL journal's lease back"),
            _ => tracing::warn!(epoch, "could not give the lease back; it expires by itself"),
        }
    }
}

/// How often a standby reads the journal's head when nothing is new.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Entries a standby reads at a time.
const CHUNK: usize = 1000;

/// What a standby found at one look at the journal.
enum Step {
    /// Entries after the last it applied.
    Entries(Vec<Entry>),
    /// Nothing new, and the writer holds its lease.
    Idle,
    /// The writer's lease had lapsed, and this standby took it: the head
    /// as it stood then (no one else can move it now).
    TookLease { epoch: i64, head: Head },
}

/// One look at the journal by a standby that applied entries up to
/// `applied`: new entries, or the lease when it lapsed. Gives back the
/// connection (none when it broke) and what it found, or why it could not.
async fn follow_step(
    config: Arc<tokio_postgres::Config>,
    client: Option<Arc<Client>>,
    applied: u64,
    holder: Arc<str>,
    lease_text: Arc<str>,
) -> (Option<Arc<Client>>, Result<Step, String>) {
    let client = match client {
        Some(client) if !client.is_closed() => client,
        _ => match connect(&config).await {
            Ok(client) => Arc::new(client),
            Err(error) => return (None, Err(describe(&error))),
        },
    };
    let step = async {
        let head = read_head(&client).await.map_err(|e| describe(&e))?;
        if head.sequence > applied {
            let to = head.sequence.min(applied + CHUNK as u64);
            let entries = fetch(&client, applied + 1, to)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Step::Entries(entries));
        }
        if !head.lapsed {
            return Ok(Step::Idle);
        }
        let taken = client
            .query_opt(TAKE_LEASE, &[&&*holder, &&*lease_text])
            .await
            .map_err(|e| describe(&e))?;
        Ok(match taken {
            Some(row) => Step::TookLease {
                epoch: row.get(0),
                head: Head {
                    sequence: row.get::<_, i64>(1) as u64,
                    hash: hash_of(row.get(2)),
                },
            },
            // Another standby was quicker.
            None => Step::Idle,
        })
    }
    .await;
    (Some(client), step)
}

/// Entries `from..=to`, which the journal holds.
async fn fetch(client: &Client, from: u64, to: u64) -> Result<Vec<Entry>, StoreError> {
    let rows = client
        .query(READ_ENTRIES, &[&(from as i64), &(to as i64)])
        .await
        .map_err(database_error("reading the journal"))?;
    let mut entries = Vec::with_capacity(rows.len());
    for (expected, row) in (from..).zip(rows) {
        let sequence = row.get::<_, i64>(0) as u64;
        if sequence != expected {
            return Err(StoreError::Inconsistent(format!(
                "entry {expected} is missing from the PostgreSQL journal (found {sequence})"
            )));
        }
        entries.push(entry_of(sequence, row.get(1), row.get(2))?);
    }
    if entries.len() as u64 != to + 1 - from {
        return Err(StoreError::Inconsistent(format!(
            "entry {} is missing from the PostgreSQL journal",
            from + entries.len() as u64
        )));
    }
    Ok(entries)
}

/// A decoded entry from its columns.
fn entry_of(sequence: u64, hash: &[u8], body: &[u8]) -> Result<Entry, StoreError> {
    let decoded = EntryBody::from_canonical_bytes(body)
        .map_err(|source| StoreError::Decode { sequence, source })?;
    if decoded.sequence != sequence {
        return Err(StoreError::Inconsistent(format!(
            "the PostgreSQL journal's row {sequence} holds entry {}",
            decoded.sequence
        )));
    }
    let hash: Hash = hash.try_into().map_err(|_| {
        StoreError::Inconsistent(format!(
            "entry {sequence}'s hash is {} bytes, not 32",
            hash.len()
        ))
    })?;
    Ok(Entry {
        body: decoded,
        hash,
        canonical: body.to_vec(),
    })
}

/// Runs `future` on the store's runtime and waits for it, from any thread
/// (the writer's, or one of the service's runtime).
fn block<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver
        .recv()
        .map_err(|_| StoreError::Database("the PostgreSQL store's task stopped".to_owned()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

/// What opening the journal found.
struct Opened {
    client: Arc<Client>,
    /// The lease's epoch, when taken.
    epoch: Option<i64>,
    head: Head,
    request_index: RequestIndex,
}

/// Connects, creates the tables when missing, and reads the journal's head
/// and request ids; with `lease` (holder, length, longest wait), takes the
/// lease first.
async fn open_journal(
    config: &tokio_postgres::Config,
    lease: Option<(&str, &str, Option<Duration>)>,
) -> Result<Opened, StoreError> {
    let client = connect(config)
        .await
        .map_err(database_error("connecting to the PostgreSQL journal"))?;
    create_schema(&client).await?;
    let (epoch, head) = match lease {
        Some((holder, lease_text, lease_wait)) => {
            let (epoch, head) = take_lease(&client, holder, lease_text, lease_wait).await?;
            (Some(epoch), head)
        }
        None => {
            let read = read_head(&client)
                .await
                .map_err(database_error("reading the journal's head"))?;
            let head = Head {
                sequence: read.sequence,
                hash: read.hash,
            };
            (None, head)
        }
    };
    check_head(&client, &head).await?;
    let request_index = read_request_index(&client, head.sequence).await?;
    Ok(Opened {
        client: Arc::new(client),
        epoch,
        head,
        request_index,
    })
}

/// Takes the lease, waiting while another writer holds it (at most
/// `lease_wait`); gives the new epoch and the head.
async fn take_lease(
    client: &Client,
    holder: &str,
    lease_text: &str,
    lease_wait: Option<Duration>,
) -> Result<(i64, Head), StoreError> {
    let started = tokio::time::Instant::now();
    let mut told = None;
    let (epoch, head) = loop {
        let taken = client
            .query_opt(TAKE_LEASE, &[&holder, &lease_text])
            .await
            .map_err(database_error("taking the journal's lease"))?;
        if let Some(row) = taken {
            let epoch: i64 = row.get(0);
            let head = Head {
                sequence: row.get::<_, i64>(1) as u64,
                hash: hash_of(row.get(2)),
            };
            break (epoch, head);
        }
        let HeadRow {
            epoch,
            holder: other,
            seconds_left: left,
            ..
        } = read_head(client)
            .await
            .map_err(database_error("reading the journal's lease"))?;
        if lease_wait.is_some_and(|wait| started.elapsed() >= wait) {
            return Err(StoreError::Fenced(format!(
                "another writer ({other}, epoch {epoch}) holds the journal's lease"
            )));
        }
        if told.as_ref() != Some(&other) {
            tracing::warn!(
                holder = %other,
                epoch,
                seconds_left = left,
                "another writer holds the PostgreSQL journal's lease; waiting for it to be \
                 given back or to expire"
            );
            told = Some(other);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok((epoch, head))
}

/// Creates the tables when missing. Two processes starting together may
/// race to create them: the loser's error is retried once the winner's
/// tables exist.
async fn create_schema(client: &Client) -> Result<(), StoreError> {
    for attempt in 0.. {
        let mut failed = None;
        for statement in &SCHEMA[..3] {
            if let Err(error) = client.batch_execute(statement).await {
                failed = Some(error);
                break;
            }
        }
        match failed {
            None => break,
            Some(_) if attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(error) => return Err(database_error("creating the journal's tables")(error)),
        }
    }
    client
        .execute(SCHEMA[3], &[&&GENESIS_HASH[..]])
        .await
        .map_err(database_error("creating the journal's head"))?;
    Ok(())
}

/// Checks that the head row names the journal's last row, and that this
/// build reads it.
async fn check_head(client: &Client, head: &Head) -> Result<(), StoreError> {
    let last = client
        .query_opt(READ_LAST, &[&(head.sequence as i64)])
        .await
        .map_err(database_error("reading the journal's last entry"))?;
    let found = match &last {
        None => (0, GENESIS_HASH),
        Some(row) => (row.get::<_, i64>(0) as u64, hash_of(row.get(1))),
    };
    if found != (head.sequence, head.hash) {
        return Err(StoreError::Inconsistent(format!(
            "the PostgreSQL journal's head names entry {} but its last entry is {}, with \
             another hash: the tables were changed by hand",
            head.sequence, found.0
        )));
    }
    if let Some(row) = last {
        crate::domain::entry::peek_request_id(row.get(2))
            .map_err(|source| StoreError::undecodable(0, source))?;
    }
    Ok(())
}

async fn read_request_index(client: &Client, last: u64) -> Result<RequestIndex, StoreError> {
    use tokio_stream::StreamExt;
    let rows = client
        .query_raw(READ_REQUEST_IDS, [last as i64])
        .await
        .map_err(database_error("reading the journal's request ids"))?;
    let mut rows = std::pin::pin!(rows);
    let mut index = RequestIndex::default();
    let mut expected = 1u64;
    while let Some(row) = rows.next().await {
        let row = row.map_err(database_error("reading the journal's request ids"))?;
        let sequence = row.get::<_, i64>(0) as u64;
        if sequence != expected {
            return Err(StoreError::Inconsistent(format!(
                "entry {expected} is missing from the PostgreSQL journal"
            )));
        }
        index.note_found(row.get(1), sequence);
        expected += 1;
    }
    if expected - 1 != last {
        return Err(StoreError::Inconsistent(format!(
            "the PostgreSQL journal holds {} entries, its head names {last}",
            expected - 1
        )));
    }
    index.seal();
    Ok(index)
}

/// Renews the lease every `every`; marks the store fenced when the epoch
/// is no longer this writer's, and gives the lease back (once) when the
/// store gives it up ([`LeaseFlags::given_up`]).
async fn renew_lease(
    config: Arc<tokio_postgres::Config>,
    epoch: i64,
    lease_text: Arc<str>,
    every: Duration,
    flags: Arc<LeaseFlags>,
) {
    let mut client: Option<Client> = None;
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep(Duration::from_millis(100).min(every)).await;
        if flags.given_up() {
            flags.writing.store(false, Ordering::SeqCst);
            let given = tokio::time::timeout(Duration::from_secs(5), async {
                let connected = match client.take() {
                    Some(connected) if !connected.is_closed() => connected,
                    _ => connect(&config).await?,
                };
                connected.execute(GIVE_BACK_LEASE, &[&epoch]).await
            })
            .await;
            if matches!(given, Ok(Ok(_))) {
                flags.given_back.store(true, Ordering::SeqCst);
                tracing::info!(
                    epoch,
                    "this server writes no more: it gave the PostgreSQL journal's lease back, for \
                     another to take"
                );
            }
            return;
        }
        if tokio::time::Instant::now() < next {
            continue;
        }
        next = tokio::time::Instant::now() + every;
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&config).await.ok();
        }
        let Some(connected) = &client else {
            continue;
        };
        match connected
            .execute(RENEW_LEASE, &[&epoch, &&*lease_text])
            .await
        {
            Ok(1) => {}
            Ok(_) => {
                tracing::error!(
                    epoch,
                    "another writer took the PostgreSQL journal's lease; this one writes no more"
                );
                flags.writing.store(false, Ordering::SeqCst);
                flags.fenced.store(true, Ordering::SeqCst);
                return;
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), "renewing the journal's lease failed");
                client = None;
            }
        }
    }
}

/// A batch's rows as the columns [`APPEND`] takes.
struct Batch {
    sequences: Vec<i64>,
    previous: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    request_ids: Vec<String>,
    recorded: Vec<chrono::DateTime<chrono::Utc>>,
    bodies: Vec<Vec<u8>>,
}

impl Batch {
    fn of(entries: &[Arc<Entry>], head: &Head) -> Result<Batch, StoreError> {
        let mut batch = Batch {
            sequences: Vec::with_capacity(entries.len()),
            previous: Vec::with_capacity(entries.len()),
            hashes: Vec::with_capacity(entries.len()),
            request_ids: Vec::with_capacity(entries.len()),
            recorded: Vec::with_capacity(entries.len()),
            bodies: Vec::with_capacity(entries.len()),
        };
        let mut previous = head.hash;
        for entry in entries {
            // The chain is checked here too: a row's hash is what its
            // previous hash and bytes give.
            if chain_hash(&previous, &entry.canonical) != entry.hash {
                return Err(StoreError::Inconsistent(format!(
                    "entry {} does not follow the journal's head",
                    entry.body.sequence
                )));
            }
            let recorded = chrono::DateTime::from_timestamp_micros(entry.body.recorded_at_micros)
                .ok_or_else(|| {
                StoreError::Inconsistent(format!(
                    "entry {}'s time is out of range",
                    entry.body.sequence
                ))
            })?;
            batch.sequences.push(entry.body.sequence as i64);
            batch.previous.push(previous.to_vec());
            batch.hashes.push(entry.hash.to_vec());
            batch.request_ids.push(entry.body.request_id.to_string());
            batch.recorded.push(recorded);
            batch.bodies.push(entry.canonical.clone());
            previous = entry.hash;
        }
        Ok(batch)
    }
}

/// Appends one batch: the statement, and when its answer is lost, the head
/// read again (as many connections as it takes) to learn whether it
/// committed. Gives back the connection to use next.
async fn append_batch(
    config: Arc<tokio_postgres::Config>,
    client: Option<Arc<Client>>,
    batch: Batch,
    epoch: i64,
    lease_text: Arc<str>,
    flags: Arc<LeaseFlags>,
    (from, to): (Head, Head),
) -> Result<Arc<Client>, StoreError> {
    let mut client = client;
    let mut retries = 0u32;
    let mut down = 0u32;
    loop {
        let connected = match client.take() {
            Some(connected) if !connected.is_closed() => connected,
            _ => match connect(&config).await {
                Ok(connected) => Arc::new(connected),
                Err(error) => {
                    wait_for_database(&mut down, &describe(&error), &flags).await?;
                    continue;
                }
            },
        };
        let written = connected
            .execute(
                APPEND,
                &[
                    &(to.sequence as i64),
                    &&to.hash[..],
                    &&*lease_text,
                    &epoch,
                    &(from.sequence as i64),
                    &&from.hash[..],
                    &batch.sequences,
                    &batch.previous,
                    &batch.hashes,
                    &batch.request_ids,
                    &batch.recorded,
                    &batch.bodies,
                ],
            )
            .await;
        let failure = match written {
            Ok(rows) if rows == batch.sequences.len() as u64 => {
                if down > 0 {
                    tracing::info!("the PostgreSQL journal is back; the batch is committed");
                }
                return Ok(connected);
            }
            Ok(_) => None,
            Err(error) => Some(classify(&error)),
        };
        match failure {
            // The head did not move: written by this writer (an earlier
            // attempt of this batch whose answer was lost) or fenced.
            None => {}
            Some(Failure::Retry(why)) if retries < 10 => {
                retries += 1;
                tracing::warn!(%why, retries, "the PostgreSQL journal asked for the batch again");
                client = Some(connected);
                continue;
            }
            Some(Failure::Retry(why)) | Some(Failure::Fatal(why)) => {
                return Err(StoreError::Database(format!(
                    "the PostgreSQL journal refused the batch: {why}"
                )));
            }
            Some(Failure::Fenced(why)) => return Err(StoreError::Fenced(why)),
            Some(Failure::Unknown(why)) => {
                wait_for_database(&mut down, &why, &flags).await?;
                continue;
            }
        }
        // Whether the batch is in: the head tells.
        let HeadRow {
            sequence,
            hash,
            epoch: head_epoch,
            holder,
            ..
        } = match read_head(&connected).await {
            Ok(head) => head,
            Err(error) => {
                wait_for_database(&mut down, &describe(&error), &flags).await?;
                continue;
            }
        };
        if (sequence, hash, head_epoch) == (to.sequence, to.hash, epoch) {
            return Ok(connected);
        }
        return Err(StoreError::Fenced(format!(
            "the journal's head is entry {sequence} of epoch {head_epoch} ({holder}), not this \
             writer's entry {} of epoch {epoch}: another writer took over",
            from.sequence
        )));
    }
}

/// Waits before the next attempt while the database cannot be reached,
/// saying so at the first attempt and then about every minute; gives up
/// (the batch unacknowledged, its outcome unknown) once the store gives
/// its lease up (shutdown, or the ledger failed).
async fn wait_for_database(
    attempts: &mut u32,
    why: &str,
    flags: &LeaseFlags,
) -> Result<(), StoreError> {
    const PAUSE: Duration = Duration::from_millis(250);
    if flags.given_up() {
        return Err(StoreError::Stopped(format!(
            "stopping while the PostgreSQL journal cannot be reached ({why}): whether the last \
             batch was written is not known; send its commands again with the same request ids"
        )));
    }
    if attempts.is_multiple_of(240) {
        tracing::warn!(
            %why,
            seconds = u64::from(*attempts) * PAUSE.as_millis() as u64 / 1000,
            "the PostgreSQL journal cannot be reached; the batch waits, unacknowledged, and is \
             sent again when it can"
        );
    }
    *attempts += 1;
    tokio::time::sleep(PAUSE).await;
    Ok(())
}
