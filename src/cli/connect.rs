//! Connecting to the ledger service and turning gRPC failures into the
//! errors a user reads: `<code>: <message>`, plus the request id for writes.

use std::time::Duration;

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::{Context, anyhow};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::auth;

use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::branch_service_client::BranchServiceClient;
use crate::pb::product_service_client::ProductServiceClient;

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A channel that sends the client's credential with every call.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call (when there is a token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// Sends `token`, or nothing.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        token
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| anyhow!("the token has characters a token never has"))
            })
            .transpose()
            .map(Bearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How the client proves who it is and checks the server: a bearer token,
/// and for `https://` servers the CA to trust and, for mutual TLS, a client
/// certificate. Set once per process by the binary ([`set_credentials`]).
#[derive(Clone, Default)]
pub struct Credentials {
    /// The bearer token.
    pub token: Option<String>,
    /// TLS: the CA that signed the server's certificate, and the client's
    /// certificate and key for mutual TLS.
    pub tls: Option<ClientTlsConfig>,
}

static CREDENTIALS: RwLock<Option<Credentials>> = RwLock::new(None);

/// Sets the credentials every later connection uses.
pub fn set_credentials(credentials: Credentials) {
    *CREDENTIALS.write().unwrap_or_else(|p| p.into_inner()) = Some(credentials);
}

fn credentials() -> Credentials {
    CREDENTIALS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

/// The token from `--token`, else the file `--token-file` names, else the
/// default token file (`$XDG_CONFIG_HOME/mfi-ledger/token` or
/// `~/.config/mfi-ledger/token`) if it exists.
pub fn resolve_token(
    token: Option<String>,
    token_file: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = token {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(path) = token_file {
        return auth::read_secret(path).map(Some);
    }
    match default_token_file() {
        Some(path) if path.exists() => auth::read_secret(&path).map(Some),
        _ => Ok(None),
    }
}

/// Where `principal-create --save-token` keeps a token for later commands.
pub fn default_token_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("mfi-ledger").join("token"))
}

/// Opens a channel to `server` ("http://host:port" or "https://host:port";
/// a bare "host:port" gets "http://"), sending the process's credentials.
pub async fn channel(server: &str) -> anyhow::Result<Conn> {
    let credentials = credentials();
    let bearer = Bearer::new(credentials.token.as_deref())?;
    let channel = endpoint(server, REQUEST_TIMEOUT)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to the ledger at {server}"))?;
    Ok(InterceptedService::new(channel, bearer))
}

/// A channel with the process's credentials over an open `channel`.
pub fn with_credentials(channel: Channel) -> anyhow::Result<Conn> {
    let bearer = Bearer::new(credentials().token.as_deref())?;
    Ok(InterceptedService::new(channel, bearer))
}

/// The endpoint of `server` ("http://host:port" or "https://host:port"; a
/// bare "host:port" gets "http://"), with a connect timeout, `timeout` per
/// call, TCP_NODELAY, and TLS for `https://`.
pub(crate) fn endpoint(server: &str, timeout: Duration) -> anyhow::Result<Endpoint> {
    let address = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    let mut endpoint = Endpoint::from_shared(address.clone())
        .with_context(|| format!("--server {server:?} is not a valid address"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true);
    let tls = credentials().tls;
    match (address.starts_with("https://"), tls) {
        (true, Some(tls)) => {
            endpoint = endpoint
                .tls_config(tls)
                .context("setting up TLS for the connection")?;
        }
        (true, None) => {
            return Err(anyhow!(
                "--server {server} is https: give the CA that signed its certificate with --ca FILE"
            ));
        }
        (false, Some(_)) => {
            return Err(anyhow!(
                "--ca and --cert are for https:// servers; --server {server} is not one"
            ));
        }
        (false, None) => {}
    }
    Ok(endpoint)
}

/// A client of the read service.
pub async fn audit(server: &str) -> anyhow::Result<AuditServiceClient<Conn>> {
    Ok(AuditServiceClient::new(channel(server).await?))
}

/// A client of the write service.
pub async fn branch(server: &str) -> anyhow::Result<BranchServiceClient<Conn>> {
    Ok(BranchServiceClient::new(channel(server).await?))
}

/// A client of the product catalogue.
pub async fn products(server: &str) -> anyhow::Result<ProductServiceClient<Conn>> {
    Ok(ProductServiceClient::new(channel(server).await?))
}

/// A refused or failed read: `<code>: <message>`.
pub fn read_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", status.code(), status.message())
}

/// A refused or failed write, with the request id it was sent under: when
/// the outcome may be unknown (the server unreachable, overloaded, too
/// slow), how to retry it safely; when the ledger refused it, that nothing
/// was written.
pub fn write_error(status: tonic::Status, request_id: &str) -> anyhow::Error {
    anyhow!(
        "{:?}: {}\nrequest id: {request_id} ({})",
        status.code(),
        status.message(),
        write_outcome(status.code(), request_id)
    )
}

/// What a client knows of a write that got `code` instead of a receipt.
fn write_outcome(code: tonic::Code, request_id: &str) -> String {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unknown
        | Code::Internal => format!(
            "retrying with --request-id {request_id} is safe: the ledger applies a request \
             id at most once"
        ),
        _ => "refused: nothing was written".to_owned(),
    }
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
    pub async fn client(&self) -> anyhow::Result<BranchServiceClient<Conn>> {
        branch(&self.server).await
    }

    /// A product catalogue client, for product definitions.
    pub async fn products(&self) -> anyhow::Result<ProductServiceClient<Conn>> {
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

#[cfg(test)]
mod tests {
    use super::write_outcome;
    use tonic::Code;

    #[test]
    fn only_a_write_of_unknown_outcome_is_told_to_retry() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            let advice = write_outcome(code, "r-1");
            assert!(
                advice.contains("--request-id r-1 is safe"),
                "{code:?}: {advice}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::PermissionDenied,
        ] {
            assert_eq!(write_outcome(code, "r-1"), "refused: nothing was written");
        }
    }
}
