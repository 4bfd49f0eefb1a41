//! The load itself: a pool of HTTP/2 connections, N client tasks taking
//! command indexes from one counter, a latency histogram per client (merged
//! at the end), and a progress display on stderr.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::connect::Conn;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Code;

use super::Mode;
use super::workload::{Kind, Workload};
use crate::pb;
use crate::pb::batch_result::Result as Reply;
use crate::pb::branch_service_client::BranchServiceClient;

/// How long one call may take before it counts as DEADLINE_EXCEEDED.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply accepted (setup batches of disbursements carry schedules).
const REPLY_SIZE_MAX: usize = 64 << 20;
/// Highest latency the histograms track, in microseconds (longer calls are
/// recorded as this).
const LATENCY_MAX_US: u64 = 60_000_000;
/// How often the progress display is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Opens `count` connections to `server` ("http://host:port"; a bare
/// "host:port" gets "http://").
pub async fn connect(server: &str, count: u32) -> anyhow::Result<Vec<Conn>> {
    let endpoint = crate::cli::connect::endpoint(server, CALL_TIMEOUT)?;
    let mut channels = Vec::with_capacity(count as usize);
    for _ in 0..count {
        // Each `connect` is its own HTTP/2 connection.
        channels.push(crate::cli::connect::with_credentials(
            endpoint.connect().await?,
        )?);
    }
    Ok(channels)
}

/// A write client with the reply size raised for setup batches.
pub fn branch_client(channel: &Conn) -> BranchServiceClient<Conn> {
    BranchServiceClient::new(channel.clone()).max_decoding_message_size(REPLY_SIZE_MAX)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Unary or batch.
    pub mode: Mode,
    /// Client tasks.
    pub clients: u32,
    /// Commands per call (1 in unary mode).
    pub batch_size: u32,
    /// Index of the first command.
    pub first: u64,
    /// Index past the last command that may be sent.
    pub limit: u64,
    /// Stop claiming commands after this long.
    pub duration: Option<Duration>,
    /// Commands per second offered in total, if paced.
    pub rate: Option<u64>,
}

/// An acknowledged command: its index and the sequence of its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ack {
    /// Sequence number of its journal entry (first, so that acks sort by it).
    pub sequence: u64,
    /// Index of the command in the run.
    pub index: u64,
}

/// What the clients did.
#[derive(Debug)]
pub struct Outcome {
    /// Latency of every call, in microseconds.
    pub latency: Histogram<u64>,
    /// Calls made.
    pub calls: u64,
    /// Commands sent (acknowledged or not).
    pub commands: u64,
    /// Acknowledged commands, in no particular order.
    pub acks: Vec<Ack>,
    /// Commands not acknowledged, by gRPC code.
    pub errors: BTreeMap<i32, u64>,
    /// Commands whose outcome is unknown (the call failed in transport or
    /// timed out: they may or may not have been applied).
    pub unknown: u64,
    /// From the first call to the last reply.
    pub elapsed: Duration,
    /// Whether the run stopped at `limit` before its `duration`.
    pub capped: bool,
}

impl Outcome {
    /// Commands not acknowledged.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The acknowledgements of `first` and of `second` (if any) together,
    /// for the verification of both runs; the other figures are `first`'s.
    pub fn acknowledged_of(first: &Outcome, second: Option<&Outcome>) -> Outcome {
        let mut acks = first.acks.clone();
        let mut unknown = first.unknown;
        if let Some(second) = second {
            acks.extend_from_slice(&second.acks);
            unknown += second.unknown;
        }
        Outcome {
            latency: first.latency.clone(),
            calls: first.calls,
            commands: first.commands,
            acks,
            errors: first.errors.clone(),
            unknown,
            elapsed: first.elapsed,
            capped: first.capped,
        }
    }
}

/// State the clients share.
struct Shared {
    /// When the run started (command `n` is due at `started + n / rate`).
    started: Instant,
    workload: Arc<Workload>,
    plan: Plan,
    next: AtomicU64,
    deadline: Option<Instant>,
    stop: AtomicBool,
    done: AtomicU64,
    failed: AtomicU64,
    /// Calls in a row that found no server to connect to.
    refused_in_a_row: AtomicU64,
    abort: Mutex<Option<String>>,
}

