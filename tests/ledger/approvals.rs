//! Maker-checker over gRPC: a reversal, a write-off or a disbursement above
//! its product's limit is recorded as pending and takes effect only when a
//! different manager of its branch approves it, once, before it expires;
//! the entry in effect names both principals, and `verify` re-checks it.

use chrono::Duration;
use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
use mfi_ledger::domain::ids::{BranchId, PrincipalId};
use mfi_ledger::pb;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use tonic::Code;

use crate::support::{App, Conn, connect, ctx, spawn_app};

/// A principal of `app` holding `role` in `scope`; its write client.
async fn principal(app: &App, id: &str, role: Role, scope: Scope) -> BranchServiceClient<Conn> {
    let admin = PrincipalId::parse("p", "admin").unwrap();
    let grants = vec![RoleGrant { role, scope }];
    let token =
        mfi_ledger::auth::create_principal_in_process(&app.ledger, &admin, id, grants, 36_500)
            .await
            .unwrap();
    BranchServiceClient::new(connect(app.address, &token).await)
}

fn tb() -> Scope {
    Scope::Branch(BranchId::parse("b", "TB").unwrap())
}

/// Branch TB with a member holding 200,000 in savings (the deposit is the
/// last entry); the deposit's sequence.
async fn ready() -> (App, u64) {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let deposit = app
        .deposit("dep", "TB-0001/C1", "200000", "2024-02-01")
        .await
        .unwrap();
    (app, deposit.receipt.unwrap().sequence)
}

fn reversal(id: &str, sequence: u64) -> pb::ReverseEntryRequest {
    pb::ReverseEntryRequest {
        context: ctx(id),
        sequence,
        reason: "entered twice".into(),
        effective_date: String::new(),
    }
}

fn approval(id: &str, request: u64) -> pb::ApproveRequest {
    pb::ApproveRequest {
        context: ctx(id),
        request,
    }
}

#[tokio::test]
async fn only_another_manager_of_the_branch_approves_and_only_once() {
    let (mut app, deposit) = ready().await;
    // The maker: a manager of TB.
    let mut maker = principal(&app, "maker.tb", Role::Manager, tb()).await;
    let mut clerk = principal(&app, "clerk.tb", Role::Clerk, tb()).await;
    let other_branch = Scope::Branch(BranchId::parse("b", "HN").unwrap());
    let mut manager_hn = principal(&app, "manager.hn", Role::Manager, other_branch).await;
    let mut checker = principal(&app, "checker.tb", Role::Manager, tb()).await;

    let asked = maker
        .reverse_entry(reversal("rev", deposit))
        .await
        .unwrap()
        .into_inner();
    let request = asked
        .pending
        .expect("a reversal waits for approval")
        .request;
    assert_eq!(request, asked.receipt.unwrap().sequence);
    // Pending: nothing moved.
    assert_eq!(app.balance("savings:TB-0001/C1").await, "200000");
    let head = app.last_sequence().await;

    // The maker, a clerk, and a manager of another branch may not approve.
    for (i, (who, client)) in [
        ("the maker", &mut maker),
        ("a clerk", &mut clerk),
        ("another branch's manager", &mut manager_hn),
    ]
    .into_iter()
    .enumerate()
    {
        let refused = client
            .approve(approval(&format!("refused-{i}"), request))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}: {refused:?}");
    }
    assert_eq!(app.last_sequence().await, head, "refusals wrote nothing");

    // The listing shows it pending to the branch.
    let listed = checker
        .list_pending_requests(pb::ListPendingRequestsRequest {
            branch_id: "TB".into(),
            include_decided: false,
        })
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].request, request);
    assert_eq!(listed[0].maker, "maker.tb");
    assert_eq!(listed[0].status, "pending");

    // Another manager of TB approves: the reversal is in effect.
    let approved = checker
        .approve(approval("approve", request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.command, "reverse_entry");
    let in_effect = approved.receipt.unwrap().sequence;
    assert_eq!(app.balance("savings:TB-0001/C1").await, "0");
    // The same approval sent again (same request id) is the same entry;
    // a second approval is refused. One entry either way.
    let again = checker
        .approve(approval("approve", request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.receipt.unwrap().sequence, in_effect);
    let twice = checker
        .approve(approval("approve-2", request))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");
    assert!(twice.message().contains("already approved"), "{twice:?}");
    assert_eq!(app.last_sequence().await, in_effect);

    // The entry names both principals.
    let entry = crate::support::read_journal(&mut app.audit, 1000)
        .await
        .into_iter()
        .find(|e| e.sequence == in_effect)
        .unwrap();
    assert_eq!(entry.principal, "maker.tb");
    assert_eq!(entry.approved_by, "checker.tb");
    assert_eq!(entry.reverses_sequence, deposit);

    // verify re-decides the approved entry, approval and all.
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.entries, in_effect);
}

