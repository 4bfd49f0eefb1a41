//! The gRPC boundary: the only module that knows tonic and the protobuf
//! types. It parses requests into domain commands, submits them to the
//! ledger, and turns results and errors into replies and statuses.
//!
//! Architecture invariant: handlers never decide money rules and never touch
//! storage directly; a request that fails to parse reaches no ledger code.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::ledger::Ledger;
use crate::pb;

pub mod access;
mod approvals;
mod audit;
mod books;
mod branch;
mod connections;
pub mod convert;
pub mod echo;
pub mod metrics_http;
mod operations;
pub mod pages;
mod principals;
mod products;
pub mod proofs;
pub mod status;
pub mod tls;

pub use audit::{AuditApi, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
pub use branch::{BATCH_COMMANDS_MAX, BranchApi};
pub use principals::AccessApi;
pub use products::ProductApi;

/// Limits of the gRPC server.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Largest request message accepted, in bytes.
    pub message_size_max: usize,
    /// Most requests served at once on one connection.
    pub requests_per_connection_max: usize,
    /// Most connections open at once from one IP address; a connection past
    /// it is closed as soon as it is accepted (the client sees UNAVAILABLE).
    pub connections_per_peer_max: usize,
    /// Most connections open at once in all (many addresses, or clients
    /// behind one proxy, cannot exhaust the process's file descriptors).
    pub connections_max: usize,
    /// Longest time the server spends on one request (or less, when the
    /// client's `grpc-timeout` asks for less). Past it the client gets
    /// CANCELLED "Timeout expired". A write already handed to the ledger
    /// is still decided and, if accepted, made durable: a client that timed
    /// out does not know whether its write was made, and sends it again
    /// with the same request id, which returns the original result (the
    /// ledger applies a request id once). A timeout never loses or doubles
    /// an acknowledged write.
    pub request_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            message_size_max: 1 << 20,
            requests_per_connection_max: 256,
            connections_per_peer_max: 256,
            connections_max: 4096,
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// How often the health service looks whether the ledger stopped writing.
const HEALTH_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepted connections with TCP_NODELAY: small replies go out at once
/// instead of waiting for the client's delayed ACK (seen as 40 ms stalls).
pub(crate) fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Says to health checks whether the services that write, and the server
/// as a whole (""), are serving.
async fn set_writes_serving(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    let status = match serving {
        true => tonic_health::ServingStatus::Serving,
        false => tonic_health::ServingStatus::NotServing,
    };
    reporter
        .set_service_status(
            <pb::branch_service_server::BranchServiceServer<BranchApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter
        .set_service_status(
            <pb::product_service_server::ProductServiceServer<ProductApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter.set_service_status("", status).await;
}

/// Serves the ledger on `listener` until `shutdown` resolves; then drains
/// and returns: stops accepting connections and calls (HTTP/2 GOAWAY: the
/// calls a client sent after it are refused unprocessed, UNAVAILABLE, safe
/// to retry anywhere), lets every call already received finish and its
/// reply reach the client, closes each connection once the client has read
/// everything (see `connections`), and returns when all are closed. The
/// ledger is still running all along, so every command already submitted is
/// answered; stop it after this returns.
///
/// With `tls` (see [`tls::server_config`]) every connection is TLS; a
/// failed handshake closes the connection (tonic logs it at debug level).
pub async fn serve(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    limits: ServerLimits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::audit_service_server::AuditServiceServer<AuditApi>>()
        .await;
    set_writes_serving(&health_reporter, ledger.can_write()).await;
    let stopping = health_reporter.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("stopping: no new calls; answering the calls already received");
        stopping
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    // After a storage fault the ledger refuses writes, and a standby refuses
    // them until it takes over: every service that writes, and the server as
    // a whole (""), say so to health checks. AuditService stays SERVING:
    // reads go on.
    let watched = ledger.clone();
    let watcher = tokio::spawn(async move {
        let mut serving = watched.can_write();
        while !watched.has_failed() {
            tokio::time::sleep(HEALTH_POLL_INTERVAL).await;
            if watched.can_write() != serving {
                serving = !serving;
                set_writes_serving(&health_reporter, serving).await;
            }
        }
        set_writes_serving(&health_reporter, false).await;
    });
    // Reflection in both versions: older grpcurl, Postman and Evans speak
    // v1alpha only.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;
    let branch =
        pb::branch_service_server::BranchServiceServer::new(BranchApi::new(ledger.clone()))
            .max_decoding_message_size(limits.message_size_max);
    let products =
        pb::product_service_server::ProductServiceServer::new(ProductApi::new(ledger.clone()))
            .max_decoding_message_size(limits.message_size_max);
    let audit = pb::audit_service_server::AuditServiceServer::new(AuditApi::new(ledger.clone()))
        .max_decoding_message_size(limits.message_size_max)
        .max_encoding_message_size(64 << 20);
    let access_service =
        pb::access_service_server::AccessServiceServer::new(AccessApi::new(ledger.clone()))
            .max_decoding_message_size(limits.message_size_max);
    let proofs =
        pb::proof_service_server::ProofServiceServer::new(proofs::ProofApi::new(ledger.clone()))
            .max_decoding_message_size(limits.message_size_max);
    let books =
        pb::books_service_server::BooksServiceServer::new(books::BooksApi::new(ledger.clone()))
            .max_decoding_message_size(limits.message_size_max)
            .max_encoding_message_size(64 << 20);
    let operations = pb::operations_service_server::OperationsServiceServer::new(
        operations::OperationsApi::new(ledger.clone()),
    )
    .max_decoding_message_size(limits.message_size_max)
    .max_encoding_message_size(2 * operations::BACKUP_CHUNK_BYTES);
    let incoming = connections::PeerLimitedIncoming::new(
        incoming(listener),
        limits.connections_per_peer_max,
        limits.connections_max,
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .timeout(limits.request_timeout)
        .concurrency_limit_per_connection(limits.requests_per_connection_max)
        .layer(metrics_http::RequestMetricsLayer)
        .layer(access::AuthenticateLayer::new(ledger))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(branch)
        .add_service(audit)
        .add_service(products)
        .add_service(access_service)
        .add_service(proofs)
        .add_service(books)
        .add_service(operations)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    watcher.abort();
    Ok(())
}
