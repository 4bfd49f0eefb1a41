//! The service's Prometheus metrics: one registry for the process, written
//! by the API (requests), the ledger (commands, batches, barriers,
//! checkpoints) and read by `serve --metrics-listen` (`api::metrics_http`),
//! which also sets the gauges read off the ledger at each scrape. Counting
//! never fails and never blocks a command: a metric is a few atomic adds.
//!
//! The names, with their labels (documented in the README):
//! - `mfi_ledger_requests_total{method, code}`: calls answered, by RPC
//!   (`BranchService/RecordRepayment`) and gRPC status code name;
//! - `mfi_ledger_request_duration_seconds{method}`: their latency;
//! - `mfi_ledger_commands_total{outcome}`: commands submitted, by outcome
//!   (`acknowledged`, `refused`, `overloaded`, `unavailable`, `internal`);
//! - `mfi_ledger_commands_refused_total{reason}`: refusals by reason
//!   (`invalid`, `not_found`, `already_exists`, `failed_precondition`,
//!   `request_id_reused`, `overflow`, `permission_denied`, `damaged`);
//! - `mfi_ledger_batch_entries`: entries made durable by one barrier;
//! - `mfi_ledger_barrier_duration_seconds`: one barrier (write + fdatasync);
//! - `mfi_ledger_writer_queue_submissions`, `mfi_ledger_commands_in_flight`:
//!   submissions waiting for the writer, commands not yet answered;
//! - `mfi_ledger_journal_entries`, `mfi_ledger_journal_bytes`;
//! - `mfi_ledger_read_side_lag_entries`: durable, not yet readable;
//! - `mfi_ledger_request_ids_in_memory`: request ids the writer holds in
//!   memory (those of the entries past the journal's index on disk);
//! - `mfi_ledger_checkpoint_size`, `mfi_ledger_checkpoint_signed_timestamp_seconds`
//!   (its age is `time() - ...` in PromQL);
//! - `mfi_ledger_serving`: 1 while the ledger decides commands, 0 after a fault.

use std::cell::RefCell;
use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub commands: IntCounterVec,
    pub refused: IntCounterVec,
    pub batch_entries: Histogram,
    pub barrier_seconds: Histogram,
    pub queue_submissions: IntGauge,
    pub in_flight: IntGauge,
    pub journal_entries: IntGauge,
    pub journal_bytes: IntGauge,
    pub read_side_lag: IntGauge,
    pub request_ids_in_memory: IntGauge,
    pub checkpoint_size: IntGauge,
    pub checkpoint_timestamp: IntGauge,
    pub serving: IntGauge,
}

