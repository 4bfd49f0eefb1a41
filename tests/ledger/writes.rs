//! What a branch clerk does, and what an auditor then reads.

use mfi_ledger::pb;

use crate::support::{borrower, ctx, flat_weekly, spawn_app, vnd};

#[tokio::test]
async fn structure_and_members_are_recorded_and_readable() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let account = app.member("TB-0001").await;
    assert_eq!(account, "TB-0001/C1");
    let member = app
        .audit
        .get_member(pb::GetMemberRequest {
            as_of_sequence: 0,
            member_id: "TB-0001".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(member.full_name, "Nguyễn Thị Hoa");
    assert_eq!(member.group_id, "TB-G01");
    assert_eq!(member.center_id, "TB-C01");
    assert_eq!(member.branch_id, "TB");
    assert_eq!(member.joined_on, "2024-01-02");
    assert_eq!(member.savings_accounts.len(), 1);
    assert_eq!(
        member.savings_accounts[0].kind,
        pb::SavingsKind::Compulsory as i32
    );
    assert_eq!(
        member.savings_accounts[0].balance.as_ref().unwrap().amount,
        "0"
    );
    // A voluntary account is numbered separately.
    let voluntary = app
        .branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("open-v"),
            member_id: "TB-0001".into(),
            kind: pb::SavingsKind::Voluntary as i32,
            opened_on: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(voluntary.account_id, "TB-0001/V1");
    // Opening without a date means today in the branch's zone.
    assert_eq!(
        voluntary.receipt.unwrap().effective_date,
        crate::support::TODAY
    );
    // Every command is one entry: branch, center, group, member, 2 accounts.
    assert_eq!(
        app.last_sequence().await,
        crate::support::ACCESS_ENTRIES + 6
    );
}

#[tokio::test]
async fn deposits_and_withdrawals_move_cash_and_savings() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let account = app.member("TB-0001").await;
    let deposited = app
        .deposit("dep-1", &account, "150000", "2024-02-01")
        .await
        .unwrap();
    assert_eq!(deposited.balance.unwrap().amount, "150000");
    let withdrawn = app
        .branch
        .withdraw_savings(pb::WithdrawSavingsRequest {
            context: ctx("wd-1"),
            account_id: account.clone(),
            amount: vnd("40000"),
            effective_date: "2024-02-08".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.balance.unwrap().amount, "110000");
    assert_eq!(app.balance(&format!("savings:{account}")).await, "110000");
    assert_eq!(app.balance("cash:TB").await, "110000");
    let cash = app
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: "cash:TB".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cash.debits.unwrap().amount, "150000");
    assert_eq!(cash.credits.unwrap().amount, "40000");
    assert_eq!(cash.kind, pb::AccountKind::Asset as i32);
}

#[tokio::test]
async fn a_disbursement_computes_the_schedule_and_posts_loan_against_cash() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    let loan = app
        .disburse(
            "loan-1",
            "TB-0001",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    assert_eq!(loan.loan_id, "TB-0001/L1");
    let rows: Vec<(String, String, String, String)> = loan
        .schedule
        .iter()
        .map(|i| {
            (
                i.due_date.clone(),
                i.principal.as_ref().unwrap().amount.clone(),
                i.interest.as_ref().unwrap().amount.clone(),
                i.total.as_ref().unwrap().amount.clone(),
            )
        })
        .collect();
    let row = |d: &str| {
        (
            d.to_owned(),
            "250000".to_owned(),
            "5000".to_owned(),
            "255000".to_owned(),
        )
    };
    assert_eq!(
        rows,
        vec![
            row("2024-01-15"),
            row("2024-01-22"),
            row("2024-01-29"),
            row("2024-02-05")
        ]
    );
    assert_eq!(app.balance("loan:TB-0001/L1").await, "1000000");
    assert_eq!(app.balance("cash:TB").await, "-1000000");
}

#[tokio::test]
async fn a_repayment_pays_interest_then_principal_oldest_installment_first() {
    let (mut app, loan) = borrower().await;
    // On 22 January installments 1 and 2 are due. 300,000 = installment 1
    // (5,000 interest + 250,000 principal)
    //         + installment 2's 5,000 interest + 40,000 of its principal.
    let paid = app
        .repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    assert_eq!(paid.interest_paid.unwrap().amount, "10000");
    assert_eq!(paid.principal_paid.unwrap().amount, "290000");
    assert_eq!(paid.principal_outstanding.unwrap().amount, "710000");
    assert!(!paid.loan_closed);
    assert_eq!(app.balance(&format!("loan:{loan}")).await, "710000");
    assert_eq!(app.balance("interest-income:TB").await, "10000");
    // cash: +200,000 deposit -1,000,000 disbursed +300,000 repaid.
    assert_eq!(app.balance("cash:TB").await, "-500000");
}

