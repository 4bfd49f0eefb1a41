//! Authentication and the RPC side of authorization: every call to a ledger
//! service passes [`Authenticate`] (a tower layer in front of the services)
//! before any handler sees it.
//!
//! [`RPCS`] maps every RPC to the [`Action`] it needs; with
//! [`Role::may`] (the role × action table in `domain::access`) it is the
//! role × RPC table the README shows and `tests/ledger/access_table.rs` runs cell
//! by cell. The layer finds the caller's principal from its credential
//! (bearer token, else TLS client certificate), refuses a caller whose roles
//! allow the RPC nowhere, and hands the principal to the handler, which
//! checks the branch: writes through the ledger (`execute` checks the
//! principal's roles against the entry's branch), reads against the branch
//! of what they read.
//!
//! Health checking and server reflection need no credential.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use crate::auth;
use crate::domain::access::{Access, Action, CredentialKind, Reach, Role};
use crate::domain::ids::{BranchId, PrincipalId};
use crate::ledger::Ledger;

/// One RPC and the action it needs.
#[derive(Clone, Copy, Debug)]
pub struct Rpc {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// What it does.
    pub action: Action,
}

macro_rules! rpcs {
    ($($service:literal => { $($method:literal: $action:ident),* $(,)? })*) => {
        &[$($(Rpc {
            path: concat!("/mfi.ledger.v1.", $service, "/", $method),
            action: Action::$action,
        },)*)*]
    };
}

/// Every RPC of the ledger's services and the action it needs: with
/// [`Role::may`], the role × RPC table.
pub const RPCS: &[Rpc] = rpcs! {
    "BranchService" => {
        "CreateBranch": Organize,
        "CreateCenter": Organize,
        "CreateGroup": Organize,
        "RegisterMember": Write,
        "OpenSavingsAccount": Write,
        "DepositSavings": Write,
        "WithdrawSavings": Write,
        "DisburseLoan": Write,
        "DisburseTranche": Write,
        "RecordRepayment": Write,
        "WriteOffLoan": Correct,
        "RecordCollectionSheet": Write,
        "ReverseEntry": Correct,
        "ClosePeriod": Close,
        "ReopenPeriod": Close,
        "PostSavingsInterest": Close,
        "FundBranch": Fund,
        "ReturnBranchFunding": Fund,
        "SubmitBatch": Write,
        "Approve": Approve,
        "Reject": Approve,
        "ListPendingRequests": ReadBranch,
    }
    "ProductService" => {
        "CreateProduct": Catalogue,
        "UpdateProduct": Catalogue,
        "GetProduct": ReadCatalogue,
        "ListProducts": ReadCatalogue,
        "PreviewSchedule": ReadCatalogue,
        "SetApprovalLimit": Catalogue,
        "DefineSavingsProduct": Catalogue,
        "ListSavingsProducts": ReadCatalogue,
    }
    "AuditService" => {
        "GetBalance": ReadBranch,
        "GetMember": ReadBranch,
        "GetLoan": ReadBranch,
        "GetBranchTotals": ReadBranch,
        "GetPayoffQuote": ReadBranch,
        "ListLoansInArrears": ReadBranch,
        "GetPortfolioQuality": ReadBranch,
        "ListJournalEntries": ReadJournal,
        "GetLedgerInfo": Identify,
        "ListAccessLog": ReadAccess,
    }
    "AccessService" => {
        "WhoAmI": Identify,
        "CreatePrincipal": Administer,
        "GrantRole": Administer,
        "RevokeRole": Administer,
        "IssueToken": Administer,
        "RegisterCertificate": Administer,
        "RevokeCredential": Administer,
        "ListPrincipals": ReadAccess,
    }
    "ProofService" => {
        "GetCheckpoint": ReadJournal,
        "CreateCheckpoint": ReadJournal,
        "GetInclusionProof": ReadJournal,
        "GetConsistencyProof": ReadJournal,
        "GetVerifierKey": Identify,
        "AddCosignature": ReadJournal,
    }
    "BooksService" => {
        "ListAccounts": ReadBranch,
        "GetTrialBalance": ReadBranch,
        "GetBalanceSheet": ReadBranch,
        "GetIncomeStatement": ReadBranch,
        "GetAccountStatement": ReadBranch,
        "ExportBooks": ReadBranch,
    }
    "OperationsService" => {
        "Backup": Administer,
    }
};