/// Latency buckets, in seconds: 50 µs to 10 s.
const SECONDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
    10.0,
];

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "mfi_ledger_request_duration_seconds",
                "Time to answer a call, by RPC",
            )
            .buckets(SECONDS.to_vec()),
            &["method"],
        )?;
        registry.register(Box::new(request_seconds.clone()))?;
        Ok(Metrics {
            requests: counter(
                "mfi_ledger_requests_total",
                "Calls answered, by RPC and gRPC status code",
                &["method", "code"],
            )?,
            request_seconds,
            commands: counter(
                "mfi_ledger_commands_total",
                "Commands submitted to the ledger, by outcome",
                &["outcome"],
            )?,
            refused: counter(
                "mfi_ledger_commands_refused_total",
                "Commands the ledger refused, by reason",
                &["reason"],
            )?,
            batch_entries: histogram(
                "mfi_ledger_batch_entries",
                "Entries made durable by one barrier",
                prometheus::exponential_buckets(1.0, 2.0, 12)?,
            )?,
            barrier_seconds: histogram(
                "mfi_ledger_barrier_duration_seconds",
                "Time to make one batch durable (write and fdatasync)",
                SECONDS.to_vec(),
            )?,
            queue_submissions: gauge(
                "mfi_ledger_writer_queue_submissions",
                "Submissions waiting for the writer",
            )?,
            in_flight: gauge(
                "mfi_ledger_commands_in_flight",
                "Commands submitted and not yet answered",
            )?,
            journal_entries: gauge("mfi_ledger_journal_entries", "Entries in the journal")?,
            journal_bytes: gauge("mfi_ledger_journal_bytes", "Size of the journal file")?,
            read_side_lag: gauge(
                "mfi_ledger_read_side_lag_entries",
                "Entries durable but not yet applied to the state reads see",
            )?,
            request_ids_in_memory: gauge(
                "mfi_ledger_request_ids_in_memory",
                "Request ids the writer holds in memory: those of the entries past the journal's index on disk",
            )?,
            checkpoint_size: gauge(
                "mfi_ledger_checkpoint_size",
                "Entries covered by the latest signed checkpoint",
            )?,
            checkpoint_timestamp: gauge(
                "mfi_ledger_checkpoint_signed_timestamp_seconds",
                "When the latest checkpoint was signed (Unix time)",
            )?,
            serving: gauge(
                "mfi_ledger_serving",
                "1 while the ledger decides commands, 0 after a fault stopped it",
            )?,
            registry,
        })
    }

    /// Every metric in Prometheus's text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding the metrics failed: {error}\n"))
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
        // Fixed names and labels: registering them cannot fail but by a bug.
        Metrics::new().expect("the metrics' names and labels are valid and distinct")
    });
    &METRICS
}

/// The label of an RPC path: `Service/Method` for the ledger's services,
/// health checking and reflection; `other` for anything else, so a client
/// cannot grow the label set with made-up paths.
pub fn method_label(path: &str) -> &str {
    for prefix in ["/mfi.ledger.v1.", "/grpc.health.v1.", "/grpc.reflection."] {
        if let Some(rest) = path.strip_prefix(prefix)
            && rest.len() <= 80
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'.' || b == b'_')
        {
            return rest;
        }
    }
    "other"
}

/// A status code's name, as the gRPC specification spells it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What the log line of the call being served says beyond its RPC, status
/// and duration: who called, and for a write its request id and entry.
/// Filled by whoever learns it while the call is served (authentication,
/// the ledger's submit), read by the layer that logs the call.
#[derive(Clone, Debug, Default)]
pub struct CallNote {
    pub principal: Option<String>,
    pub request_id: Option<String>,
    pub sequence: Option<u64>,
    /// Commands submitted (a batch's size), and of them acknowledged.
    pub commands: u64,
    pub acknowledged: u64,
}

tokio::task_local! {
    static CALL: RefCell<CallNote>;
}

/// Runs `call` with a fresh [`CallNote`] for it; returns both.
pub async fn noting<F: std::future::Future>(call: F) -> (F::Output, CallNote) {
    CALL.scope(RefCell::new(CallNote::default()), async {
        let output = call.await;
        let note = CALL.with(|note| note.borrow().clone());
        (output, note)
    })
    .await
}

/// Adds to the note of the call being served (nothing outside a call).
pub fn note_call(change: impl FnOnce(&mut CallNote)) {
    let _ = CALL.try_with(|note| change(&mut note.borrow_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_label_is_bounded_to_the_services_served() {
        assert_eq!(
            method_label("/mfi.ledger.v1.BranchService/RecordRepayment"),
            "BranchService/RecordRepayment"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_label("/made.up/Path"), "other");
        assert_eq!(method_label("/mfi.ledger.v1.<script>"), "other");
    }

    #[test]
    fn every_metric_is_rendered_by_name() {
        let metrics = metrics();
        metrics.serving.set(1);
        metrics
            .requests
            .with_label_values(&["BranchService/RecordRepayment", "OK"])
            .inc();
        let text = metrics.render();
        for name in [
            "mfi_ledger_requests_total",
            "mfi_ledger_serving 1",
            "mfi_ledger_journal_entries",
            "mfi_ledger_barrier_duration_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
