//! The journal of encoding version 4, kept as `tests/fixtures/v4-journal/`,
//! as `fixture.rs` keeps version 3's: every later release must verify it.
//! Version 4 entries name the principal who asked (and, for maker-checker,
//! who approved which request); the journal holds every kind of access
//! command, pending requests approved and rejected, and the version 3
//! scenario's every kind of money entry, now written by principals.
//!
//! The generator is the ignored test `regenerate_v4` (run it before a
//! release while version 4 entries may still change, with `cargo test --test
//! ledger fixture_v4::regenerate_v4 -- --ignored --nocapture`, then set the
//! constants below to what it prints). Tokens are random, so each run writes
//! another journal; once released, the fixture is frozen.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mfi_ledger::domain::access::AccessCommand;
use mfi_ledger::domain::command::CommandBody;
use mfi_ledger::domain::entry::{EntryBody, Outcome};
use mfi_ledger::pb;
use mfi_ledger::pb::access_service_client::AccessServiceClient;

use crate::support::{App, admin_token, application, connect, ctx, spawn_app, vnd};

/// Entries in the fixture.
const V4_ENTRIES: u64 = 441;
/// Hash of its last entry.
const V4_HEAD_HASH: &str = "d299e8bbe66af25ff9f3db11fa3238161c4281405f2cbc5d09f7809fd14d5968";

fn fixture_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v4-journal")
}

/// The name of an access command's kind. No wildcard: a new kind does not
/// compile until the scenario writes it and [`ACCESS_KINDS`] names it.
fn access_kind(command: &AccessCommand) -> &'static str {
    match command {
        AccessCommand::Bootstrap { .. } => "Bootstrap",
        AccessCommand::CreatePrincipal { .. } => "CreatePrincipal",
        AccessCommand::GrantRole { .. } => "GrantRole",
        AccessCommand::RevokeRole { .. } => "RevokeRole",
        AccessCommand::IssueCredential { .. } => "IssueCredential",
        AccessCommand::RevokeCredential { .. } => "RevokeCredential",
        AccessCommand::RejectRequest { .. } => "RejectRequest",
        AccessCommand::SetApprovalLimit { .. } => "SetApprovalLimit",
    }
}

/// Every access command kind the fixture holds.
const ACCESS_KINDS: [&str; 8] = [
    "Bootstrap",
    "CreatePrincipal",
    "GrantRole",
    "RevokeRole",
    "IssueCredential",
    "RevokeCredential",
    "RejectRequest",
    "SetApprovalLimit",
];

/// Version 4 written by a released build: it verifies (every entry
/// re-decided under rules version 2 with its principal's roles and
/// approvals) and its head is what it was.
#[test]
fn the_fixture_journal_of_encoding_v4_verifies() {
    crate::fixture::verify_frozen(&fixture_dir(), V4_ENTRIES, V4_HEAD_HASH);
}

/// It holds every kind of access command, pending requests, approved
/// entries, and every entry names a principal.
#[test]
fn the_fixture_holds_every_access_kind_and_approvals() {
    let entries: Vec<EntryBody> = crate::fixture::journal_entries(&fixture_dir());
    let mut kinds = BTreeSet::new();
    let (mut pending, mut approved) = (0, 0);
    for entry in &entries {
        let attribution = entry
            .attribution
            .as_ref()
            .unwrap_or_else(|| panic!("entry {} names no principal", entry.sequence));
        if let CommandBody::Access(command) = &entry.command {
            kinds.insert(access_kind(command));
        }
        if matches!(entry.outcome, Outcome::ApprovalRequested { .. }) {
            pending += 1;
        }
        if attribution.approval.is_some() {
            approved += 1;
        }
    }
    assert_eq!(kinds, ACCESS_KINDS.into_iter().collect());
    assert!(pending > approved && approved > 0, "{pending} {approved}");
}