#[tokio::test]
async fn a_loan_shows_paid_due_and_overdue_installments_as_of_a_date() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    let read = |as_of: &str| pb::GetLoanRequest {
        as_of_sequence: 0,
        loan_id: loan.clone(),
        as_of_date: as_of.into(),
    };
    let on_29th = app
        .audit
        .get_loan(read("2024-01-29"))
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<i32> = on_29th.schedule.iter().map(|i| i.status).collect();
    use pb::InstallmentStatus::*;
    assert_eq!(
        statuses,
        vec![Paid as i32, Overdue as i32, Due as i32, NotDue as i32]
    );
    // Installment 2: 250,000 principal less the 40,000 paid.
    assert_eq!(on_29th.principal_overdue.unwrap().amount, "210000");
    assert_eq!(on_29th.interest_overdue.unwrap().amount, "0");
    assert_eq!(
        on_29th.schedule[1].principal_paid.as_ref().unwrap().amount,
        "40000"
    );
    let on_30th = app
        .audit
        .get_loan(read("2024-01-30"))
        .await
        .unwrap()
        .into_inner();
    // Installment 3 is now overdue too: 210,000 + 250,000 and 5,000 interest.
    assert_eq!(on_30th.principal_overdue.unwrap().amount, "460000");
    assert_eq!(on_30th.interest_overdue.unwrap().amount, "5000");
    assert_eq!(on_30th.principal_outstanding.unwrap().amount, "710000");
    assert_eq!(on_30th.interest_outstanding.unwrap().amount, "10000");
}

#[tokio::test]
async fn paying_everything_outstanding_closes_the_loan() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    // 710,000 principal + 10,000 interest left.
    let paid = app
        .repay("pay-2", &loan, "720000", "2024-02-05")
        .await
        .unwrap();
    assert!(paid.loan_closed);
    assert_eq!(paid.principal_outstanding.unwrap().amount, "0");
    let read = app.audit.get_loan(pb::GetLoanRequest {
        as_of_sequence: 0,
        loan_id: loan.clone(),
        as_of_date: String::new(),
    });
    let state = read.await.unwrap().into_inner();
    assert_eq!(state.status, pb::LoanStatus::Closed as i32);
    assert!(
        state
            .schedule
            .iter()
            .all(|i| i.status == pb::InstallmentStatus::Paid as i32)
    );
    assert_eq!(app.balance(&format!("loan:{loan}")).await, "0");
    assert_eq!(app.balance("interest-income:TB").await, "20000");
}

#[tokio::test]
async fn compulsory_savings_can_be_withdrawn_down_to_the_required_share() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    // Required: 5% of 710,000 outstanding = 35,500; 200,000 - 164,500 = 35,500.
    let member = app
        .audit
        .get_member(pb::GetMemberRequest {
            as_of_sequence: 0,
            member_id: "TB-0001".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        member.into_inner().savings_accounts[0]
            .required_minimum
            .as_ref()
            .unwrap()
            .amount,
        "35500"
    );
    let withdraw = |id: &str, amount: &str| pb::WithdrawSavingsRequest {
        context: ctx(id),
        account_id: "TB-0001/C1".into(),
        amount: vnd(amount),
        effective_date: "2024-01-20".into(),
    };
    app.branch
        .withdraw_savings(withdraw("wd-ok", "164500"))
        .await
        .unwrap();
    assert_eq!(app.balance("savings:TB-0001/C1").await, "35500");
}

