//! Client certificates as credentials, over real mutual TLS on 127.0.0.1
//! with certificates made inside each test (rcgen): a certificate registered
//! for a principal (`RegisterCertificate`) authenticates as that principal
//! with no token, until `RevokeCredential`; a certificate the client CA
//! signed but no principal holds reaches the application and is refused
//! there (UNAUTHENTICATED).
//!
//! The CA, leaf and server helpers are the small parts of `tests/tls.rs`
//! these tests need.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mfi_ledger::api::{self, ServerLimits};
use mfi_ledger::cli::connect::{Bearer, Conn};
use mfi_ledger::ledger::{Ledger, LedgerConfig, SystemClock};
use mfi_ledger::pb;
use mfi_ledger::pb::access_service_client::AccessServiceClient;
use mfi_ledger::store::DiskStore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Code, Status};

/// Longest any one test may take.
const TEST_TIME_MAX: Duration = Duration::from_secs(60);

/// Longest a client waits to connect, or for a reply.
const CLIENT_WAIT_MAX: Duration = Duration::from_secs(5);

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Ca {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The server's certificate: for 127.0.0.1 and localhost.
    fn server(&self) -> Leaf {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        self.issue("mfi-ledger", names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client's certificate.
    fn client(&self, name: &str) -> Leaf {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: Vec<String>, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
        }
    }
}

/// A certificate and its key.
struct Leaf {
    pem: String,
    key_pem: String,
    der: Vec<u8>,
}

/// The PEM files of one test.
struct Files(TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The certificate's and the key's files.
    fn leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.pem"), &leaf.pem),
            self.write(&format!("{name}.key"), &leaf.key_pem),
        )
    }

    /// The server's TLS configuration, verifying client certificates
    /// against `client_ca`.
    fn server_config(&self, server: &Leaf, client_ca: &Ca) -> ServerTlsConfig {
        let (certificate, key) = self.leaf("server", server);
        let client_ca = self.write("client-ca.pem", &client_ca.pem);
        api::tls::server_config(&certificate, &key, Some(&client_ca)).unwrap()
    }

    /// A client trusting `ca`, presenting `certificate` if given.
    fn client_config(&self, ca: &Ca, certificate: Option<&Leaf>) -> ClientTlsConfig {
        let ca = self.write("trusted-ca.pem", &ca.pem);
        let certificate = certificate.map(|leaf| self.leaf("client", leaf));
        let certificate = certificate
            .as_ref()
            .map(|(certificate, key)| (certificate.as_path(), key.as_path()));
        api::tls::client_config(&ca, certificate).unwrap()
    }
}

/// A ledger with its first administrator (created in process, as `serve`
/// does), served by `api::serve` over mutual TLS on 127.0.0.1, port 0.
struct MtlsServer {
    address: SocketAddr,
    /// The first administrator's token.
    admin_token: String,
    ledger: Arc<Ledger>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    _data: TempDir,
}