/// The action `path` needs, for an RPC of the ledger's services.
pub fn action_of(path: &str) -> Option<Action> {
    RPCS.iter()
        .find(|rpc| rpc.path == path)
        .map(|rpc| rpc.action)
}

/// Paths served without a credential: health checking and reflection.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// The authenticated caller, as the layer hands it to a handler.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The principal its credential belongs to.
    pub principal: PrincipalId,
    /// How it authenticated.
    pub credential: CredentialKind,
    /// Who may do what when the call arrived.
    pub access: Arc<Access>,
}

impl Caller {
    /// Refuses the call unless the caller may do `action` in `branch`.
    pub fn authorize(&self, action: Action, branch: Option<&BranchId>) -> Result<(), Status> {
        self.access
            .authorize(&self.principal, action, branch)
            .map_err(|e| super::status::from_domain(&e))
    }
}

/// The caller of `request` (set by [`Authenticate`]).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credential was checked for this call"))
}

/// What a read named (a member, loan, account, branch...), as the handler
/// tells the layer for the access log.
#[derive(Clone, Default)]
pub struct Subject(Arc<Mutex<String>>);

/// Notes what `request` reads, for the access log (e.g. `member:TB-0001`).
pub fn read_subject<T>(request: &tonic::Request<T>, subject: impl Into<String>) {
    if let Some(slot) = request.extensions().get::<Subject>() {
        *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = subject.into();
    }
}

/// True for the actions that only read: their calls go to the access log.
pub fn is_read(action: Action) -> bool {
    matches!(
        action,
        Action::ReadBranch
            | Action::ReadCatalogue
            | Action::ReadJournal
            | Action::ReadAccess
            | Action::Identify
    )
}

/// The principal who sent `request`.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<PrincipalId, Status> {
    caller(request).map(|caller| caller.principal)
}

/// Failed authentications per peer address: past
/// `FAILURES_FREE` in `FAILURE_WINDOW`, each refusal waits longer
/// (doubling, up to `FAILURE_DELAY_MAX`) before it is answered.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Failed authentications from one address answered at once.
const FAILURES_FREE: u32 = 5;
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Longest wait before a refusal is answered.
const FAILURE_DELAY_MAX: Duration = Duration::from_secs(5);
/// Most addresses remembered (a flood of addresses cannot grow it).
const THROTTLE_PEERS_MAX: usize = 10_000;

impl Throttle {
    /// Notes a failure from `peer`; the wait before answering it.
    fn failed(&self, peer: Option<IpAddr>) -> Duration {
        let Some(peer) = peer else {
            return Duration::ZERO;
        };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if failures.len() >= THROTTLE_PEERS_MAX {
            failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if failures.len() >= THROTTLE_PEERS_MAX {
                failures.clear();
            }
        }
        let (count, since) = failures.entry(peer).or_insert((0, now));
        if now.duration_since(*since) >= FAILURE_WINDOW {
            *count = 0;
            *since = now;
        }
        *count += 1;
        match count.checked_sub(FAILURES_FREE) {
            None | Some(0) => Duration::ZERO,
            Some(over) => {
                let millis = 100u64.saturating_mul(1 << over.min(16));
                Duration::from_millis(millis).min(FAILURE_DELAY_MAX)
            }
        }
    }

    /// Forgets `peer`'s failures after it authenticated.
    fn succeeded(&self, peer: Option<IpAddr>) {
        if let Some(peer) = peer {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if !failures.is_empty() {
                failures.remove(&peer);
            }
        }
    }
}