#[tokio::test]
async fn reversing_a_repayment_restores_the_loan_and_names_the_reversed_entry() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    let closing = app
        .repay("pay-2", &loan, "720000", "2024-02-05")
        .await
        .unwrap();
    let closing_sequence = closing.receipt.unwrap().sequence;
    let reversal = app
        .reverse_approved(pb::ReverseEntryRequest {
            context: ctx("rev-1"),
            sequence: closing_sequence,
            reason: "entered twice".into(),
            effective_date: String::new(),
        })
        .await
        .unwrap()
        .receipt
        .unwrap();
    // The reversal takes the reversed entry's date unless told otherwise.
    assert_eq!(reversal.effective_date, "2024-02-05");
    assert_eq!(app.balance(&format!("loan:{loan}")).await, "710000");
    assert_eq!(app.balance("interest-income:TB").await, "10000");
    let state = app
        .audit
        .get_loan(pb::GetLoanRequest {
            as_of_sequence: 0,
            loan_id: loan.clone(),
            as_of_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status, pb::LoanStatus::Active as i32);
    let page = app
        .audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: reversal.sequence,
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let entry = &page.entries[0];
    assert_eq!(entry.reverses_sequence, closing_sequence);
    assert_eq!(entry.command, "reverse_entry");
    // Opposite postings: cash credited, loan and interest debited.
    let lines: Vec<(String, i32, String)> = entry
        .postings
        .iter()
        .map(|p| {
            (
                p.account.clone(),
                p.side,
                p.amount.as_ref().unwrap().amount.clone(),
            )
        })
        .collect();
    let (debit, credit) = (
        pb::PostingSide::Debit as i32,
        pb::PostingSide::Credit as i32,
    );
    assert_eq!(
        lines,
        vec![
            ("cash:TB".into(), credit, "720000".into()),
            (format!("loan:{loan}"), debit, "710000".into()),
            ("interest-income:TB".into(), debit, "10000".into()),
        ]
    );
}

#[tokio::test]
async fn reversing_a_disbursement_without_repayments_cancels_the_loan() {
    let (mut app, loan) = borrower().await;
    let disbursement = app.last_sequence().await;
    app.reverse_approved(pb::ReverseEntryRequest {
        context: ctx("rev-loan"),
        sequence: disbursement,
        reason: "wrong member".into(),
        effective_date: "2024-01-09".into(),
    })
    .await
    .unwrap();
    let state = app
        .audit
        .get_loan(pb::GetLoanRequest {
            as_of_sequence: 0,
            loan_id: loan.clone(),
            as_of_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.status, pb::LoanStatus::Cancelled as i32);
    assert_eq!(app.balance(&format!("loan:{loan}")).await, "0");
    assert_eq!(app.balance("cash:TB").await, "200000");
    // A cancelled loan takes no repayment.
    let refused = app
        .repay("pay-x", &loan, "1000", "2024-01-15")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn the_journal_pages_in_order_and_every_entry_chains_to_the_previous() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    let last = app.last_sequence().await;
    let entries = crate::support::read_journal(&mut app.audit, 3).await;
    let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=last).collect::<Vec<_>>());
    assert_eq!(entries[0].previous_hash, "0".repeat(64));
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1].previous_hash, pair[0].hash,
            "entry {} does not chain",
            pair[1].sequence
        );
    }
    let info = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.last_hash, entries.last().unwrap().hash);
    let repayment = entries.last().unwrap();
    assert_eq!(repayment.command, "record_repayment");
    assert_eq!(repayment.request_id, "pay-1");
    assert_eq!(repayment.actor, "clerk");
    assert_eq!(repayment.branch_id, "TB");
    assert_eq!(repayment.effective_date, "2024-01-22");
}

#[tokio::test]
async fn a_restart_keeps_every_entry_and_balance() {
    let (mut app, loan) = borrower().await;
    app.repay("pay-1", &loan, "300000", "2024-01-22")
        .await
        .unwrap();
    let before = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut app = app.restart().await;
    let after = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after);
    assert_eq!(app.balance(&format!("loan:{loan}")).await, "710000");
    assert_eq!(app.balance("savings:TB-0001/C1").await, "200000");
    // Writing goes on from the next sequence number.
    let next = app
        .repay("pay-2", &loan, "1000", "2024-01-22")
        .await
        .unwrap();
    assert_eq!(next.receipt.unwrap().sequence, after.last_sequence + 1);
}

#[tokio::test]
async fn the_server_answers_health_checks_and_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = spawn_app().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["mfi.ledger.v1.BranchService", "mfi.ledger.v1.AuditService"] {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "mfi.ledger.v1.BranchService",
        "mfi.ledger.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }

    // v1alpha too, for the older tools that speak only it.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut replies = Alpha::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "mfi.ledger.v1.BooksService"),
        "{list:?}"
    );
}
