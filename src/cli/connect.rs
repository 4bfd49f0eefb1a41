//! Connecting to the ledger service and turning gRPC failures into the
//! errors a user reads: `<code>: <message>`, plus the request id for writes.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tonic::transport::{Channel, Endpoint};

use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::branch_service_client::BranchServiceClient;
use crate::pb::product_service_client::ProductServiceClient;

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens a channel to `server` ("http://host:port"; a bare "host:port" gets
/// "http://").
pub async fn channel(server: &str) -> anyhow::Result<Channel> {
    endpoint(server, REQUEST_TIMEOUT)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to the ledger at {server}"))
}

/// The endpoint of `server` ("http://host:port"; a bare "host:port" gets
/// "http://"), with a connect timeout, `timeout` per call, and TCP_NODELAY.
pub(crate) fn endpoint(server: &str, timeout: Duration) -> anyhow::Result<Endpoint> {
    let address = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    Ok(Endpoint::from_shared(address)
        .with_context(|| format!("--server {server:?} is not a valid address"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true))
}

/// A client of the read service.
pub async fn audit(server: &str) -> anyhow::Result<AuditServiceClient<Channel>> {
    Ok(AuditServiceClient::new(channel(server).await?))
}

/// A client of the write service.
pub async fn branch(server: &str) -> anyhow::Result<BranchServiceClient<Channel>> {
    Ok(BranchServiceClient::new(channel(server).await?))
}

/// A client of the product catalogue.
pub async fn products(server: &str) -> anyhow::Result<ProductServiceClient<Channel>> {
    Ok(ProductServiceClient::new(channel(server).await?))
}

/// A refused or failed read: `<code>: <message>`.
pub fn read_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
}

/// A refused or failed write, with the request id it was sent under and how
/// to retry it safely.
pub fn write_error(status: tonic::Status, request_id: &str) -> anyhow::Error {
    anyhow!(
        "{:?}: {}\nrequest id: {request_id} (retrying with --request-id {request_id} is safe: \
         the ledger applies a request id at most once)",
        status.code(),
        status.message()
    )
}

/// Who writes and under which request id.
#[derive(Clone, Debug)]
pub struct WriteSession {
    /// Address of the server.
    pub server: String,
    /// The write's request id.
    pub request_id: String,
    /// The clerk's user name.
    pub actor: String,
}

impl WriteSession {
    /// The context every write request carries.
    pub fn context(&self) -> Option<pb::WriteContext> {
        Some(pb::WriteContext {
            request_id: self.request_id.clone(),
            actor: self.actor.clone(),
        })
    }

    /// A write client.
    pub async fn client(&self) -> anyhow::Result<BranchServiceClient<Channel>> {
        branch(&self.server).await
    }

    /// A product catalogue client, for product definitions.
    pub async fn products(&self) -> anyhow::Result<ProductServiceClient<Channel>> {
        products(&self.server).await
    }

    /// The error for a failed write.
    pub fn error(&self, status: tonic::Status) -> anyhow::Error {
        write_error(status, &self.request_id)
    }

    /// The receipt of an answer, or an error if the server sent none.
    pub fn receipt(&self, receipt: Option<pb::EntryReceipt>) -> anyhow::Result<pb::EntryReceipt> {
        receipt.ok_or_else(|| {
            anyhow!(
                "the server accepted the write but sent no receipt\nrequest id: {}",
                self.request_id
            )
        })
    }
}
