//! The metrics an operator scrapes: a layer that counts every call by RPC
//! and status and times it, and `serve --metrics-listen`'s own HTTP
//! listener answering `GET /metrics` in Prometheus's text format (the
//! names are in [`crate::metrics`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use tonic::body::Body;

use tracing::Instrument;

use crate::ledger::Ledger;
use crate::metrics::{CallNote, code_name, method_label, metrics, noting};

/// Counts and times every call (see [`RequestMetrics`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMetricsLayer;

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> RequestMetrics<S> {
        RequestMetrics { inner }
    }
}

/// Records each call's RPC, status code and duration. The status is the
/// `grpc-status` of the response's headers (a call refused or failed
/// before its reply); a reply whose status comes in the trailers is
/// counted OK (every unary reply the ledger sends there is).
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for RequestMetrics<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = method_label(request.uri().path()).to_owned();
        let started = Instant::now();
        let span = tracing::info_span!("call", rpc = %method);
        let call = inner.call(request);
        Box::pin(
            async move {
                let (response, note) = noting(call).await;
                let response = response?;
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from);
                count(&method, code, started);
                log_call(&method, code, &response, &note, started);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// One line per call: at info for the ledger's services (RPC, principal,
/// status, duration; a write's request id and entry, a batch's counts; a
/// refusal's field), at debug for health checks and reflection. Ids only:
/// never a member's name, nor a refusal's message (it may quote a value).
fn log_call(
    method: &str,
    code: tonic::Code,
    response: &http::Response<Body>,
    note: &CallNote,
    started: Instant,
) {
    let status = code_name(code);
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let refused_field = (code != tonic::Code::Ok)
        .then(|| response.headers().get("grpc-message"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|message| message.split_once(':').or(message.split_once("%3A")))
        .map(|(field, _)| field)
        .filter(|field| {
            field.len() <= 64
                && field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b))
        });
    let principal = note.principal.as_deref();
    let request_id = note.request_id.as_deref();
    if method.starts_with("Health/") || method.starts_with("v1") || method == "other" {
        tracing::debug!(rpc = method, status, duration_ms, "call");
        return;
    }
    tracing::info!(
        rpc = method,
        principal,
        status,
        duration_ms,
        request_id,
        sequence = note.sequence,
        commands = (note.commands > 1).then_some(note.commands),
        acknowledged = (note.commands > 1).then_some(note.acknowledged),
        refused_field,
        "call"
    );
}

/// Counts a call and its duration.
fn count(method: &str, code: tonic::Code, started: Instant) {
    let metrics = metrics();
    metrics
        .requests
        .with_label_values(&[method, code_name(code)])
        .inc();
    metrics
        .request_seconds
        .with_label_values(&[method])
        .observe(started.elapsed().as_secs_f64());
}

/// Most scrapes served at once; more connections wait to be accepted.
const SCRAPES_MAX: usize = 8;

/// Answers `GET /metrics` on `listener` until `shutdown` resolves: the
/// gauges are read off `ledger` (and the size of `journal`, the journal
/// file) at each scrape. Every other path is 404.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    ledger: Arc<Ledger>,
    journal: std::path::PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let scrapes = Arc::new(tokio::sync::Semaphore::new(SCRAPES_MAX));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = scrapes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let ledger = ledger.clone();
        let journal = journal.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let ledger = ledger.clone();
                let journal = journal.clone();
                async move { Ok::<_, Infallible>(answer(&request, &ledger, &journal)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            // A scrape takes milliseconds: a connection held longer is cut.
            let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
        });
    }
}

fn answer<B>(
    request: &http::Request<B>,
    ledger: &Ledger,
    journal: &std::path::Path,
) -> http::Response<Full<Bytes>> {
    let reply = |status: http::StatusCode, text: String| {
        let mut response = http::Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            http::StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n".into(),
        );
    }
    if request.method() != http::Method::GET {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics only\n".into(),
        );
    }
    ledger.refresh_gauges();
    if let Ok(file) = std::fs::metadata(journal) {
        metrics()
            .journal_bytes
            .set(i64::try_from(file.len()).unwrap_or(i64::MAX));
    }
    reply(http::StatusCode::OK, metrics().render())
}