/// Writes the fixture: the version 3 scenario, then the access scenario.
#[tokio::test]
#[ignore = "writes tests/fixtures/v4-journal; run by hand before a release"]
async fn regenerate_v4() {
    let mut app = spawn_app().await;
    crate::fixture::write_scenario(&mut app).await;
    access_scenario(&mut app).await;
    let written = app.stop().await;
    let report = mfi_ledger::verify::verify(written.path()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(fixture_dir()).unwrap();
    std::fs::copy(
        written.path().join("journal.log"),
        fixture_dir().join("journal.log"),
    )
    .unwrap();
    println!(
        "V4_ENTRIES = {}; V4_HEAD_HASH = {:?}",
        report.entries,
        hex::encode(report.last_hash)
    );
}

/// Every access command, a disbursement above its product's limit
/// approved, and a reversal rejected.
async fn access_scenario(app: &mut App) {
    let admin = admin_token(app.dir.path());
    let mut access = AccessServiceClient::new(connect(app.address, &admin).await);
    let clerk = pb::RoleGrant {
        role: "clerk".into(),
        branch_id: "TB".into(),
    };
    let auditor = pb::RoleGrant {
        role: "auditor".into(),
        branch_id: "TB".into(),
    };
    access
        .create_principal(pb::CreatePrincipalRequest {
            context: ctx("fx4-create"),
            principal_id: "clerk.tb".into(),
            name: "Clerk of TB".into(),
            roles: vec![clerk],
            issue_token: true,
            token_valid_days: 30,
        })
        .await
        .unwrap();
    access
        .grant_role(pb::GrantRoleRequest {
            context: ctx("fx4-grant"),
            principal_id: "clerk.tb".into(),
            role: Some(auditor.clone()),
        })
        .await
        .unwrap();
    access
        .revoke_role(pb::RevokeRoleRequest {
            context: ctx("fx4-revoke"),
            principal_id: "clerk.tb".into(),
            role: Some(auditor),
        })
        .await
        .unwrap();
    let issued = access
        .issue_token(pb::IssueTokenRequest {
            context: ctx("fx4-token"),
            principal_id: "clerk.tb".into(),
            valid_days: 7,
        })
        .await
        .unwrap()
        .into_inner();
    access
        .revoke_credential(pb::RevokeCredentialRequest {
            context: ctx("fx4-revoke-token"),
            credential_id: issued.token.unwrap().credential_id,
        })
        .await
        .unwrap();
    let certificate = rcgen::generate_simple_self_signed(vec!["clerk.tb".to_owned()]).unwrap();
    access
        .register_certificate(pb::RegisterCertificateRequest {
            context: ctx("fx4-certificate"),
            principal_id: "clerk.tb".into(),
            certificate_pem: certificate.cert.pem(),
        })
        .await
        .unwrap();
    // Disbursements of FLAT4 above 2,000,000 VND wait for approval.
    crate::support::products(app)
        .await
        .set_approval_limit(pb::SetApprovalLimitRequest {
            context: ctx("fx4-limit"),
            product_id: "FLAT4".into(),
            above: vnd("2000000"),
        })
        .await
        .unwrap();
    let large = app
        .disburse_under(
            "fx4-large",
            "TB-0039",
            application("FLAT4", "3000000", "2024-04-08"),
            "2024-04-01",
        )
        .await
        .unwrap();
    let disbursed = match app
        .approve(large.pending.expect("above the limit").request)
        .await
        .unwrap()
    {
        pb::batch_result::Result::DisburseLoan(reply) => reply.receipt.unwrap().sequence,
        other => panic!("{other:?}"),
    };
    // A reversal asked for, then rejected.
    let asked = app
        .branch
        .reverse_entry(pb::ReverseEntryRequest {
            context: ctx("fx4-reverse"),
            sequence: disbursed,
            reason: "asked by mistake".into(),
            effective_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let token = app.checker_token().await;
    let mut checker = mfi_ledger::pb::branch_service_client::BranchServiceClient::new(
        connect(app.address, &token).await,
    );
    checker
        .reject(pb::RejectRequest {
            context: ctx("fx4-reject"),
            request: asked.pending.expect("a reversal waits").request,
            reason: "the disbursement was right".into(),
        })
        .await
        .unwrap();
}