impl MtlsServer {
    async fn start(tls: ServerTlsConfig) -> MtlsServer {
        let data = tempfile::tempdir().unwrap();
        let store = DiskStore::open(data.path()).unwrap();
        let ledger = tokio::task::spawn_blocking(move || {
            Ledger::start(
                Arc::new(store),
                Arc::new(SystemClock),
                LedgerConfig::default(),
            )
        })
        .await
        .unwrap()
        .unwrap();
        let ledger = Arc::new(ledger);
        let token_file = mfi_ledger::auth::bootstrap(&ledger, data.path())
            .await
            .unwrap()
            .expect("a new ledger gets its first administrator");
        let admin_token = mfi_ledger::auth::read_secret(&token_file).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = ledger.clone();
        let server = tokio::spawn(async move {
            api::serve(
                listener,
                served,
                ServerLimits::default(),
                Some(tls),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        MtlsServer {
            address,
            admin_token,
            ledger,
            stop,
            server,
            _data: data,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
        let ledger = self.ledger;
        tokio::task::spawn_blocking(move || ledger.shutdown())
            .await
            .unwrap();
    }
}

/// A TLS connection to `address` with `tls`.
async fn connect(address: SocketAddr, tls: ClientTlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .connect_timeout(CLIENT_WAIT_MAX)
        .timeout(CLIENT_WAIT_MAX)
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The access service over `channel`, sending `token` with every call.
fn with_token(channel: Channel, token: &str) -> AccessServiceClient<Conn> {
    AccessServiceClient::new(InterceptedService::new(
        channel,
        Bearer::new(Some(token)).unwrap(),
    ))
}

/// WhoAmI over `channel`, which sends no token: the client certificate of
/// its connection, if any, is the only credential.
async fn who_am_i(channel: &Channel) -> Result<pb::WhoAmIResponse, Status> {
    AccessServiceClient::new(channel.clone())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts the call reached the application and was refused there for its
/// credential (not a transport failure).
fn assert_unauthenticated<T: std::fmt::Debug>(outcome: Result<T, Status>) {
    let status = outcome.expect_err("the call was answered");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

/// Creates principal `id`, a clerk of the institution, with no token.
async fn create_clerk(admin: &mut AccessServiceClient<Conn>, id: &str) {
    admin
        .create_principal(pb::CreatePrincipalRequest {
            context: context(&format!("create-{id}")),
            principal_id: id.into(),
            name: id.into(),
            roles: vec![pb::RoleGrant {
                role: "clerk".into(),
                branch_id: String::new(),
            }],
            issue_token: false,
            token_valid_days: 0,
        })
        .await
        .unwrap();
}

fn context(request_id: &str) -> Option<pb::WriteContext> {
    Some(pb::WriteContext {
        request_id: request_id.into(),
        actor: "administrator".into(),
    })
}

/// Runs a test body, failing it past [`TEST_TIME_MAX`].
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIME_MAX, test)
        .await
        .expect("the test took too long");
}

#[tokio::test]
async fn a_registered_client_certificate_authenticates_its_principal_until_revoked() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let server = MtlsServer::start(files.server_config(&ca.server(), &client_ca)).await;
        let admin_channel = connect(server.address, files.client_config(&ca, None)).await;
        let mut admin = with_token(admin_channel, &server.admin_token);
        create_clerk(&mut admin, "teller").await;
        let teller = client_ca.client("teller");
        let registered = admin
            .register_certificate(pb::RegisterCertificateRequest {
                context: context("register-teller"),
                principal_id: "teller".into(),
                certificate_pem: teller.pem.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&teller.der));
        assert_eq!(registered.fingerprint, fingerprint);

        let as_teller = connect(server.address, files.client_config(&ca, Some(&teller))).await;
        let me = who_am_i(&as_teller).await.unwrap();
        assert_eq!(me.principal_id, "teller");
        assert_eq!(me.credential, "certificate");
        assert_eq!(
            me.roles,
            vec![pb::RoleGrant {
                role: "clerk".into(),
                branch_id: String::new(),
            }]
        );

        admin
            .revoke_credential(pb::RevokeCredentialRequest {
                context: context("revoke-teller"),
                credential_id: registered.credential_id,
            })
            .await
            .unwrap();

        // At once, on the connection that authenticated before, and on a new one.
        assert_unauthenticated(who_am_i(&as_teller).await);
        let again = connect(server.address, files.client_config(&ca, Some(&teller))).await;
        assert_unauthenticated(who_am_i(&again).await);
        // The administrator's token is untouched.
        admin.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_certificate_of_an_unknown_principal_is_refused() {
    bounded(async {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let server = MtlsServer::start(files.server_config(&ca.server(), &client_ca)).await;
        let admin_channel = connect(server.address, files.client_config(&ca, None)).await;
        let mut admin = with_token(admin_channel, &server.admin_token);
        // The principal exists, but this certificate was never registered.
        create_clerk(&mut admin, "teller").await;
        let stranger = client_ca.client("teller");

        let channel = connect(server.address, files.client_config(&ca, Some(&stranger))).await;
        assert_unauthenticated(who_am_i(&channel).await);
        let mut audit = pb::audit_service_client::AuditServiceClient::new(channel.clone());
        assert_unauthenticated(audit.get_ledger_info(pb::GetLedgerInfoRequest {}).await);

        // The same connection with a valid token: the token authenticates.
        let mut with_admin_token = with_token(channel, &server.admin_token);
        let me = with_admin_token
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.principal_id, mfi_ledger::auth::FIRST_ADMINISTRATOR);
        assert_eq!(me.credential, "token");
        server.stop().await;
    })
    .await;
}