/// The tower layer that authenticates every call to the ledger's services.
#[derive(Clone)]
pub struct AuthenticateLayer {
    ledger: Arc<Ledger>,
    throttle: Arc<Throttle>,
}

impl AuthenticateLayer {
    /// Authenticates against the principals of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> AuthenticateLayer {
        AuthenticateLayer {
            ledger,
            throttle: Arc::new(Throttle::default()),
        }
    }
}

impl<S> tower::Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`AuthenticateLayer`].
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthenticateLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Authenticate<S>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if is_open(path) {
            return Box::pin(inner.call(request));
        }
        let peer = peer_address(&request);
        let method = path.trim_start_matches("/mfi.ledger.v1.").to_owned();
        // A backup copies every member's data: recorded like a read.
        let read = action_of(path).is_some_and(is_read)
            || path == "/mfi.ledger.v1.OperationsService/Backup";
        let ledger = self.layer.ledger.clone();
        match self.layer.check(&request, path) {
            Ok(caller) => {
                self.layer.throttle.succeeded(peer);
                let who = caller.principal.to_string();
                let call_note =
                    move || crate::metrics::note_call(|note| note.principal = Some(who));
                if !read {
                    // A write refused by the ledger for the principal's
                    // roles in the entry's branch is logged here, as the
                    // layer's own refusals are.
                    let principal = caller.principal.clone();
                    request.extensions_mut().insert(caller);
                    let call = inner.call(request);
                    return Box::pin(async move {
                        call_note();
                        let response = call.await?;
                        if grpc_code(&response) == tonic::Code::PermissionDenied {
                            tracing::info!(
                                rpc = method,
                                principal = %principal,
                                reason = grpc_message(&response),
                                "call refused: no role allows it in this branch"
                            );
                        }
                        Ok(response)
                    });
                }
                let subject = Subject::default();
                let principal = caller.principal.to_string();
                request.extensions_mut().insert(caller);
                request.extensions_mut().insert(subject.clone());
                Box::pin(async move {
                    call_note();
                    let response = inner.call(request).await?;
                    let outcome = grpc_code(&response);
                    let subject = subject.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    record_read(&ledger, principal, method, subject, outcome);
                    Ok(response)
                })
            }
            Err((refusal, who)) => {
                let delay = match refusal.code() {
                    tonic::Code::Unauthenticated => self.layer.throttle.failed(peer),
                    _ => Duration::ZERO,
                };
                if read {
                    let principal = who.map(|p| p.to_string()).unwrap_or_default();
                    record_read(&ledger, principal, method, String::new(), refusal.code());
                }
                Box::pin(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok(refusal.into_http())
                })
            }
        }
    }
}

impl AuthenticateLayer {
    /// The caller of `request`, or the refusal and, if it authenticated,
    /// who was refused (logged with who, what and why; never the credential).
    fn check(
        &self,
        request: &http::Request<Body>,
        path: &str,
    ) -> Result<Caller, (Status, Option<PrincipalId>)> {
        let peer = peer_address(request);
        let Some(action) = action_of(path) else {
            // Not an RPC of the ledger's services: tonic answers UNIMPLEMENTED.
            return Err((
                Status::unimplemented(format!("unknown method {path}")),
                None,
            ));
        };
        let access = self.ledger.access();
        let (kind, digest) = credential(request)
            .inspect_err(|why| {
                tracing::info!(rpc = path, peer = ?peer, reason = why.message(), "unauthenticated call refused");
            })
            .map_err(|status| (status, None))?;
        let principal = access
            .authenticate(kind, &digest, self.ledger.now().timestamp_micros())
            .map_err(|failure| {
                tracing::info!(rpc = path, peer = ?peer, reason = %failure, "unauthenticated call refused");
                let status = Status::unauthenticated(format!(
                    "the {} is not valid: unknown, expired or revoked",
                    match kind {
                        CredentialKind::Token => "token",
                        CredentialKind::Certificate => "client certificate",
                    }
                ));
                (status, None)
            })?;
        let principal = principal.id.clone();
        // Actions of the institution are checked in full here; those in a
        // branch need a role somewhere, and the handler checks the branch.
        let allowed = match action.reach() {
            Reach::Institution => access.authorize(&principal, action, None),
            Reach::Branch | Reach::Anywhere => access.authorize_somewhere(&principal, action),
        };
        if let Err(refused) = allowed {
            tracing::info!(
                rpc = path,
                principal = %principal,
                reason = %refused,
                "call refused: no role allows it"
            );
            return Err((super::status::from_domain(&refused), Some(principal)));
        }
        Ok(Caller {
            principal,
            credential: kind,
            access,
        })
    }
}

