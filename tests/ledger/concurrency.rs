//! Many clients at once: every acknowledged amount is in the balances, the
//! books balance, and the journal verifies.

use mfi_ledger::pb;
use rust_decimal::Decimal;

use crate::support::{ctx, flat_weekly, spawn_app, vnd};

const CLIENTS: usize = 64;
const COMMANDS_PER_CLIENT: usize = 12;
const MEMBERS: usize = 4;

#[derive(Default)]
struct Acknowledged {
    deposits: [Decimal; MEMBERS],
    principal: [Decimal; MEMBERS],
    interest: Decimal,
    repaid: Decimal,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_depositing_and_repaying_on_shared_accounts() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    for m in 0..MEMBERS {
        let member = format!("TB-000{m}");
        app.member(&member).await;
        // 52 weekly installments of a 100,000,000 loan: far more than the clients repay.
        app.disburse(
            &format!("loan-{m}"),
            &member,
            flat_weekly("100000000", "20", 52, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for client_number in 0..CLIENTS {
        let mut client = app.branch.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Acknowledged::default();
            for i in 0..COMMANDS_PER_CLIENT {
                let m = (client_number + i) % MEMBERS;
                let amount = 1000 + client_number * 10 + i;
                let id = format!("c{client_number}-{i}");
                if i % 2 == 0 {
                    let request = pb::DepositSavingsRequest {
                        context: ctx(&id),
                        account_id: format!("TB-000{m}/C1"),
                        amount: vnd(&amount.to_string()),
                        effective_date: "2024-02-01".into(),
                    };
                    client.deposit_savings(request).await.unwrap();
                    acknowledged.deposits[m] += Decimal::from(amount);
                } else {
                    let request = pb::RecordRepaymentRequest {
                        context: ctx(&id),
                        loan_id: format!("TB-000{m}/L1"),
                        amount: vnd(&amount.to_string()),
                        effective_date: "2024-02-01".into(),
                    };
                    let paid = client.record_repayment(request).await.unwrap().into_inner();
                    acknowledged.principal[m] += paid
                        .principal_paid
                        .unwrap()
                        .amount
                        .parse::<Decimal>()
                        .unwrap();
                    acknowledged.interest += paid
                        .interest_paid
                        .unwrap()
                        .amount
                        .parse::<Decimal>()
                        .unwrap();
                    acknowledged.repaid += Decimal::from(amount);
                }
            }
            acknowledged
        }));
    }
    let mut total = Acknowledged::default();
    for task in tasks {
        let part = task.await.unwrap();
        for m in 0..MEMBERS {
            total.deposits[m] += part.deposits[m];
            total.principal[m] += part.principal[m];
        }
        total.interest += part.interest;
        total.repaid += part.repaid;
    }
    assert_eq!(
        total.repaid,
        total.interest + total.principal.iter().sum::<Decimal>()
    );
    for m in 0..MEMBERS {
        let saved: Decimal = app
            .balance(&format!("savings:TB-000{m}/C1"))
            .await
            .parse()
            .unwrap();
        assert_eq!(saved, total.deposits[m], "member {m}'s savings");
        let outstanding: Decimal = app
            .balance(&format!("loan:TB-000{m}/L1"))
            .await
            .parse()
            .unwrap();
        assert_eq!(
            outstanding,
            Decimal::from(100_000_000) - total.principal[m],
            "member {m}'s loan"
        );
    }
    let income: Decimal = app.balance("interest-income:TB").await.parse().unwrap();
    assert_eq!(income, total.interest);
    let cash: Decimal = app.balance("cash:TB").await.parse().unwrap();
    let deposited: Decimal = total.deposits.iter().sum();
    assert_eq!(cash, deposited + total.repaid - Decimal::from(400_000_000));

    // Every entry balances, and the whole journal's debits equal its credits.
    let expected_entries = crate::support::ACCESS_ENTRIES
        + 3
        + MEMBERS as u64 * 3
        + (CLIENTS * COMMANDS_PER_CLIENT) as u64;
    assert_eq!(app.last_sequence().await, expected_entries);
    let (mut debits, mut credits) = (Decimal::ZERO, Decimal::ZERO);
    for entry in &crate::support::read_journal(&mut app.audit, 1000).await {
        let (mut d, mut c) = (Decimal::ZERO, Decimal::ZERO);
        for posting in &entry.postings {
            let amount: Decimal = posting.amount.as_ref().unwrap().amount.parse().unwrap();
            if posting.side == pb::PostingSide::Debit as i32 {
                d += amount
            } else {
                c += amount
            }
        }
        assert_eq!(d, c, "entry {} does not balance", entry.sequence);
        debits += d;
        credits += c;
    }
    assert_eq!(debits, credits);

    // Offline verification of the same data after a clean stop.
    let dir = app.stop().await;
    let report = crate::support::verify(dir.path()).unwrap();
    assert_eq!(report.entries, expected_entries);
}
