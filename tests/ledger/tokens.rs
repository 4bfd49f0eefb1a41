//! Bearer tokens, end to end: a token issued with `IssueToken` works until it
//! expires or is revoked (and stops at once when revoked); malformed tokens,
//! another server's tokens and calls with no credential are refused without
//! echoing the credential and without changing the books; repeated failures
//! from one address are answered ever later; the token is never written to
//! the journal, the data directory or the log.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mfi_ledger::api::ServerLimits;
use mfi_ledger::ledger::{Clock, Ledger, LedgerConfig};
use mfi_ledger::pb;
use mfi_ledger::pb::access_service_client::AccessServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::support::{
    App, Conn, TESTER, TestClock, admin_token, books, connect, ctx, read_journal, serve_ledger,
    spawn_app, vnd,
};

/// Longest any one test here may take (the throttled refusals included).
const TEST_TIME_MAX: Duration = Duration::from_secs(60);

/// Runs a test body, failing it past [`TEST_TIME_MAX`].
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIME_MAX, test)
        .await
        .expect("the test took too long")
}

/// A server whose ledger runs on a clock the test moves.
async fn spawn_app_with_clock() -> (App, Arc<TestClock>) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::open_store(dir.path()).await;
    let clock = TestClock::new();
    let ledger = Ledger::start(store, clock.clone(), LedgerConfig::default()).unwrap();
    let app = serve_ledger(Arc::new(ledger), dir, ServerLimits::default()).await;
    (app, clock)
}

/// The access service as the first administrator of `app`.
async fn administrator(app: &App) -> AccessServiceClient<Conn> {
    AccessServiceClient::new(connect(app.address, &admin_token(app.dir.path())).await)
}