/// The status of a response: from its headers when the call failed at once
/// (trailers-only), otherwise OK (a unary reply's trailers come later).
fn grpc_code(response: &http::Response<Body>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|code| code.to_str().ok()?.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// The status message of a failed response (percent-encoded as sent).
fn grpc_message(response: &http::Response<Body>) -> String {
    response
        .headers()
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Records a read in the ledger's access log (when its store keeps one).
fn record_read(
    ledger: &Ledger,
    principal: String,
    method: String,
    subject: String,
    outcome: tonic::Code,
) {
    if let Some(log) = ledger.access_log() {
        log.record(crate::store::access_log::Access {
            at_micros: ledger.now().timestamp_micros(),
            principal,
            method,
            subject,
            outcome: format!("{outcome:?}"),
        });
    }
}

/// The credential a request carries: its bearer token, else the client
/// certificate its TLS connection presented.
fn credential(request: &http::Request<Body>) -> Result<(CredentialKind, [u8; 32]), Status> {
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|text| {
                // The scheme is case-insensitive (RFC 9110, 11.1).
                let (scheme, token) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .ok_or_else(|| Status::unauthenticated("authorization: expected \"Bearer <token>\""))?;
        let digest = auth::token_digest(token.trim()).ok_or_else(|| {
            Status::unauthenticated(format!(
                "authorization: not a token of this ledger (expected {}{}, 64 hex digits)",
                auth::TOKEN_PREFIX,
                "..."
            ))
        })?;
        return Ok((CredentialKind::Token, digest));
    }
    if let Some(der) = client_certificate(request) {
        return Ok((CredentialKind::Certificate, auth::certificate_digest(&der)));
    }
    Err(Status::unauthenticated(
        "no credential: send \"authorization: Bearer <token>\" or connect with a client certificate",
    ))
}

/// The DER bytes of the client's leaf certificate, on a TLS connection
/// where the client presented one.
fn client_certificate(request: &http::Request<Body>) -> Option<Vec<u8>> {
    let info = request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<TcpConnectInfo>>()?;
    let certificates = info.peer_certs()?;
    certificates.first().map(|der| der.as_ref().to_vec())
}

/// The peer's IP address.
fn peer_address(request: &http::Request<Body>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|address| address.ip())
}

/// The role × RPC table as Markdown rows (what the README shows).
pub fn table_markdown() -> String {
    let mut out = String::from("| RPC | needs |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for rpc in RPCS {
        let method = rpc.path.trim_start_matches("/mfi.ledger.v1.");
        out.push_str(&format!("| `{method}` | {} |", rpc.action.reach_name()));
        for role in Role::ALL {
            out.push_str(if role.may(rpc.action) { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The README's role × RPC table is this code's, row for row.
    #[test]
    fn the_readme_shows_the_role_by_rpc_table() {
        let readme = include_str!("../../README.md");
        let table = table_markdown();
        assert!(
            readme.contains(&table),
            "README.md's role x RPC table is out of date; it is:\n{table}"
        );
    }

    #[test]
    fn every_rpc_of_the_services_is_in_the_table_once() {
        let descriptors = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut served = Vec::new();
        for file in descriptors.file {
            for service in &file.service {
                for method in &service.method {
                    served.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        let mut listed: Vec<String> = RPCS.iter().map(|rpc| rpc.path.to_owned()).collect();
        served.sort();
        listed.sort();
        assert_eq!(listed, served);
    }
}
