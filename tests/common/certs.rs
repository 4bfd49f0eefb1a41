//! Shared by the tests over TLS (`tests/tls.rs`, `tests/mtls_principals.rs`):
//! certificate authorities and leaf certificates made inside each test
//! (rcgen), their PEM files and TLS configurations, and the ledger served by
//! `api::serve` over TLS in process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mfi_ledger::api::{self, ServerLimits};
use mfi_ledger::ledger::{Ledger, LedgerConfig, SystemClock};
use mfi_ledger::store::DiskStore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};

/// Longest any one test may take.
pub const TEST_TIME_MAX: Duration = Duration::from_secs(60);

/// Longest a client waits to connect, or for a reply.
pub const CLIENT_WAIT_MAX: Duration = Duration::from_secs(5);

/// Runs a test body, failing it past [`TEST_TIME_MAX`].
pub async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIME_MAX, test)
        .await
        .expect("the test took too long");
}

/// Whether a certificate is valid now or expired (2020 to 2021).
#[derive(Clone, Copy, PartialEq)]
pub enum Validity {
    Current,
    Expired,
}

/// A certificate authority made for one test.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
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
    pub fn server(&self, validity: Validity) -> Leaf {
        self.issue(
            "mfi-ledger",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }

    /// A client's certificate.
    pub fn client(&self, name: &str, validity: Validity) -> Leaf {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth, validity)
    }

    fn issue(
        &self,
        name: &str,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
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
pub struct Leaf {
    pub pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// The SHA-256 fingerprint of the certificate, in hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&self.der))
    }
}

/// The PEM files of one test.
pub struct Files(TempDir);

impl Files {
    pub fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn ca(&self, name: &str, ca: &Ca) -> PathBuf {
        self.write(&format!("{name}.pem"), &ca.pem)
    }

    /// The certificate's and the key's files.
    pub fn leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.pem"), &leaf.pem),
            self.write(&format!("{name}.key"), &leaf.key_pem),
        )
    }

    /// The server's TLS configuration from `server`'s files, verifying
    /// client certificates against `client_ca` if given.
    pub fn server_config(&self, server: &Leaf, client_ca: Option<&Ca>) -> ServerTlsConfig {
        let (certificate, key) = self.leaf("server", server);
        let client_ca = client_ca.map(|ca| self.ca("client-ca", ca));
        api::tls::server_config(&certificate, &key, client_ca.as_deref()).unwrap()
    }

    /// A client trusting `ca`, presenting `certificate` if given.
    pub fn client_config(&self, ca: &Ca, certificate: Option<&Leaf>) -> ClientTlsConfig {
        let ca = self.ca("trusted-ca", ca);
        let certificate = certificate.map(|leaf| self.leaf("client", leaf));
        let certificate = certificate
            .as_ref()
            .map(|(certificate, key)| (certificate.as_path(), key.as_path()));
        api::tls::client_config(&ca, certificate).unwrap()
    }
}

/// A TLS connection to `address` with `tls`, waiting at most
/// [`CLIENT_WAIT_MAX`] to connect and for each reply.
pub async fn connect(address: SocketAddr, tls: ClientTlsConfig) -> Channel {
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

/// The ledger served by `api::serve` over TLS on 127.0.0.1, port 0.
pub struct TlsServer {
    pub address: SocketAddr,
    /// The first administrator's token, when the server was started with
    /// one ([`TlsServer::start_with_administrator`]).
    pub admin_token: Option<String>,
    ledger: Arc<Ledger>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    _data: TempDir,
}

impl TlsServer {
    /// A ledger with no principals.
    pub async fn start(tls: ServerTlsConfig) -> TlsServer {
        TlsServer::launch(tls, false).await
    }

    /// A ledger with its first administrator (created in process, as
    /// `serve` does).
    pub async fn start_with_administrator(tls: ServerTlsConfig) -> TlsServer {
        TlsServer::launch(tls, true).await
    }

    async fn launch(tls: ServerTlsConfig, with_administrator: bool) -> TlsServer {
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
        let admin_token = if with_administrator {
            let token_file = mfi_ledger::auth::bootstrap(&ledger, data.path())
                .await
                .unwrap()
                .expect("a new ledger gets its first administrator");
            Some(mfi_ledger::auth::read_secret(&token_file).unwrap())
        } else {
            None
        };
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
        TlsServer {
            address,
            admin_token,
            ledger,
            stop,
            server,
            _data: data,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
        let ledger = self.ledger;
        tokio::task::spawn_blocking(move || ledger.shutdown())
            .await
            .unwrap();
    }
}