/// A new token for `principal`, valid for `days`, issued over gRPC.
async fn issue_token(
    admin: &mut AccessServiceClient<Conn>,
    request_id: &str,
    principal: &str,
    days: u32,
) -> pb::IssuedToken {
    admin
        .issue_token(pb::IssueTokenRequest {
            context: ctx(request_id),
            principal_id: principal.into(),
            valid_days: days,
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .expect("the issued token")
}

/// Revokes credential `id` as the administrator.
async fn revoke(admin: &mut AccessServiceClient<Conn>, request_id: &str, id: u64) {
    admin
        .revoke_credential(pb::RevokeCredentialRequest {
            context: ctx(request_id),
            credential_id: id,
        })
        .await
        .unwrap();
}

/// A connection to `address` that sends no credential of its own.
async fn bare_channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `message` with the `authorization` header set to `authorization` verbatim.
fn sending<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

/// WhoAmI on `channel`, sending `authorization` verbatim.
async fn who_am_i(
    channel: &Channel,
    authorization: Option<&str>,
) -> Result<pb::WhoAmIResponse, Status> {
    AccessServiceClient::new(channel.clone())
        .who_am_i(sending(pb::WhoAmIRequest {}, authorization))
        .await
        .map(tonic::Response::into_inner)
}

/// WhoAmI on a new connection to `address`, as the holder of `token`.
async fn who_am_i_with(address: SocketAddr, token: &str) -> Result<pb::WhoAmIResponse, Status> {
    who_am_i(
        &bare_channel(address).await,
        Some(&format!("Bearer {token}")),
    )
    .await
}

/// Asserts that `outcome` is UNAUTHENTICATED.
fn assert_unauthenticated<T: std::fmt::Debug>(outcome: Result<T, Status>) -> Status {
    let status = outcome.expect_err("the call was answered");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    status
}

#[tokio::test]
async fn an_issued_token_works_until_it_expires() {
    let (app, clock) = spawn_app_with_clock().await;
    let mut admin = administrator(&app).await;
    let issued = issue_token(&mut admin, "issue-1", TESTER, 1).await;

    let me = who_am_i_with(app.address, &issued.token).await.unwrap();
    assert_eq!(me.principal_id, TESTER);
    assert_eq!(me.credential, "token");

    let expires: DateTime<Utc> = issued.expires_at.parse().unwrap();
    assert_eq!(expires, clock.now() + chrono::Duration::days(1));
    clock.set(expires - chrono::Duration::seconds(1));
    who_am_i_with(app.address, &issued.token).await.unwrap();

    clock.set(expires);
    let refused = assert_unauthenticated(who_am_i_with(app.address, &issued.token).await);
    assert!(!refused.message().contains(&issued.token), "{refused:?}");
    clock.set(expires + chrono::Duration::days(30));
    assert_unauthenticated(who_am_i_with(app.address, &issued.token).await);
    // The principal's other, longer token still works.
    who_am_i_with(app.address, &app.token).await.unwrap();
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let mut admin = administrator(&app).await;
    let issued = issue_token(&mut admin, "issue-1", TESTER, 30).await;
    let channel = bare_channel(app.address).await;
    let bearer = format!("Bearer {}", issued.token);
    who_am_i(&channel, Some(&bearer)).await.unwrap();

    revoke(&mut admin, "revoke-1", issued.credential_id).await;

    // The very next call, on the connection that was authenticated before.
    assert_unauthenticated(who_am_i(&channel, Some(&bearer)).await);
    assert_unauthenticated(who_am_i_with(app.address, &issued.token).await);
    // The principal's other token is untouched.
    who_am_i_with(app.address, &app.token).await.unwrap();
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_echoing_them() {
    let app = spawn_app().await;
    let channel = bare_channel(app.address).await;
    let hex63 = "0123456789abcdef".repeat(4)[..63].to_owned();
    let cases = [
        ("Bearer ", "abc".to_owned()),
        ("Bearer ", format!("mfi_{hex63}")),
        ("Bearer ", format!("mfi_{hex63}00")),
        ("Bearer ", format!("mfi_{}", "g".repeat(64))),
        ("Basic ", app.token.clone()),
        ("Token ", app.token.clone()),
    ];
    for (scheme, secret) in cases {
        let refused =
            assert_unauthenticated(who_am_i(&channel, Some(&format!("{scheme}{secret}"))).await);
        assert!(
            !refused.message().contains(&secret),
            "{scheme}{secret}: the refusal echoes it: {:?}",
            refused.message()
        );
        // Authenticating once forgets the failures (see the throttle's test).
        who_am_i(&channel, Some(&format!("Bearer {}", app.token)))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_token_of_another_server_is_refused() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    // A principal of the same name on the other server, with a fresh token.
    let issued = issue_token(&mut administrator(&other).await, "issue-1", TESTER, 30).await;
    who_am_i_with(other.address, &issued.token).await.unwrap();

    assert_unauthenticated(who_am_i_with(app.address, &issued.token).await);
    assert_unauthenticated(who_am_i_with(app.address, &other.token).await);
    assert_unauthenticated(who_am_i_with(app.address, &admin_token(other.dir.path())).await);
}

#[tokio::test]
async fn a_call_without_a_credential_is_refused() {
    let app = spawn_app().await;
    let channel = bare_channel(app.address).await;
    assert_unauthenticated(who_am_i(&channel, None).await);
    let mut audit = pb::audit_service_client::AuditServiceClient::new(channel.clone());
    assert_unauthenticated(audit.get_ledger_info(pb::GetLedgerInfoRequest {}).await);
    let journal = pb::ListJournalEntriesRequest {
        from_sequence: 1,
        page_size: 10,
    };
    assert_unauthenticated(audit.list_journal_entries(journal).await);
}

#[tokio::test]
async fn refused_credentials_change_nothing() {
    let (mut app, clock) = spawn_app_with_clock().await;
    app.branch_tb().await;
    let account = app.member("TB-0001").await;
    let mut admin = administrator(&app).await;
    let revoked = issue_token(&mut admin, "issue-revoked", TESTER, 30).await;
    revoke(&mut admin, "revoke", revoked.credential_id).await;
    let expired = issue_token(&mut admin, "issue-expired", TESTER, 1).await;
    clock.set(expired.expires_at.parse::<DateTime<Utc>>().unwrap());
    let other = spawn_app().await;
    let balances = [format!("savings:{account}"), "cash:TB".to_owned()];
    let balances = balances.each_ref().map(String::as_str);
    let before = books(&mut app, &balances).await;

    let channel = bare_channel(app.address).await;
    for authorization in [
        None,
        Some(format!("Bearer {}", revoked.token)),
        Some(format!("Bearer {}", expired.token)),
        Some(format!("Bearer {}", other.token)),
        Some("Bearer abc".to_owned()),
    ] {
        let deposit = pb::DepositSavingsRequest {
            context: ctx("dep-refused"),
            account_id: account.clone(),
            amount: vnd("50000"),
            effective_date: "2024-06-30".into(),
        };
        let outcome = BranchServiceClient::new(channel.clone())
            .deposit_savings(sending(deposit, authorization.as_deref()))
            .await;
        assert_unauthenticated(outcome);
    }

    assert_eq!(books(&mut app, &balances).await, before);
    // The request id was not used up: the tester's deposit with it is new.
    let receipt = app
        .deposit("dep-refused", &account, "50000", "2024-06-30")
        .await
        .unwrap()
        .receipt
        .unwrap();
    assert_eq!(receipt.sequence, before.head.last_sequence + 1);
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_answered_ever_later() {
    bounded(async {
        let app = spawn_app().await;
        let channel = bare_channel(app.address).await;
        // Well formed, so only the lookup refuses it.
        let unknown = format!("Bearer mfi_{}", "ab".repeat(32));
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            assert_unauthenticated(who_am_i(&channel, Some(&unknown)).await);
            waits.push(started.elapsed());
        }
        // Five failures are free; the 6th, 7th and 8th wait 200, 400, 800 ms.
        assert!(
            waits[7] >= Duration::from_millis(100),
            "the 8th refusal was answered after {:?} (all: {waits:?})",
            waits[7]
        );
        // Refusals are still refusals, and a valid token is still served.
        who_am_i(&channel, Some(&format!("Bearer {}", app.token)))
            .await
            .unwrap();
    })
    .await;
}

/// What the subscriber installed by [`capture_logs`] wrote.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures what this thread logs at info and above (the server's calls run
/// on the test's thread: `#[tokio::test]` is a current-thread runtime).
fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Every file under `dir` but the token files the tests keep there.
fn data_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(data_files(&path));
        } else if path.extension().is_none_or(|ext| ext != "token") {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_token_is_never_written_to_the_journal_the_store_or_the_log() {
    let (logs, _guard) = capture_logs();
    let mut app = spawn_app().await;
    let mut admin = administrator(&app).await;
    let issued = issue_token(&mut admin, "issue-1", TESTER, 30).await;
    let token = issued.token.clone();
    who_am_i_with(app.address, &token).await.unwrap();
    // A call its principal may not make, a malformed copy, then revoked.
    let mut as_tester = AccessServiceClient::new(connect(app.address, &token).await);
    let denied = as_tester
        .issue_token(pb::IssueTokenRequest {
            context: ctx("issue-2"),
            principal_id: TESTER.into(),
            valid_days: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_unauthenticated(who_am_i_with(app.address, &format!("{token}0")).await);
    revoke(&mut admin, "revoke-1", issued.credential_id).await;
    assert_unauthenticated(who_am_i_with(app.address, &token).await);

    let hex_part = token.strip_prefix("mfi_").unwrap();
    for entry in read_journal(&mut app.audit, 100).await {
        let text = format!("{entry:?}");
        assert!(!text.contains(hex_part), "entry {}: {text}", entry.sequence);
    }
    let dir = app.stop().await;
    for file in data_files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(hex_part.len())
                .any(|window| window == hex_part.as_bytes()),
            "{} holds the token",
            file.display()
        );
    }
    let logged = logs.text();
    assert!(
        logged.contains("unauthenticated call refused") && logged.contains("no role allows it"),
        "the log was not captured: {logged}"
    );
    assert!(
        !logged.contains(hex_part),
        "the log holds the token: {logged}"
    );
}
