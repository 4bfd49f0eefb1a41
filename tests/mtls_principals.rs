//! Client certificates as credentials, over real mutual TLS on 127.0.0.1
//! with certificates made inside each test (rcgen): a certificate registered
//! for a principal (`RegisterCertificate`) authenticates as that principal
//! with no token, until `RevokeCredential`; a certificate the client CA
//! signed but no principal holds reaches the application and is refused
//! there (UNAUTHENTICATED).
//!
//! The CA, leaf and server helpers are shared with `tests/tls.rs`
//! (`tests/common/certs.rs`).

use crate::common;

use common::certs::{Ca, Files, Leaf, TlsServer, Validity, bounded, connect};
use mfi_ledger::cli::connect::{Bearer, Conn};
use mfi_ledger::pb;
use mfi_ledger::pb::access_service_client::AccessServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A ledger with its first administrator, served over mutual TLS with a
/// server certificate from `ca`, verifying client certificates against
/// `client_ca`; `admin` calls the access service with the administrator's
/// token over a connection without a client certificate.
struct Setup {
    files: Files,
    ca: Ca,
    client_ca: Ca,
    server: TlsServer,
    admin_token: String,
    admin: AccessServiceClient<Conn>,
}

impl Setup {
    async fn start() -> Setup {
        let files = Files::new();
        let ca = Ca::new("mfi ca");
        let client_ca = Ca::new("mfi clients");
        let tls = files.server_config(&ca.server(Validity::Current), Some(&client_ca));
        let server = TlsServer::start_with_administrator(tls).await;
        let admin_token = server.admin_token.clone().expect("an administrator");
        let admin_channel = connect(server.address, files.client_config(&ca, None)).await;
        let admin = with_token(admin_channel, &admin_token);
        Setup {
            files,
            ca,
            client_ca,
            server,
            admin_token,
            admin,
        }
    }

    /// A new connection presenting `certificate`.
    async fn connect_as(&self, certificate: &Leaf) -> Channel {
        let tls = self.files.client_config(&self.ca, Some(certificate));
        connect(self.server.address, tls).await
    }
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

#[tokio::test]
async fn a_registered_client_certificate_authenticates_its_principal_until_revoked() {
    bounded(async {
        let mut setup = Setup::start().await;
        create_clerk(&mut setup.admin, "teller").await;
        let teller = setup.client_ca.client("teller", Validity::Current);
        let registered = setup
            .admin
            .register_certificate(pb::RegisterCertificateRequest {
                context: context("register-teller"),
                principal_id: "teller".into(),
                certificate_pem: teller.pem.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(registered.fingerprint, teller.fingerprint());

        let as_teller = setup.connect_as(&teller).await;
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

        setup
            .admin
            .revoke_credential(pb::RevokeCredentialRequest {
                context: context("revoke-teller"),
                credential_id: registered.credential_id,
            })
            .await
            .unwrap();

        // At once, on the connection that authenticated before, and on a new one.
        assert_unauthenticated(who_am_i(&as_teller).await);
        let again = setup.connect_as(&teller).await;
        assert_unauthenticated(who_am_i(&again).await);
        // The administrator's token is untouched.
        setup.admin.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
        setup.server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_certificate_of_an_unknown_principal_is_refused() {
    bounded(async {
        let mut setup = Setup::start().await;
        // The principal exists, but this certificate was never registered.
        create_clerk(&mut setup.admin, "teller").await;
        let stranger = setup.client_ca.client("teller", Validity::Current);

        let channel = setup.connect_as(&stranger).await;
        assert_unauthenticated(who_am_i(&channel).await);
        let mut audit = pb::audit_service_client::AuditServiceClient::new(channel.clone());
        assert_unauthenticated(audit.get_ledger_info(pb::GetLedgerInfoRequest {}).await);

        // The same connection with a valid token: the token authenticates.
        let mut with_admin_token = with_token(channel, &setup.admin_token);
        let me = with_admin_token
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.principal_id, mfi_ledger::auth::FIRST_ADMINISTRATOR);
        assert_eq!(me.credential, "token");
        setup.server.stop().await;
    })
    .await;
}