impl Shared {
    /// The next `plan.batch_size` command indexes, or none when the run is over.
    fn claim(&self) -> Option<std::ops::Range<u64>> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        let size = u64::from(self.plan.batch_size);
        let start = self.next.fetch_add(size, Ordering::Relaxed);
        if start >= self.plan.limit {
            return None;
        }
        Some(start..(start + size).min(self.plan.limit))
    }

    /// With a rate, waits until the first command of `range` is due.
    async fn pace(&self, range: &std::ops::Range<u64>) {
        if let Some(rate) = self.plan.rate {
            let offered = range.start.saturating_sub(self.plan.first);
            let due = self.started + Duration::from_secs_f64(offered as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// Notes how a call went as far as connecting is concerned: a server
    /// that refused [`REFUSED_IN_A_ROW_MAX`] connections in a row has
    /// stopped, and the load stops too rather than hammer a closed port.
    fn connection(&self, status: Option<&tonic::Status>) {
        if !status.is_some_and(connection_refused) {
            self.refused_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        let refused = self.refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if refused >= REFUSED_IN_A_ROW_MAX {
            self.abort(format!(
                "the server refused {refused} connections in a row: it has stopped or is \
                 unreachable, so the load stops here (the commands acknowledged before are \
                 in its journal; those refused never reached it)"
            ));
        }
    }

    /// Stops every client: the server cannot run this load at all.
    fn abort(&self, reason: String) {
        self.stop.store(true, Ordering::Relaxed);
        self.abort.lock().expect("abort lock").get_or_insert(reason);
    }
}

/// Connections refused in a row, by all clients together, after which the
/// load stops.
const REFUSED_IN_A_ROW_MAX: u64 = 50;

/// Whether a call failed because no server accepted the connection: the
/// command never reached a ledger, so its outcome is known (not applied).
fn connection_refused(status: &tonic::Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.contains("Connection refused") || text.contains("tcp connect error")
}

/// One client's results.
struct ClientLog {
    latency: Histogram<u32>,
    calls: u64,
    commands: u64,
    acks: Vec<Ack>,
    errors: BTreeMap<i32, u64>,
    unknown: u64,
}

impl ClientLog {
    fn new() -> ClientLog {
        ClientLog {
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds"),
            calls: 0,
            commands: 0,
            acks: Vec::new(),
            errors: BTreeMap::new(),
            unknown: 0,
        }
    }

    fn call(&mut self, started: Instant) {
        let micros = started
            .elapsed()
            .as_micros()
            .min(u128::from(LATENCY_MAX_US)) as u64;
        self.latency.saturating_record(micros.max(1));
        self.calls += 1;
    }

    fn error(&mut self, code: Code) {
        *self.errors.entry(code as i32).or_default() += 1;
        if outcome_unknown(code) {
            self.unknown += 1;
        }
    }

    /// A failed call: a connection the server refused is a known outcome
    /// (nothing reached it); any other failure, as its code says.
    fn failed(&mut self, status: &tonic::Status) {
        if connection_refused(status) {
            *self.errors.entry(status.code() as i32).or_default() += 1;
        } else {
            self.error(status.code());
        }
    }
}

/// Whether a command that failed with `code` may have been applied anyway.
/// The ledger refuses before writing (INVALID_ARGUMENT, NOT_FOUND,
/// ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNIMPLEMENTED...);
/// a lost connection, a timeout or an internal error leave it unknown.
fn outcome_unknown(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unavailable
            | Code::Internal
            | Code::Aborted
            | Code::DataLoss
    )
}

/// Runs the load on `channels` and returns what happened.
pub async fn run(
    channels: &[Conn],
    workload: Arc<Workload>,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        started,
        workload,
        plan: plan.clone(),
        next: AtomicU64::new(plan.first),
        deadline: plan.duration.map(|d| started + d),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        refused_in_a_row: AtomicU64::new(0),
        abort: Mutex::new(None),
    });
    let progress = Progress::start(shared.clone());
    let mut clients = Vec::with_capacity(plan.clients as usize);
    for i in 0..plan.clients as usize {
        let client = branch_client(&channels[i % channels.len()]);
        let shared = shared.clone();
        clients.push(tokio::spawn(async move {
            match shared.plan.mode {
                Mode::Unary => unary_client(client, &shared).await,
                Mode::Batch => batch_client(client, &shared).await,
            }
        }));
    }
    let mut logs = Vec::with_capacity(clients.len());
    for client in clients {
        logs.push(client.await.context("a client task failed")?);
    }
    let elapsed = started.elapsed();
    progress.finish().await;
    if let Some(reason) = shared.abort.lock().expect("abort lock").take() {
        bail!("{reason}");
    }

    let mut outcome = Outcome {
        latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds"),
        calls: 0,
        commands: 0,
        acks: Vec::with_capacity(logs.iter().map(|l| l.acks.len()).sum()),
        errors: BTreeMap::new(),
        unknown: 0,
        elapsed,
        capped: plan.duration.is_some_and(|d| elapsed < d),
    };
    for log in logs {
        for value in log.latency.iter_recorded() {
            outcome
                .latency
                .record_n(value.value_iterated_to(), u64::from(value.count_at_value()))
                .expect("within the histogram's bounds");
        }
        outcome.calls += log.calls;
        outcome.commands += log.commands;
        outcome.acks.extend(log.acks);
        for (code, count) in log.errors {
            *outcome.errors.entry(code).or_default() += count;
        }
        outcome.unknown += log.unknown;
    }
    Ok(outcome)
}

