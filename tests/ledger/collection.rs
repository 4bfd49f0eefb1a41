//! A center meeting's collection sheet: one entry for all its lines, all or
//! nothing, exactly once, reversed as a whole. Every expected figure is
//! worked out by hand beside it.

use mfi_ledger::pb;
use tonic::Code;

use crate::support::{App, Books, amount, assert_refused, books, ctx, flat_weekly, spawn_app, vnd};

/// Every account a sheet touches.
const ACCOUNTS: [&str; 9] = [
    "cash:TB",
    "interest-income:TB",
    "loan:TB-0001/L1",
    "loan:TB-0002/L1",
    "loan:TB-0003/L1",
    "savings:TB-0001/C1",
    "savings:TB-0002/C1",
    "savings:TB-0003/C1",
    "savings:TB-0004/C1",
];

/// Center TB-C01 with members TB-0001 to TB-0004; the first three each owe
/// a 1,000,000 flat loan at 26% over 4 weeks from 15 January (255,000 a week:
/// 250,000 principal + 5,000 interest). TB-0005 meets at another center,
/// TB-C02. Cash: -3,000,000.
async fn center() -> App {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    for member in ["TB-0001", "TB-0002", "TB-0003", "TB-0004"] {
        app.member(member).await;
    }
    for member in ["TB-0001", "TB-0002", "TB-0003"] {
        app.disburse(
            &format!("loan-{member}"),
            member,
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    }
    app.branch
        .create_center(pb::CreateCenterRequest {
            context: ctx("center-2"),
            center_id: "TB-C02".into(),
            branch_id: "TB".into(),
            name: "Cụm Kiến Xương".into(),
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
    app.branch
        .create_group(pb::CreateGroupRequest {
            context: ctx("group-2"),
            group_id: "TB-G02".into(),
            center_id: "TB-C02".into(),
            name: "Nhóm 2".into(),
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
    app.branch
        .register_member(pb::RegisterMemberRequest {
            context: ctx("register-TB-0005"),
            member_id: "TB-0005".into(),
            full_name: "Phạm Thị Thu".into(),
            group_id: "TB-G02".into(),
            joined_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
    app.branch
        .open_savings_account(pb::OpenSavingsAccountRequest {
            context: ctx("open-TB-0005"),
            member_id: "TB-0005".into(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
    app
}

fn line(
    member: &str,
    repaid: Option<(&str, &str)>,
    deposited: Option<(&str, &str)>,
) -> pb::CollectionLine {
    pb::CollectionLine {
        member_id: member.into(),
        loan_id: repaid.map(|(loan, _)| loan.into()).unwrap_or_default(),
        repayment: repaid.and_then(|(_, amount)| vnd(amount)),
        savings_account_id: deposited
            .map(|(account, _)| account.into())
            .unwrap_or_default(),
        deposit: deposited.and_then(|(_, amount)| vnd(amount)),
    }
}

/// The meeting of 15 January:
/// 0. TB-0001 pays her installment, 255,000, and saves 20,000.
/// 1. TB-0002 pays 100,000 of it and saves 10,000.
/// 2. TB-0003 pays two installments' worth, 510,000.
/// 3. TB-0004 (no loan) saves 50,000.
fn meeting() -> Vec<pb::CollectionLine> {
    vec![
        line(
            "TB-0001",
            Some(("TB-0001/L1", "255000")),
            Some(("TB-0001/C1", "20000")),
        ),
        line(
            "TB-0002",
            Some(("TB-0002/L1", "100000")),
            Some(("TB-0002/C1", "10000")),
        ),
        line("TB-0003", Some(("TB-0003/L1", "510000")), None),
        line("TB-0004", None, Some(("TB-0004/C1", "50000"))),
    ]
}

async fn sheet(
    app: &mut App,
    request_id: &str,
    lines: Vec<pb::CollectionLine>,
) -> Result<pb::RecordCollectionSheetResponse, tonic::Status> {
    app.branch
        .record_collection_sheet(pb::RecordCollectionSheetRequest {
            context: ctx(request_id),
            center_id: "TB-C01".into(),
            meeting_date: "2024-01-15".into(),
            lines,
        })
        .await
        .map(|r| r.into_inner())
}

async fn all_books(app: &mut App) -> Books {
    books(app, &ACCOUNTS).await
}

/// The balances of `ACCOUNTS`, in order.
async fn balances(app: &mut App) -> Vec<String> {
    all_books(app)
        .await
        .balances
        .into_iter()
        .map(|(_, balance)| balance)
        .collect()
}

#[tokio::test]
async fn a_meeting_is_one_entry_with_every_line_allocated() {
    let mut app = center().await;
    let before = app.last_sequence().await;
    let recorded = sheet(&mut app, "sheet-1", meeting()).await.unwrap();
    let receipt = recorded.receipt.clone().unwrap();
    assert_eq!(receipt.sequence, before + 1);
    assert_eq!(app.last_sequence().await, before + 1, "one entry");
    assert_eq!(receipt.effective_date, "2024-01-15");
    // 255,000 + 100,000 + 510,000; 20,000 + 10,000 + 50,000.
    assert_eq!(amount(&recorded.total_repaid), "865000");
    assert_eq!(amount(&recorded.total_deposited), "80000");
    assert_eq!(recorded.lines.len(), 4);

    // 0: interest 5,000, principal 250,000; 750,000 left.
    let first = recorded.lines[0].repayment.as_ref().unwrap();
    assert_eq!(recorded.lines[0].member_id, "TB-0001");
    assert_eq!(amount(&first.interest_paid), "5000");
    assert_eq!(amount(&first.principal_paid), "250000");
    assert_eq!(amount(&first.principal_outstanding), "750000");
    assert_eq!(amount(&recorded.lines[0].savings_balance), "20000");
    // 1: interest first (5,000), then 95,000 principal; 905,000 left.
    let second = recorded.lines[1].repayment.as_ref().unwrap();
    assert_eq!(amount(&second.interest_paid), "5000");
    assert_eq!(amount(&second.principal_paid), "95000");
    assert_eq!(amount(&second.principal_outstanding), "905000");
    assert_eq!(amount(&recorded.lines[1].savings_balance), "10000");
    // 2: installment 1 (5,000 + 250,000), then 255,000 ahead; no interest
    // has accrued in week 2 on its first day, so all 255,000 is principal
    // prepaid; 1,000,000 - 505,000 = 495,000 left.
    let third = recorded.lines[2].repayment.as_ref().unwrap();
    assert_eq!(amount(&third.interest_paid), "5000");
    assert_eq!(amount(&third.principal_paid), "505000");
    assert_eq!(amount(&third.principal_prepaid), "255000");
    assert_eq!(amount(&third.principal_outstanding), "495000");
    assert!(recorded.lines[2].savings_balance.is_none());
    // 3: a deposit only.
    assert!(recorded.lines[3].repayment.is_none());
    assert_eq!(amount(&recorded.lines[3].savings_balance), "50000");

    // The books: cash -3,000,000 + 865,000 + 80,000.
    assert_eq!(
        balances(&mut app).await,
        vec![
            "-2055000", "15000", "750000", "905000", "495000", "20000", "10000", "0", "50000"
        ]
    );
    // TB-0003's flat loan: 495,000 re-spread over weeks 2 to 4, 165,000 each,
    // interest kept at 5,000.
    let loan = app.loan("TB-0003/L1", "2024-01-15").await;
    for installment in &loan.schedule[1..] {
        assert_eq!(amount(&installment.principal), "165000");
        assert_eq!(amount(&installment.interest), "5000");
    }

    // One journal entry, its postings merged by account.
    let entry = app
        .audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: receipt.sequence,
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .remove(0);
    assert_eq!(entry.command, "record_collection_sheet");
    assert_eq!(entry.request_id, "sheet-1");
    let mut postings: Vec<(String, i32, String)> = entry
        .postings
        .iter()
        .map(|p| (p.account.clone(), p.side, amount(&p.amount).to_owned()))
        .collect();
    postings.sort();
    let debit = pb::PostingSide::Debit as i32;
    let credit = pb::PostingSide::Credit as i32;
    let mut expected = vec![
        ("cash:TB".to_owned(), debit, "945000".to_owned()),
        ("interest-income:TB".to_owned(), credit, "15000".to_owned()),
        ("loan:TB-0001/L1".to_owned(), credit, "250000".to_owned()),
        ("loan:TB-0002/L1".to_owned(), credit, "95000".to_owned()),
        ("loan:TB-0003/L1".to_owned(), credit, "505000".to_owned()),
        ("savings:TB-0001/C1".to_owned(), credit, "20000".to_owned()),
        ("savings:TB-0002/C1".to_owned(), credit, "10000".to_owned()),
        ("savings:TB-0004/C1".to_owned(), credit, "50000".to_owned()),
    ];
    expected.sort();
    assert_eq!(postings, expected);
}

#[tokio::test]
async fn one_bad_line_refuses_the_whole_sheet_naming_the_line() {
    let mut app = center().await;
    let before = all_books(&mut app).await;
    let with = |index: usize, bad: pb::CollectionLine| {
        let mut lines = meeting();
        if index == lines.len() {
            lines.push(bad);
        } else {
            lines[index] = bad;
        }
        lines
    };
    let cases: Vec<(Vec<pb::CollectionLine>, Code, &str)> = vec![
        // TB-0003's loan is paid off on 15 January by 255,000 due + 750,000
        // not yet due = 1,005,000 (no interest accrued yet in week 2).
        (
            with(2, line("TB-0003", Some(("TB-0003/L1", "1005001")), None)),
            Code::FailedPrecondition,
            "lines[2].repayment",
        ),
        // TB-0005 meets at TB-C02.
        (
            with(1, line("TB-0005", None, Some(("TB-0005/C1", "10000")))),
            Code::FailedPrecondition,
            "lines[1].member_id",
        ),
        (
            with(3, line("TB-0004", None, Some(("TB-0004/V9", "50000")))),
            Code::NotFound,
            "lines[3].savings_account_id",
        ),
        (
            with(3, line("TB-9999", None, Some(("TB-0004/C1", "50000")))),
            Code::NotFound,
            "lines[3].member_id",
        ),
        // The same loan on two lines.
        (
            with(4, line("TB-0001", Some(("TB-0001/L1", "1000")), None)),
            Code::InvalidArgument,
            "lines[4].loan_id",
        ),
        // The same account on two lines.
        (
            with(4, line("TB-0004", None, Some(("TB-0004/C1", "1000")))),
            Code::InvalidArgument,
            "lines[4].savings_account_id",
        ),
        // Another member's loan.
        (
            with(3, line("TB-0004", Some(("TB-0001/L1", "1000")), None)),
            Code::FailedPrecondition,
            "lines[3].loan_id",
        ),
        (
            with(1, line("TB-0002", Some(("TB-0002/L1", "100.5")), None)),
            Code::InvalidArgument,
            "lines[1].repayment.amount",
        ),
        (
            with(3, line("TB-0004", None, None)),
            Code::InvalidArgument,
            "has neither a repayment nor a deposit",
        ),
    ];
    for (i, (lines, code, field)) in cases.into_iter().enumerate() {
        let status = sheet(&mut app, &format!("bad-sheet-{i}"), lines)
            .await
            .unwrap_err();
        assert_refused(&status, code, field);
        // Nothing written: no entry, and none of the good lines applied.
        assert_eq!(all_books(&mut app).await, before, "case {i}");
    }
    let loan = app.loan("TB-0003/L1", "2024-01-15").await;
    assert_eq!(amount(&loan.principal_outstanding), "1000000");
    assert_eq!(amount(&loan.schedule[1].principal), "250000");
    // The good sheet still goes through afterwards.
    sheet(&mut app, "good-sheet", meeting()).await.unwrap();
    assert_eq!(app.last_sequence().await, before.head.last_sequence + 1);
}

#[tokio::test]
async fn a_sheet_sent_twice_is_recorded_once() {
    let mut app = center().await;
    let first = sheet(&mut app, "sheet-1", meeting()).await.unwrap();
    let after = all_books(&mut app).await;
    let again = sheet(&mut app, "sheet-1", meeting()).await.unwrap();
    assert_eq!(again, first, "the same receipt and allocations");
    assert_eq!(all_books(&mut app).await, after, "applied once");
    assert_eq!(
        balances(&mut app).await[0],
        "-2055000",
        "cash: -3,000,000 + 945,000, once"
    );
    // The same request id for a different sheet is refused.
    let mut changed = meeting();
    changed[3] = line("TB-0004", None, Some(("TB-0004/C1", "50001")));
    let status = sheet(&mut app, "sheet-1", changed).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(all_books(&mut app).await, after);
}

#[tokio::test]
async fn reversing_a_sheet_undoes_every_line() {
    let mut app = center().await;
    let untouched = balances(&mut app).await;
    assert_eq!(
        untouched,
        vec![
            "-3000000", "0", "1000000", "1000000", "1000000", "0", "0", "0", "0"
        ]
    );
    let recorded = sheet(&mut app, "sheet-1", meeting()).await.unwrap();
    let sequence = recorded.receipt.unwrap().sequence;

    // TB-0002 pays the rest of installment 1 the next day: 250,000 - 95,000.
    let later = app
        .repay("pay-later", "TB-0002/L1", "155000", "2024-01-16")
        .await
        .unwrap();
    assert_eq!(amount(&later.principal_outstanding), "750000");
    // The sheet is no longer TB-0002's loan's latest transaction.
    let before = all_books(&mut app).await;
    let status = app
        .reverse("reverse-sheet-early", sequence)
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "lines[1].sequence");
    assert_eq!(all_books(&mut app).await, before);

    // Newest first: that repayment, then the sheet.
    app.reverse("reverse-later", later.receipt.unwrap().sequence)
        .await
        .unwrap();
    let reversal = app.reverse("reverse-sheet", sequence).await.unwrap();
    assert_eq!(reversal.receipt.unwrap().effective_date, "2024-01-15");
    // Every line undone: loans, interest, savings and cash as before the meeting.
    assert_eq!(balances(&mut app).await, untouched);
    let loan = app.loan("TB-0003/L1", "2024-01-15").await;
    assert_eq!(amount(&loan.principal_outstanding), "1000000");
    for installment in &loan.schedule {
        assert_eq!(amount(&installment.principal), "250000");
        assert_eq!(amount(&installment.principal_paid), "0");
        assert_eq!(amount(&installment.interest_paid), "0");
    }
    let loan = app.loan("TB-0001/L1", "2024-01-16").await;
    assert_eq!(amount(&loan.principal_overdue), "250000");
    // A reversal is not reversed twice.
    let status = app
        .reverse("reverse-sheet-again", sequence)
        .await
        .unwrap_err();
    assert_refused(&status, Code::FailedPrecondition, "sequence");
}

/// Registers `count` members of TB-G01 (TB-0001...), each with compulsory
/// savings (TB-0001/C1...) and, when `long_loans`, a 10,000,000 VND loan
/// over 520 weeks (so that paying ahead recasts hundreds of installments);
/// returns their ids.
async fn members_of_tb_g01(app: &mut App, count: usize, long_loans: bool) -> Vec<String> {
    let members: Vec<String> = (1..=count).map(|n| format!("TB-{n:04}")).collect();
    let register = members.iter().map(|member| {
        pb::batch_command::Command::RegisterMember(pb::RegisterMemberRequest {
            context: ctx(&format!("register-{member}")),
            member_id: member.clone(),
            full_name: "Nguyễn Thị Hoa".into(),
            group_id: "TB-G01".into(),
            joined_on: "2024-01-02".into(),
        })
    });
    let open = members.iter().map(|member| {
        pb::batch_command::Command::OpenSavingsAccount(pb::OpenSavingsAccountRequest {
            context: ctx(&format!("open-{member}")),
            member_id: member.clone(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: "2024-01-02".into(),
        })
    });
    // 10,000,000 over 520 weeks: about 69,231 a week.
    let disburse = members.iter().filter(|_| long_loans).map(|member| {
        pb::batch_command::Command::DisburseLoan(pb::DisburseLoanRequest {
            context: ctx(&format!("loan-{member}")),
            member_id: member.clone(),
            loan: Some(pb::disburse_loan_request::Loan::Terms(flat_weekly(
                "10000000",
                "26",
                520,
                "2024-01-15",
            ))),
            disbursed_on: "2024-01-08".into(),
        })
    });
    let writes: Vec<_> = register.chain(open).chain(disburse).collect();
    // 20 commands a batch: the reply to 20 disbursements (with their 520
    // installments each) stays under the client's 4 MB message limit.
    for commands in writes.chunks(20) {
        let commands = commands
            .iter()
            .map(|command| pb::BatchCommand {
                command: Some(command.clone()),
            })
            .collect();
        let results = app.submit_batch(commands).await;
        for result in results {
            assert!(
                !matches!(result.result, Some(pb::batch_result::Result::Error(_))),
                "{result:?}"
            );
        }
    }
    members
}

/// Reproduces a collection sheet whose journal entry was larger than the
/// journal's record limit: every line paying ahead on a 520-week loan stores
/// a recast of its 519 remaining installments, before and after (about
/// 15 KB), so 75 such lines make an entry of about 1.15 MB, over the
/// journal's 1 MiB record limit. The store refused the record
/// and then stopped all writes for good. Now the sheet is refused when the
/// writer seals it (`LedgerState::seal_and_keep`, before anything is
/// applied or written), naming `lines`, nothing is written, and the next
/// write is accepted.
#[tokio::test]
async fn a_sheet_too_large_for_the_journal_is_refused_and_writes_go_on() {
    const MEMBERS: usize = 75;
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let members = members_of_tb_g01(&mut app, MEMBERS, true).await;
    let before = books(&mut app, &["cash:TB", "loan:TB-0001/L1"]).await;
    // Each pays 1,000,000: her first installment, and the rest ahead.
    let lines = members
        .iter()
        .map(|member| line(member, Some((&format!("{member}/L1"), "1000000")), None))
        .collect();
    let status = sheet(&mut app, "sheet-too-large", lines).await.unwrap_err();
    assert_refused(&status, Code::InvalidArgument, "lines");
    assert!(status.message().contains("bytes"), "{}", status.message());
    assert_eq!(
        books(&mut app, &["cash:TB", "loan:TB-0001/L1"]).await,
        before,
        "nothing written"
    );

    // The ledger still writes: a smaller sheet, then a deposit.
    let lines = members[..10]
        .iter()
        .map(|member| line(member, Some((&format!("{member}/L1"), "1000000")), None))
        .collect();
    sheet(&mut app, "sheet-of-ten", lines).await.unwrap();
    app.deposit("after", "TB-0075/C1", "50000", "2024-01-15")
        .await
        .unwrap();
    assert_eq!(app.last_sequence().await, before.head.last_sequence + 2);
}

/// The byte bound of a journal page, with entries large enough to reach it
/// (the other paging tests use small entries that never do). Sheets of 300
/// deposit lines make journal entries of about 15 KB on the wire (one
/// posting per savings account): a page asked for 100 entries stops at its
/// 1 MiB bound, holds at least one entry, and the next page goes on from the
/// entry that did not fit, every entry once. (A page also reads the journal
/// only a few entries past what it returns; that is not visible over gRPC
/// and not what this test checks.)
#[tokio::test]
async fn a_journal_page_of_large_entries_stops_at_its_byte_bound() {
    const SHEETS: usize = 100;
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let members = members_of_tb_g01(&mut app, 300, false).await;
    let first_sheet = app.last_sequence().await + 1;
    for round in 0..SHEETS {
        let lines = members
            .iter()
            .map(|member| line(member, None, Some((&format!("{member}/C1"), "10000"))))
            .collect();
        sheet(&mut app, &format!("sheet-{round}"), lines)
            .await
            .unwrap();
    }
    let last = app.last_sequence().await;
    let mut from = first_sheet;
    let mut seen = Vec::new();
    let mut pages = 0;
    while from != 0 {
        let page = app
            .audit
            .list_journal_entries(pb::ListJournalEntriesRequest {
                from_sequence: from,
                page_size: 100,
            })
            .await
            .unwrap()
            .into_inner();
        let bytes = prost::Message::encoded_len(&page);
        assert!(!page.entries.is_empty(), "a page holds at least one entry");
        assert!(
            bytes <= mfi_ledger::api::pages::PAGE_BYTES_MAX,
            "a page of {bytes} bytes"
        );
        seen.extend(page.entries.iter().map(|e| e.sequence));
        from = page.next_sequence;
        pages += 1;
    }
    assert!(pages > 1, "{SHEETS} sheets of 300 lines fit one page");
    assert_eq!(seen, (first_sheet..=last).collect::<Vec<_>>());
}
