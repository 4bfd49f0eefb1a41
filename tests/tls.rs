//! TLS and mutual TLS over real gRPC on 127.0.0.1, with certificates made
//! inside each test (rcgen): what a client trusting the right CA, the wrong
//! CA, or no TLS at all sees; which client certificates the server refuses;
//! and the binary's refusal to listen in clear text on an address other
//! hosts can reach.
//!
//! With TLS 1.3 the client finishes its side of the handshake before the
//! server checks the client's certificate, so a refused client certificate
//! may show on the first call rather than on connect: "refused" means the
//! connection or the first call failed before reaching the application.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::certs::{CLIENT_WAIT_MAX, Ca, Files, Leaf, TlsServer, Validity, bounded, connect};
use mfi_ledger::api;
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use tempfile::TempDir;
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// What a client saw of `AuditService/GetLedgerInfo`: a failed connection,
/// or the call's outcome.
type Outcome = Result<Result<pb::GetLedgerInfoResponse, Status>, tonic::transport::Error>;

/// Connects to `address` over TLS (`https://`), or in clear text
/// (`http://`) when `tls` is `None`, and asks for the ledger's info.
async fn get_ledger_info(address: SocketAddr, tls: Option<ClientTlsConfig>) -> Outcome {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .unwrap()
        .connect_timeout(CLIENT_WAIT_MAX)
        .timeout(CLIENT_WAIT_MAX);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel: Channel = endpoint.connect().await?;
    Ok(AuditServiceClient::new(channel)
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map(tonic::Response::into_inner))
}

/// The call reached the application: answered, or refused for want of
/// credentials (authentication refuses calls without a token), never a
/// transport failure.
fn assert_reached_the_application(outcome: Outcome) {
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(status)) if status.code() == Code::Unauthenticated => {}
        Ok(Err(status)) => panic!("the call failed: {status:?}"),
        Err(error) => panic!("could not connect: {error:?}"),
    }
}

/// The connection, or the first call on it, failed in the transport (TLS,
/// HTTP/2) before reaching the application. Which status a failed first
/// call gets depends on when the client learns the server refused it
/// (UNAVAILABLE, UNKNOWN, CANCELLED "connection closed", INTERNAL "h2
/// protocol error"); what they share is a transport error as their source.
fn assert_refused(outcome: Outcome) {
    match outcome {
        Err(_) => {}
        Ok(Err(status)) => {
            let source = std::error::Error::source(&status);
            assert!(
                source.is_some_and(|source| source.is::<tonic::transport::Error>()),
                "expected a transport failure, got {status:?}"
            );
        }
        Ok(Ok(info)) => panic!("the call was answered: {info:?}"),
    }
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_others_are_refused() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let server =
            TlsServer::start(files.server_config(&ca.server(Validity::Current), None)).await;

        let trusting = files.client_config(&ca, None);
        assert_reached_the_application(get_ledger_info(server.address, Some(trusting)).await);

        let other_ca = Ca::new("another ca");
        let mistrusting = files.client_config(&other_ca, None);
        let outcome = get_ledger_info(server.address, Some(mistrusting)).await;
        assert!(
            outcome.is_err(),
            "connected trusting another CA: {outcome:?}"
        );

        assert_refused(get_ledger_info(server.address, None).await);

        // The server still serves after refusing those connections.
        let trusting = files.client_config(&ca, None);
        assert_reached_the_application(get_ledger_info(server.address, Some(trusting)).await);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_the_client() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let server =
            TlsServer::start(files.server_config(&ca.server(Validity::Expired), None)).await;
        let outcome = get_ledger_info(server.address, Some(files.client_config(&ca, None))).await;
        assert!(
            outcome.is_err(),
            "connected to an expired server certificate: {outcome:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_a_client_ca_only_its_current_client_certificates_are_accepted() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let tls = files.server_config(&ca.server(Validity::Current), Some(&client_ca));
        let server = TlsServer::start(tls).await;
        let call = |certificate: Option<Leaf>| {
            let config = files.client_config(&ca, certificate.as_ref());
            get_ledger_info(server.address, Some(config))
        };

        let teller = client_ca.client("teller", Validity::Current);
        assert_reached_the_application(call(Some(teller)).await);
        // Optional: a client without a certificate authenticates otherwise.
        assert_reached_the_application(call(None).await);

        let stranger = Ca::new("another ca").client("teller", Validity::Current);
        assert_refused(call(Some(stranger)).await);
        let expired = client_ca.client("teller", Validity::Expired);
        assert_refused(call(Some(expired)).await);
        // A certificate meant for a server is not a client's.
        let server_certificate = client_ca.server(Validity::Current);
        assert_refused(call(Some(server_certificate)).await);

        assert_reached_the_application(call(None).await);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_sees_the_fingerprint_of_the_client_certificate() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let tls = files.server_config(&ca.server(Validity::Current), Some(&client_ca));
        // A server whose every call records the fingerprint it was made with.
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let recorder = seen.clone();
        let record = move |request: tonic::Request<()>| {
            let fingerprint = api::tls::peer_certificate_fingerprint(&request);
            recorder.lock().unwrap().push(fingerprint);
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls)
                .unwrap()
                .layer(tonic::service::InterceptorLayer::new(record))
                .add_service(health)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        let check = |certificate: Option<&Leaf>| {
            let config = files.client_config(&ca, certificate);
            async move {
                let channel = connect(address, config).await;
                tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .unwrap();
            }
        };

        let teller = client_ca.client("teller", Validity::Current);
        check(Some(&teller)).await;
        check(None).await;

        let expected = teller.fingerprint();
        assert_eq!(*seen.lock().unwrap(), vec![Some(expected), None]);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    })
    .await;
}