/// One command per call.
async fn unary_client(mut client: BranchServiceClient<Conn>, shared: &Shared) -> ClientLog {
    let mut log = ClientLog::new();
    let workload = &shared.workload;
    while let Some(range) = shared.claim() {
        shared.pace(&range).await;
        let n = range.start;
        let op = workload.op(n);
        let started = Instant::now();
        let reply = match op.kind {
            Kind::Repayment => client
                .record_repayment(workload.repayment(n, op))
                .await
                .map(|r| r.into_inner().receipt),
            Kind::Deposit => client
                .deposit_savings(workload.deposit(n, op))
                .await
                .map(|r| r.into_inner().receipt),
        };
        log.call(started);
        log.commands += 1;
        shared.connection(reply.as_ref().err());
        match reply {
            Ok(Some(receipt)) => log.acks.push(Ack {
                sequence: receipt.sequence,
                index: n,
            }),
            Ok(None) => {
                log.error(Code::Internal);
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                if status.code() == Code::Unimplemented {
                    shared.abort(format!(
                        "the server does not implement {}: {}",
                        op.kind.command_name(),
                        status.message()
                    ));
                }
                log.failed(&status);
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    log
}

/// `batch_size` commands per `SubmitBatch` call.
async fn batch_client(mut client: BranchServiceClient<Conn>, shared: &Shared) -> ClientLog {
    let mut log = ClientLog::new();
    let workload = &shared.workload;
    while let Some(range) = shared.claim() {
        shared.pace(&range).await;
        let request = pb::SubmitBatchRequest {
            commands: range.clone().map(|n| workload.batch_command(n)).collect(),
        };
        let len = range.end - range.start;
        let started = Instant::now();
        let reply = client.submit_batch(request).await;
        log.call(started);
        shared.connection(reply.as_ref().err());
        log.commands += len;
        let mut failed = 0;
        match reply {
            Ok(reply) => {
                let results = reply.into_inner().results;
                if results.len() as u64 != len {
                    // Which command a result belongs to is unknown: none is acknowledged.
                    for _ in range.clone() {
                        log.error(Code::Internal);
                    }
                    failed = len;
                } else {
                    for (n, result) in range.clone().zip(results) {
                        match acknowledged(workload.op(n).kind, result.result) {
                            Ok(sequence) => log.acks.push(Ack { sequence, index: n }),
                            Err(code) => {
                                log.error(code);
                                failed += 1;
                            }
                        }
                    }
                }
            }
            Err(status) => {
                if status.code() == Code::Unimplemented {
                    shared.abort(format!(
                        "the server does not implement SubmitBatch: {}",
                        status.message()
                    ));
                }
                for _ in range.clone() {
                    log.failed(&status);
                }
                failed = len;
            }
        }
        shared.failed.fetch_add(failed, Ordering::Relaxed);
        shared.done.fetch_add(len, Ordering::Relaxed);
    }
    log
}

/// The sequence of a batch result that acknowledges a command of `kind`, or
/// the code it failed with (INTERNAL for a reply of the wrong kind).
fn acknowledged(kind: Kind, result: Option<Reply>) -> Result<u64, Code> {
    let receipt = match (kind, result) {
        (Kind::Repayment, Some(Reply::RecordRepayment(reply))) => reply.receipt,
        (Kind::Deposit, Some(Reply::DepositSavings(reply))) => reply.receipt,
        (_, Some(Reply::Error(error))) => return Err(Code::from(error.code)),
        _ => return Err(Code::Internal),
    };
    receipt.map(|r| r.sequence).ok_or(Code::Internal)
}

/// The progress display: commands done (of the count), rate, errors.
struct Progress {
    bar: ProgressBar,
    finished: Arc<AtomicBool>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(shared: Arc<Shared>) -> Progress {
        let counted = shared.plan.duration.is_none();
        let bar = ProgressBar::with_draw_target(
            counted.then_some(shared.plan.limit),
            ProgressDrawTarget::stderr(),
        );
        let template = if counted {
            "load  [{elapsed_precise}] {bar:24} {human_pos}/{human_len} {msg}"
        } else {
            "load  [{elapsed_precise}] {spinner} {human_pos} commands {msg}"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        let finished = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let finished = finished.clone();
            async move {
                // The rate over the last second: samples of (when, commands done).
                let mut samples = std::collections::VecDeque::new();
                while !finished.load(Ordering::Relaxed) {
                    let (now, done) = (Instant::now(), shared.done.load(Ordering::Relaxed));
                    samples.push_back((now, done));
                    while samples.len() > 2
                        && now.duration_since(samples[0].0) > Duration::from_secs(1)
                    {
                        samples.pop_front();
                    }
                    let (then, done_then) = samples[0];
                    let seconds = now.duration_since(then).as_secs_f64();
                    let rate = if seconds > 0.0 {
                        (done - done_then) as f64 / seconds
                    } else {
                        0.0
                    };
                    bar.set_position(done);
                    bar.set_message(format!(
                        "{}/s errors {}",
                        group_thousands(rate as u64),
                        shared.failed.load(Ordering::Relaxed)
                    ));
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
                bar.set_position(shared.done.load(Ordering::Relaxed));
            }
        });
        Progress {
            bar,
            finished,
            ticker,
        }
    }

    async fn finish(self) {
        self.finished.store(true, Ordering::Relaxed);
        let _ = self.ticker.await;
        self.bar.finish_and_clear();
    }
}

/// 12345 as "12,345".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The gRPC name of a status code, e.g. "RESOURCE_EXHAUSTED"; `CODE_n`
/// for a number that is none of gRPC's.
pub fn code_name(code: i32) -> String {
    if Code::from(code) == Code::Unknown && code != Code::Unknown as i32 {
        format!("CODE_{code}")
    } else {
        crate::metrics::code_name(Code::from(code)).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(limit: u64, batch_size: u32) -> Shared {
        Shared {
            started: Instant::now(),
            workload: Arc::new(Workload::new("LGT".into(), 10)),
            plan: Plan {
                mode: Mode::Batch,
                clients: 1,
                batch_size,
                first: 0,
                limit,
                duration: None,
                rate: None,
            },
            next: AtomicU64::new(0),
            deadline: None,
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused_in_a_row: AtomicU64::new(0),
            abort: Mutex::new(None),
        }
    }

    #[test]
    fn claims_cover_the_count_exactly() {
        let shared = shared(250, 100);
        assert_eq!(shared.claim(), Some(0..100));
        assert_eq!(shared.claim(), Some(100..200));
        assert_eq!(shared.claim(), Some(200..250));
        assert_eq!(shared.claim(), None);
        assert_eq!(shared.claim(), None);
    }

    #[test]
    fn abort_stops_claims() {
        let shared = shared(250, 1);
        assert_eq!(shared.claim(), Some(0..1));
        shared.abort("no".into());
        assert_eq!(shared.claim(), None);
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(8), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(2), "UNKNOWN");
        assert_eq!(code_name(99), "CODE_99");
    }

    #[test]
    fn batch_results() {
        let receipt = Some(pb::EntryReceipt {
            sequence: 7,
            ..Default::default()
        });
        let repaid = Some(Reply::RecordRepayment(pb::RecordRepaymentResponse {
            receipt: receipt.clone(),
            ..Default::default()
        }));
        assert_eq!(acknowledged(Kind::Repayment, repaid.clone()), Ok(7));
        assert_eq!(acknowledged(Kind::Deposit, repaid), Err(Code::Internal));
        let refused = Some(Reply::Error(pb::BatchError {
            code: 9,
            message: "no".into(),
        }));
        assert_eq!(
            acknowledged(Kind::Deposit, refused),
            Err(Code::FailedPrecondition)
        );
        assert_eq!(acknowledged(Kind::Deposit, None), Err(Code::Internal));
    }
}
