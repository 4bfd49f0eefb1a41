//! The access log: every read of the books, by whom, which method and
//! what it named, and its outcome, in order, with nothing missing; and
//! `verify` finds a record changed or removed.

use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
use mfi_ledger::domain::ids::{BranchId, PrincipalId};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use mfi_ledger::store::access_log::ACCESS_LOG_FILE;

use crate::support::{TESTER, connect, spawn_app};

/// (principal, method, subject, outcome) of every record.
async fn listed(app: &mut crate::support::App) -> Vec<(String, String, String, String)> {
    let mut records = Vec::new();
    let mut from = 1;
    while from != 0 {
        let page = app
            .audit
            .list_access_log(pb::ListAccessLogRequest {
                from_sequence: from,
                page_size: 2,
            })
            .await
            .unwrap()
            .into_inner();
        for (i, record) in page.records.iter().enumerate() {
            assert_eq!(record.sequence, from + i as u64, "in order, no gaps");
        }
        records.extend(
            page.records
                .into_iter()
                .map(|r| (r.principal, r.method, r.subject, r.outcome)),
        );
        from = page.next_sequence;
    }
    records
}

fn row(
    principal: &str,
    method: &str,
    subject: &str,
    outcome: &str,
) -> (String, String, String, String) {
    (
        principal.into(),
        method.into(),
        subject.into(),
        outcome.into(),
    )
}

#[tokio::test]
async fn every_read_is_recorded_in_order_and_verify_checks_the_chain() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    // Writes are in the journal, not in the access log.
    let admin = PrincipalId::parse("p", "admin").unwrap();
    let other = Scope::Branch(BranchId::parse("b", "HN").unwrap());
    let clerk_hn = mfi_ledger::auth::create_principal_in_process(
        &app.ledger,
        &admin,
        "clerk.hn",
        vec![RoleGrant {
            role: Role::Clerk,
            scope: other,
        }],
        36_500,
    )
    .await
    .unwrap();

    app.audit
        .get_member(pb::GetMemberRequest {
            as_of_sequence: 0,
            member_id: "TB-0001".into(),
        })
        .await
        .unwrap();
    app.balance("savings:TB-0001/C1").await;
    let missing = app
        .audit
        .get_loan(pb::GetLoanRequest {
            as_of_sequence: 0,
            loan_id: "TB-0001/L9".into(),
            as_of_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // A clerk of another branch is refused, and that is recorded too.
    let mut hn = AuditServiceClient::new(connect(app.address, &clerk_hn).await);
    let refused = hn
        .get_member(pb::GetMemberRequest {
            as_of_sequence: 0,
            member_id: "TB-0001".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // An unauthenticated read is recorded without a principal.
    let mut nobody = AuditServiceClient::new(connect(app.address, "mfi_nothing").await);
    nobody
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap_err();
    app.last_sequence().await;

    let expected = [
        row(TESTER, "AuditService/GetMember", "member:TB-0001", "Ok"),
        row(
            TESTER,
            "AuditService/GetBalance",
            "account:savings:TB-0001/C1",
            "Ok",
        ),
        row(
            TESTER,
            "AuditService/GetLoan",
            "loan:TB-0001/L9",
            "NotFound",
        ),
        row(
            "clerk.hn",
            "AuditService/GetMember",
            "member:TB-0001",
            "PermissionDenied",
        ),
        row("", "AuditService/GetLedgerInfo", "", "Unauthenticated"),
        row(TESTER, "AuditService/GetLedgerInfo", "", "Ok"),
    ];
    // The listing's own pages are reads too: each is recorded once
    // answered, so the later pages see the earlier ones.
    let got = listed(&mut app).await;
    assert_eq!(got[..expected.len()], expected[..]);
    let own = &got[expected.len()..];
    assert!(!own.is_empty());
    let listing = row(TESTER, "AuditService/ListAccessLog", "access-log", "Ok");
    assert!(own.iter().all(|r| *r == listing), "{own:?}");

    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.access_records >= expected.len() as u64, "{report}");

    // A record changed on disk, or removed, fails verification.
    let path = dir.path().join(ACCESS_LOG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("member:TB-0001", "member:TB-0002", 1)).unwrap();
    let changed = crate::support::verify(dir.path()).unwrap_err().to_string();
    assert!(changed.contains("access log line 1"), "{changed}");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(2);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let removed = crate::support::verify(dir.path()).unwrap_err().to_string();
    assert!(
        removed.contains("access log line 3") && removed.contains("removed"),
        "{removed}"
    );
}

/// Records cut from the log's end leave a chain that still holds; the
/// checkpoints of the journal anchor the log's head, so `verify` sees it.
#[tokio::test]
async fn records_cut_from_the_end_are_caught_by_the_checkpoints_anchor() {
    let mut app = crate::support::spawn_app().await;
    for _ in 0..3 {
        app.last_sequence().await;
    }
    let mut proofs = mfi_ledger::pb::proof_service_client::ProofServiceClient::new(
        crate::support::connect(app.address, &app.token).await,
    );
    // A write, so that the tree grows and a new checkpoint is signed.
    app.branch_tb().await;
    let note = proofs
        .create_checkpoint(mfi_ledger::pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .note;
    assert!(note.contains("\naccess-log "), "{note}");
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.tree.access_log_anchors.is_empty(), "{report}");
    let (_, anchored, _) = *report.tree.access_log_anchors.last().unwrap();
    assert!(anchored >= 3, "{report}");

    // Cut the records from the anchored one on: the rest still chains.
    let path = dir.path().join(ACCESS_LOG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(anchored as usize - 1).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let error = crate::support::verify(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains(&format!("anchors access log record {anchored}"))
            && error.contains(&format!("holds only {} records", anchored - 1)),
        "{error}"
    );
}