#[tokio::test]
async fn a_rejected_or_expired_request_is_never_approved() {
    let (mut app, deposit) = ready().await;
    let mut maker = principal(&app, "maker.tb", Role::Manager, tb()).await;
    let mut checker = principal(&app, "checker.tb", Role::Manager, tb()).await;
    let request = maker
        .reverse_entry(reversal("rev", deposit))
        .await
        .unwrap()
        .into_inner()
        .pending
        .unwrap()
        .request;
    checker
        .reject(pb::RejectRequest {
            context: ctx("reject"),
            request,
            reason: "the deposit was right".into(),
        })
        .await
        .unwrap();
    let refused = checker
        .approve(approval("approve", request))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("rejected"), "{refused:?}");
    assert_eq!(app.balance("savings:TB-0001/C1").await, "200000");

    // Asked again, then left past its expiry.
    let request = maker
        .reverse_entry(reversal("rev-2", deposit))
        .await
        .unwrap()
        .into_inner()
        .pending
        .unwrap()
        .request;
    let clock = app.clock.clone().unwrap();
    clock.set(clock_now(&app) + Duration::days(8));
    let refused = checker
        .approve(approval("approve-late", request))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");
    let listed = checker
        .list_pending_requests(pb::ListPendingRequestsRequest {
            branch_id: "TB".into(),
            include_decided: true,
        })
        .await
        .unwrap()
        .into_inner()
        .requests;
    let statuses: Vec<&str> = listed.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["rejected", "expired"]);
    assert_eq!(app.balance("savings:TB-0001/C1").await, "200000");
}

fn clock_now(app: &App) -> chrono::DateTime<chrono::Utc> {
    use mfi_ledger::ledger::Clock;
    app.clock.as_ref().unwrap().now()
}

#[tokio::test]
async fn a_disbursement_above_its_products_limit_waits_and_one_below_does_not() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.member("TB-0002").await;
    let products = crate::support::products(&app).await;
    let mut products = products;
    products
        .create_product(pb::CreateProductRequest {
            context: ctx("product"),
            product_id: "GENERAL".into(),
            rules: Some(crate::support::product_rules(
                pb::InterestMethod::Flat,
                pb::RepaymentFrequency::Weekly,
                "26",
                4,
            )),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap();
    products
        .set_approval_limit(pb::SetApprovalLimitRequest {
            context: ctx("limit"),
            product_id: "GENERAL".into(),
            above: crate::support::vnd("8000000"),
        })
        .await
        .unwrap();
    let disburse = |id: &str, member: &str, principal: &str| pb::DisburseLoanRequest {
        context: ctx(id),
        member_id: member.into(),
        loan: Some(pb::disburse_loan_request::Loan::Application(
            pb::LoanApplication {
                product_id: "GENERAL".into(),
                principal: crate::support::vnd(principal),
                first_repayment_date: "2024-01-15".into(),
                ..Default::default()
            },
        )),
        disbursed_on: "2024-01-08".into(),
    };
    let below = app
        .branch
        .disburse_loan(disburse("small", "TB-0001", "5000000"))
        .await
        .unwrap()
        .into_inner();
    assert!(below.pending.is_none());
    assert_eq!(below.loan_id, "TB-0001/L1");
    let above = app
        .branch
        .disburse_loan(disburse("large", "TB-0002", "10000000"))
        .await
        .unwrap()
        .into_inner();
    let pending = above.pending.expect("above the limit it waits");
    assert!(above.loan_id.is_empty() && above.schedule.is_empty());
    let refused = app
        .audit
        .get_loan(pb::GetLoanRequest {
            as_of_sequence: 0,
            loan_id: "TB-0002/L1".into(),
            as_of_date: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "not disbursed yet");
    match app.approve(pending.request).await.unwrap() {
        pb::batch_result::Result::DisburseLoan(reply) => {
            assert_eq!(reply.loan_id, "TB-0002/L1");
            assert_eq!(reply.schedule.len(), 4);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_approval_limit_for_an_unknown_product_or_in_another_currency_is_refused() {
    let mut app = spawn_app().await;
    let mut products = crate::support::products(&app).await;
    products
        .create_product(pb::CreateProductRequest {
            context: ctx("product"),
            product_id: "GENERAL".into(),
            rules: Some(crate::support::product_rules(
                pb::InterestMethod::Flat,
                pb::RepaymentFrequency::Weekly,
                "26",
                4,
            )),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap();
    let head = app.last_sequence().await;
    let limit =
        |id: &str, product: &str, amount: &str, currency: &str| pb::SetApprovalLimitRequest {
            context: ctx(id),
            product_id: product.into(),
            above: Some(pb::Money {
                amount: amount.into(),
                currency: currency.into(),
            }),
        };
    let unknown = products
        .set_approval_limit(limit("unknown", "NOSUCH", "1000", "VND"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("product_id"), "{unknown:?}");
    let currency = products
        .set_approval_limit(limit("usd", "GENERAL", "1000", "USD"))
        .await
        .unwrap_err();
    assert_eq!(currency.code(), Code::InvalidArgument, "{currency:?}");
    assert!(
        currency.message().contains("above.currency"),
        "{currency:?}"
    );
    let places = products
        .set_approval_limit(limit("places", "GENERAL", "1000.5", "VND"))
        .await
        .unwrap_err();
    assert_eq!(places.code(), Code::InvalidArgument, "{places:?}");
    assert_eq!(app.last_sequence().await, head, "refusals wrote nothing");
}