/// The real binary's `serve`, with no TLS or listening settings from the
/// environment, its data directory under `dir`.
fn serve_command(dir: &TempDir, listen: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(common::BIN);
    command
        .args(["serve", "--init", "--listen", listen, "--data"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for name in [
        "MFI_LEDGER_LISTEN",
        "MFI_LEDGER_TLS_CERT",
        "MFI_LEDGER_TLS_KEY",
        "MFI_LEDGER_TLS_CLIENT_CA",
        "MFI_LEDGER_ALLOW_INSECURE_LISTEN",
    ] {
        command.env_remove(name);
    }
    command
}

/// Runs a `serve` that must refuse to start; gives its standard error.
async fn refused_to_start(mut command: tokio::process::Command, dir: &TempDir) -> String {
    let output = tokio::time::timeout(CLIENT_WAIT_MAX, command.output())
        .await
        .expect("the server did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "started: {stderr}");
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    assert!(
        !dir.path().join("data").exists(),
        "created its data directory"
    );
    stderr
}

/// Starts a `serve` that must start; gives the process and the address it
/// listens on.
async fn started(mut command: tokio::process::Command) -> (tokio::process::Child, String) {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        CLIENT_WAIT_MAX,
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("the server did not start")
    .unwrap();
    let address = line
        .trim()
        .strip_prefix("mfi-ledger listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (child, address)
}

#[tokio::test]
async fn the_binary_listens_in_clear_text_beyond_loopback_only_when_told() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let stderr = refused_to_start(serve_command(&dir, "0.0.0.0:0"), &dir).await;
        assert!(
            stderr.contains("refusing to listen on 0.0.0.0:0 without TLS"),
            "{stderr}"
        );
        assert!(stderr.contains("--allow-insecure-listen"), "{stderr}");
        assert!(stderr.contains("--tls-cert"), "{stderr}");

        let mut told = serve_command(&dir, "0.0.0.0:0");
        told.arg("--allow-insecure-listen");
        let (mut child, address) = started(told).await;
        assert!(address.starts_with("0.0.0.0:"), "{address}");
        child.kill().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut told = serve_command(&dir, "0.0.0.0:0");
        told.env("MFI_LEDGER_ALLOW_INSECURE_LISTEN", "1");
        let (mut child, _) = started(told).await;
        child.kill().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_binary_refuses_half_a_tls_configuration() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let (certificate, key) = files.leaf("server", &ca.server(Validity::Current));
        let client_ca = files.ca("client-ca", &ca);
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                vec!["--tls-cert", certificate.to_str().unwrap()],
                "--tls-cert needs --tls-key",
            ),
            (
                vec!["--tls-key", key.to_str().unwrap()],
                "--tls-key needs --tls-cert",
            ),
            (
                vec!["--tls-client-ca", client_ca.to_str().unwrap()],
                "--tls-client-ca needs --tls-cert",
            ),
            (
                vec![
                    "--tls-cert",
                    key.to_str().unwrap(),
                    "--tls-key",
                    key.to_str().unwrap(),
                ],
                "holds no certificate",
            ),
        ];
        for (arguments, expected) in cases {
            let mut command = serve_command(&dir, "127.0.0.1:0");
            command.args(&arguments);
            let stderr = refused_to_start(command, &dir).await;
            assert!(stderr.contains(expected), "{arguments:?}: {stderr}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_binary_serves_over_tls_with_client_certificates() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let (certificate, key) = files.leaf("server", &ca.server(Validity::Current));
        let client_ca_path = files.ca("client-ca", &client_ca);
        let dir = tempfile::tempdir().unwrap();
        let mut command = serve_command(&dir, "127.0.0.1:0");
        command
            .arg("--tls-cert")
            .arg(&certificate)
            .arg("--tls-key")
            .arg(&key)
            .arg("--tls-client-ca")
            .arg(&client_ca_path);
        let (mut child, address) = started(command).await;
        let address: SocketAddr = address.parse().unwrap();

        let teller = client_ca.client("teller", Validity::Current);
        let config = files.client_config(&ca, Some(&teller));
        assert_reached_the_application(get_ledger_info(address, Some(config)).await);
        let expired = client_ca.client("teller", Validity::Expired);
        let config = files.client_config(&ca, Some(&expired));
        assert_refused(get_ledger_info(address, Some(config)).await);
        assert_refused(get_ledger_info(address, None).await);
        child.kill().await.unwrap();
    })
    .await;
}
