//! `ExportBooks`: the books streamed as an auditor's spreadsheet input, on
//! the hand-worked history of `totals.rs` (its trial balance at 2023-12-31
//! is in `books.rs`'s header). Every kind, in CSV and in JSON lines, parses
//! back to the figures the unary RPCs give; the header names the head and
//! the latest checkpoint, the trailer the data's rows and SHA-256.

use std::collections::BTreeMap;

use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
use mfi_ledger::domain::ids::{BranchId, PrincipalId};
use mfi_ledger::pb;
use mfi_ledger::pb::books_service_client::BooksServiceClient;
use mfi_ledger::pb::export_books_response::Part;
use mfi_ledger::pb::proof_service_client::ProofServiceClient;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::support::{
    App, Conn, amount, assert_refused, connect, read_journal, spawn_app, with_token,
};
use crate::totals::history;

async fn books(app: &App) -> BooksServiceClient<Conn> {
    BooksServiceClient::new(connect(app.address, &app.token).await)
}

/// A JSON object's members in the order they were written (a
/// `serde_json::Map` sorts them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ordered, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Ordered, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// Every message of an export, put together.
#[derive(Debug)]
struct Export {
    header: pb::ExportHeader,
    data: Vec<u8>,
    trailer: pb::ExportTrailer,
    /// Each chunk's size and rows done.
    chunks: Vec<(usize, u64)>,
}

impl Export {
    /// The rows as (column, value) pairs in column order: CSV by its
    /// header row, JSON lines by each object's keys (numbers as text).
    fn rows(&self) -> Vec<Vec<(String, String)>> {
        let format = self.header.format();
        match format {
            pb::ExportFormat::Csv => {
                let mut reader = csv::Reader::from_reader(self.data.as_slice());
                let columns: Vec<String> = reader
                    .headers()
                    .unwrap()
                    .iter()
                    .map(str::to_owned)
                    .collect();
                reader
                    .records()
                    .map(|record| {
                        let record = record.unwrap();
                        assert_eq!(record.len(), columns.len());
                        columns
                            .iter()
                            .cloned()
                            .zip(record.iter().map(str::to_owned))
                            .collect()
                    })
                    .collect()
            }
            pb::ExportFormat::JsonLines => {
                let text = std::str::from_utf8(&self.data).unwrap();
                assert!(text.is_empty() || text.ends_with('\n'));
                text.lines()
                    .map(|line| {
                        let Ordered(object) = serde_json::from_str(line).unwrap();
                        object
                            .into_iter()
                            .map(|(key, value)| {
                                let value = match value {
                                    serde_json::Value::String(text) => text,
                                    serde_json::Value::Number(n) => n.to_string(),
                                    other => panic!("{key}: {other} is not text or a number"),
                                };
                                (key, value)
                            })
                            .collect()
                    })
                    .collect()
            }
            other => panic!("format {other:?}"),
        }
    }

    /// The rows as maps from column to value.
    fn maps(&self) -> Vec<BTreeMap<String, String>> {
        self.rows()
            .into_iter()
            .map(|row| row.into_iter().collect())
            .collect()
    }
}

fn request(kind: pb::ExportKind, format: pb::ExportFormat, branch: &str) -> pb::ExportBooksRequest {
    pb::ExportBooksRequest {
        kind: kind as i32,
        format: format as i32,
        branch_id: branch.into(),
        from: String::new(),
        to: String::new(),
    }
}

fn period(mut request: pb::ExportBooksRequest, from: &str, to: &str) -> pb::ExportBooksRequest {
    request.from = from.into();
    request.to = to.into();
    request
}

/// Runs an export to its end and checks its framing: the header first,
/// chunks of at most 64 KiB whose rows done grow, the trailer last with the
/// data's size, rows and SHA-256.
async fn export(
    books: &mut BooksServiceClient<Conn>,
    request: pb::ExportBooksRequest,
) -> Result<Export, Status> {
    let mut stream = books.export_books(request).await?.into_inner();
    let Some(Part::Header(header)) = stream.message().await?.and_then(|m| m.part) else {
        panic!("an export starts with its header");
    };
    let mut data = Vec::new();
    let mut chunks = Vec::new();
    let trailer = loop {
        match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Chunk(chunk)) => {
                assert!(!chunk.data.is_empty() && chunk.data.len() <= 64 * 1024);
                assert!(
                    chunks
                        .last()
                        .is_none_or(|(_, done)| *done <= chunk.rows_done)
                );
                chunks.push((chunk.data.len(), chunk.rows_done));
                data.extend_from_slice(&chunk.data);
            }
            Some(Part::Trailer(trailer)) => break trailer,
            other => panic!("{other:?} in the middle of an export"),
        }
    };
    assert!(
        stream.message().await?.is_none(),
        "nothing after the trailer"
    );
    let export = Export {
        header,
        data,
        trailer,
        chunks,
    };
    assert_eq!(
        export.trailer.sha256,
        hex::encode(Sha256::digest(&export.data))
    );
    assert_eq!(export.trailer.bytes, export.data.len() as u64);
    assert_eq!(export.trailer.rows, export.rows().len() as u64);
    assert_eq!(
        export.chunks.last().map_or(0, |(_, done)| *done),
        export.trailer.rows
    );
    Ok(export)
}

/// The same export in CSV and in JSON lines: the same rows, in the same
/// column order; the CSV one.
async fn both_formats(
    books: &mut BooksServiceClient<Conn>,
    request: pb::ExportBooksRequest,
) -> Export {
    let csv = export(
        books,
        pb::ExportBooksRequest {
            format: pb::ExportFormat::Csv as i32,
            ..request.clone()
        },
    )
    .await
    .unwrap();
    let json = export(
        books,
        pb::ExportBooksRequest {
            format: pb::ExportFormat::JsonLines as i32,
            ..request
        },
    )
    .await
    .unwrap();
    assert_eq!(csv.rows(), json.rows());
    assert!(!csv.rows().is_empty());
    assert_eq!(csv.header.head_sequence, json.header.head_sequence);
    csv
}

fn money(money: &Option<pb::Money>) -> String {
    amount(money).to_owned()
}

fn row(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn the_trial_balance_and_statements_export_as_the_unary_rpcs_give_them() {
    let app = history().await;
    let mut books = books(&app).await;
    let csv = pb::ExportFormat::Csv;

    let trial = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Date("2023-12-31".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let exported = both_formats(
        &mut books,
        period(
            request(pb::ExportKind::TrialBalance, csv, "TB"),
            "",
            "2023-12-31",
        ),
    )
    .await;
    let expected: Vec<_> = trial
        .rows
        .iter()
        .map(|r| {
            row(&[
                ("gl_code", r.gl_code.clone()),
                ("gl_name", r.gl_name.clone()),
                ("line", r.line.clone()),
                ("kind", r.kind().as_str_name()[13..].to_lowercase()),
                ("debits", money(&r.debits)),
                ("credits", money(&r.credits)),
                ("debit_balance", money(&r.debit_balance)),
                ("credit_balance", money(&r.credit_balance)),
                ("currency", "VND".into()),
            ])
        })
        .collect();
    assert_eq!(exported.maps(), expected);
    assert_eq!(exported.header.rows_total, Some(expected.len() as u64));
    assert_eq!(exported.header.to, "2023-12-31");
    // The hand-worked line (books.rs): cash 9,180,999 / 10,050,999.
    let cash = &exported.maps()[0];
    assert_eq!(
        (cash["gl_code"].as_str(), cash["debits"].as_str()),
        ("1011", "9180999")
    );
    assert_eq!(cash["credit_balance"], "870000");

    let sheet = books
        .get_balance_sheet(pb::GetBalanceSheetRequest {
            branch_id: "TB".into(),
            date: "2023-12-31".into(),
            previous_date: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let exported = both_formats(
        &mut books,
        period(
            request(pb::ExportKind::BalanceSheet, csv, "TB"),
            "",
            "2023-12-31",
        ),
    )
    .await;
    let lines = |section: &str, lines: &[pb::StatementLine]| -> Vec<BTreeMap<String, String>> {
        lines
            .iter()
            .map(|l| {
                row(&[
                    ("section", section.to_owned()),
                    ("gl_code", l.gl_code.clone()),
                    ("gl_name", l.gl_name.clone()),
                    ("line", l.line.clone()),
                    ("amount", money(&l.amount)),
                    ("previous_amount", money(&l.previous_amount)),
                    ("currency", "VND".into()),
                ])
            })
            .collect()
    };
    let mut expected = lines("assets", &sheet.assets);
    expected.extend(lines("liabilities", &sheet.liabilities));
    expected.extend(lines("equity", &sheet.equity));
    expected.extend(lines(
        "total",
        &[
            sheet.total_assets.clone().unwrap(),
            sheet.total_liabilities_and_equity.clone().unwrap(),
        ],
    ));
    assert_eq!(exported.maps(), expected);
    assert_eq!(exported.header.previous_to, "2022-12-31");
    let total = exported.maps().iter().rev().nth(1).unwrap().clone();
    assert_eq!(
        (total["amount"].as_str(), total["previous_amount"].as_str()),
        ("1130000", "420000")
    );

    let income = books
        .get_income_statement(pb::GetIncomeStatementRequest {
            branch_id: "TB".into(),
            from: "2023-01-01".into(),
            to: "2023-12-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // From 1 January of to's year when no from is given.
    let exported = both_formats(
        &mut books,
        period(
            request(pb::ExportKind::IncomeStatement, csv, "TB"),
            "",
            "2023-12-31",
        ),
    )
    .await;
    let mut expected = lines("income", &income.income);
    expected.extend(lines("expenses", &income.expenses));
    expected.extend(lines("result", &[income.result.clone().unwrap()]));
    assert_eq!(exported.maps(), expected);
    let header = &exported.header;
    assert_eq!(
        (
            header.from.as_str(),
            header.previous_from.as_str(),
            header.previous_to.as_str()
        ),
        ("2023-01-01", "2022-01-01", "2022-12-31")
    );
    let result = exported.maps().last().unwrap().clone();
    assert_eq!(
        (
            result["amount"].as_str(),
            result["previous_amount"].as_str()
        ),
        ("510000", "100000")
    );
}

#[tokio::test]
async fn the_journal_and_its_postings_export_entry_by_entry() {
    let mut app = history().await;
    let entries = read_journal(&mut app.audit, 100).await;
    let mut books = books(&app).await;

    let exported = both_formats(
        &mut books,
        request(pb::ExportKind::Journal, pb::ExportFormat::Csv, ""),
    )
    .await;
    let expected: Vec<_> = entries
        .iter()
        .map(|e| {
            let debits: Decimal = e
                .postings
                .iter()
                .filter(|p| p.side() == pb::PostingSide::Debit)
                .map(|p| amount(&p.amount).parse::<Decimal>().unwrap())
                .sum();
            row(&[
                ("sequence", e.sequence.to_string()),
                ("effective_date", e.effective_date.clone()),
                ("recorded_at", e.recorded_at.clone()),
                ("branch_id", e.branch_id.clone()),
                ("command", e.command.clone()),
                ("request_id", e.request_id.clone()),
                ("principal", e.principal.clone()),
                ("description", e.description.clone()),
                ("debits_total", debits.to_string()),
                ("currency", "VND".into()),
                ("hash", e.hash.clone()),
            ])
        })
        .collect();
    assert_eq!(exported.maps(), expected);
    assert_eq!(
        exported.rows()[0]
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        [
            "sequence",
            "effective_date",
            "recorded_at",
            "branch_id",
            "command",
            "request_id",
            "principal",
            "description",
            "debits_total",
            "currency",
            "hash"
        ]
    );
    // No from: the export starts with the first entry, and says which day that was.
    assert_eq!(exported.header.from, "");
    assert_eq!(exported.header.rows_total, None);
    let dates: Vec<&str> = entries.iter().map(|e| e.effective_date.as_str()).collect();
    assert_eq!(
        exported.trailer.first_date,
        *dates.iter().min().unwrap(),
        "the earliest date"
    );
    assert_eq!(exported.trailer.last_date, *dates.iter().max().unwrap());

    // The postings: one row per posting, with the account's line and code
    // as the chart lists them.
    let mut accounts = BTreeMap::new();
    let page = books
        .list_accounts(pb::ListAccountsRequest {
            branch_id: String::new(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for account in page.accounts {
        accounts.insert(account.account.clone(), account);
    }
    let exported = both_formats(
        &mut books,
        request(pb::ExportKind::Postings, pb::ExportFormat::Csv, "TB"),
    )
    .await;
    let expected: Vec<_> = entries
        .iter()
        .filter(|e| e.branch_id == "TB")
        .flat_map(|e| e.postings.iter().map(move |p| (e, p)))
        .map(|(e, p)| {
            let chart = &accounts[&p.account];
            row(&[
                ("sequence", e.sequence.to_string()),
                ("effective_date", e.effective_date.clone()),
                ("branch_id", "TB".into()),
                ("account", p.account.clone()),
                ("line", chart.line.clone()),
                ("gl_code", chart.gl_code.clone()),
                ("gl_name", chart.gl_name.clone()),
                (
                    "side",
                    p.side().as_str_name()["POSTING_SIDE_".len()..].to_lowercase(),
                ),
                ("amount", money(&p.amount)),
                ("currency", "VND".into()),
            ])
        })
        .collect();
    assert_eq!(exported.maps(), expected);
}

/// The debits and credits of each line in a postings export, as a trial
/// balance adds them up.
fn sums_by_line(postings: &Export) -> BTreeMap<String, (Decimal, Decimal)> {
    let mut lines: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for row in postings.maps() {
        let amount: Decimal = row["amount"].parse().unwrap();
        let sums = lines.entry(row["line"].clone()).or_default();
        match row["side"].as_str() {
            "debit" => sums.0 += amount,
            "credit" => sums.1 += amount,
            other => panic!("side {other}"),
        }
    }
    lines
}

#[tokio::test]
async fn rows_are_those_of_the_branch_and_the_period() {
    let mut app = history().await;
    app.other_branch("HN", "VND").await;
    app.deposit("hn-save", "HN-0001/C1", "70000", "2024-01-05")
        .await
        .unwrap();
    let entries = read_journal(&mut app.audit, 100).await;
    let mut books = books(&app).await;
    let csv = pb::ExportFormat::Csv;

    // TB's postings through 2023 add up to the hand-worked trial balance.
    let through_2023 = export(
        &mut books,
        period(
            request(pb::ExportKind::Postings, csv, "TB"),
            "",
            "2023-12-31",
        ),
    )
    .await
    .unwrap();
    let d = |text: &str| text.parse::<Decimal>().unwrap();
    assert_eq!(
        sums_by_line(&through_2023),
        BTreeMap::from([
            ("cash".into(), (d("9180999"), d("10050999"))),
            ("interest-income".into(), (d("0"), d("610000"))),
            ("loan-portfolio".into(), (d("10000000"), d("8000000"))),
            ("savings-compulsory".into(), (d("50999"), d("570999"))),
        ])
    );

    // 2023's first half: TB's entries dated in it, and only those.
    let half = export(
        &mut books,
        period(
            request(pb::ExportKind::Journal, csv, "TB"),
            "2023-01-01",
            "2023-06-30",
        ),
    )
    .await
    .unwrap();
    let sequences = |export: &Export| -> Vec<String> {
        export
            .maps()
            .iter()
            .map(|row| row["sequence"].clone())
            .collect()
    };
    let expected: Vec<String> = entries
        .iter()
        .filter(|e| {
            e.branch_id == "TB"
                && e.effective_date.as_str() >= "2023-01-01"
                && e.effective_date.as_str() <= "2023-06-30"
        })
        .map(|e| e.sequence.to_string())
        .collect();
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(sequences(&half), expected);
    assert_eq!(
        (half.header.from.as_str(), half.header.to.as_str()),
        ("2023-01-01", "2023-06-30")
    );
    assert_eq!(half.trailer.first_date, "2023-01-10");
    assert_eq!(half.trailer.last_date, "2023-06-01");

    // HN's postings are HN's deposit; the institution's are both branches'.
    let hn = export(&mut books, request(pb::ExportKind::Postings, csv, "HN"))
        .await
        .unwrap();
    assert_eq!(hn.maps().len(), 2);
    assert!(hn.maps().iter().all(|row| row["branch_id"] == "HN"));
    let all = export(&mut books, request(pb::ExportKind::Postings, csv, ""))
        .await
        .unwrap();
    let tb = export(&mut books, request(pb::ExportKind::Postings, csv, "TB"))
        .await
        .unwrap();
    assert_eq!(all.maps().len(), tb.maps().len() + hn.maps().len());
    // The institution's journal holds the entries of no branch too (access).
    let journal = export(&mut books, request(pb::ExportKind::Journal, csv, ""))
        .await
        .unwrap();
    assert_eq!(journal.maps().len(), entries.len());
    // A day with nothing: no rows, and the trailer still checks out.
    let empty = export(
        &mut books,
        period(
            request(pb::ExportKind::Postings, csv, "TB"),
            "2021-01-01",
            "2021-12-31",
        ),
    )
    .await
    .unwrap();
    assert_eq!(empty.trailer.rows, 0);
    assert_eq!(empty.trailer.first_date, "");
}

#[tokio::test]
async fn the_header_names_the_head_and_the_latest_checkpoint() {
    let mut app = history().await;
    let mut proofs = ProofServiceClient::new(connect(app.address, &app.token).await);
    let mut books = books(&app).await;
    // No checkpoint yet: the header says so.
    let before = export(
        &mut books,
        request(
            pb::ExportKind::TrialBalance,
            pb::ExportFormat::JsonLines,
            "TB",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            before.header.checkpoint_note.as_str(),
            before.header.checkpoint_size
        ),
        ("", 0)
    );
    let checkpoint = proofs
        .create_checkpoint(pb::CreateCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    // An entry after the checkpoint: the head is past it.
    app.deposit("after-checkpoint", "B/C1", "5000", "2024-01-02")
        .await
        .unwrap();
    let info = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let exported = export(
        &mut books,
        request(pb::ExportKind::Journal, pb::ExportFormat::JsonLines, ""),
    )
    .await
    .unwrap();
    let header = &exported.header;
    assert_eq!(header.head_sequence, info.last_sequence);
    assert_eq!(header.head_hash, info.last_hash);
    assert_eq!(header.checkpoint_note, checkpoint.note);
    assert_eq!(header.checkpoint_size, checkpoint.tree_size);
    assert!(header.checkpoint_size < header.head_sequence);
    assert_eq!(header.kind(), pb::ExportKind::Journal);
    assert_eq!(header.format(), pb::ExportFormat::JsonLines);
    assert_eq!(header.to, crate::support::TODAY);
    // The last row is the head.
    let last = exported.maps().last().unwrap().clone();
    assert_eq!(last["sequence"], info.last_sequence.to_string());
    assert_eq!(last["hash"], info.last_hash);
}

#[tokio::test]
async fn bad_requests_and_callers_are_refused_by_name() {
    let app = history().await;
    let mut books = books(&app).await;
    let csv = pb::ExportFormat::Csv;
    let postings = request(pb::ExportKind::Postings, csv, "TB");
    let cases = [
        (
            request(pb::ExportKind::Unspecified, csv, "TB"),
            Code::InvalidArgument,
            "kind",
        ),
        (
            pb::ExportBooksRequest {
                kind: 99,
                ..postings.clone()
            },
            Code::InvalidArgument,
            "kind",
        ),
        (
            pb::ExportBooksRequest {
                format: 0,
                ..postings.clone()
            },
            Code::InvalidArgument,
            "format",
        ),
        (
            period(postings.clone(), "2023-02-30", ""),
            Code::InvalidArgument,
            "from",
        ),
        (
            period(postings.clone(), "", "31/12/2023"),
            Code::InvalidArgument,
            "to",
        ),
        (
            period(postings.clone(), "2023-12-31", "2023-01-01"),
            Code::InvalidArgument,
            "from",
        ),
        // From after today, when to is today.
        (
            period(postings.clone(), "2099-01-01", ""),
            Code::InvalidArgument,
            "from",
        ),
        (
            period(
                request(pb::ExportKind::TrialBalance, csv, "TB"),
                "2023-01-01",
                "2023-12-31",
            ),
            Code::InvalidArgument,
            "from",
        ),
        (
            request(pb::ExportKind::Postings, csv, "XX"),
            Code::NotFound,
            "branch_id",
        ),
        (
            request(pb::ExportKind::Journal, csv, "XX"),
            Code::NotFound,
            "branch_id",
        ),
        (
            request(pb::ExportKind::Postings, csv, "no spaces"),
            Code::InvalidArgument,
            "branch_id",
        ),
    ];
    for (request, code, field) in cases {
        let refused = export(&mut books, request.clone()).await.unwrap_err();
        assert_refused(&refused, code, field);
    }

    // A clerk of TB exports TB's books, not HN's nor the journal.
    let admin = PrincipalId::parse("p", mfi_ledger::auth::FIRST_ADMINISTRATOR).unwrap();
    let grant = RoleGrant {
        role: Role::Clerk,
        scope: Scope::Branch(BranchId::parse("b", "TB").unwrap()),
    };
    let token = mfi_ledger::auth::create_principal_in_process(
        &app.ledger,
        &admin,
        "clerk-tb",
        vec![grant],
        30,
    )
    .await
    .unwrap();
    let mut clerk = BooksServiceClient::new(connect(app.address, &token).await);
    export(&mut clerk, request(pb::ExportKind::Postings, csv, "TB"))
        .await
        .unwrap();
    for request in [
        request(pb::ExportKind::Postings, csv, ""),
        request(pb::ExportKind::TrialBalance, csv, "HN"),
        request(pb::ExportKind::Journal, csv, "TB"),
    ] {
        let refused = export(&mut clerk, request).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
}

/// An export holds one of the server's turns while its client reads it:
/// with two clients that stopped reading, a third export waits for a turn
/// (RESOURCE_EXHAUSTED); when one of them goes away its export stops and
/// the turn is free again. The journal is larger than everything the
/// channel and HTTP/2 windows hold, so the producers do wait.
#[tokio::test]
async fn an_export_holds_a_turn_until_its_client_reads_it_all_or_goes_away() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    app.member("TB-0001").await;
    app.deposits(4000, "2024-03-01").await;
    let slow = || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.address))
            .unwrap()
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .unwrap();
        BooksServiceClient::new(with_token(channel, &app.token))
    };
    let journal = request(pb::ExportKind::Journal, pb::ExportFormat::JsonLines, "");
    let mut readers = Vec::new();
    let mut head = 0;
    for _ in 0..2 {
        let mut stream = slow()
            .await
            .export_books(journal.clone())
            .await
            .unwrap()
            .into_inner();
        let Some(Part::Header(header)) = stream.message().await.unwrap().unwrap().part else {
            panic!("an export starts with its header");
        };
        head = header.head_sequence;
        readers.push(stream);
    }
    let mut books = books(&app).await;
    let busy = export(&mut books, journal.clone()).await.unwrap_err();
    assert_eq!(busy.code(), Code::ResourceExhausted, "{busy:?}");
    // Entries written while the exports wait are not in them.
    for i in 0..10 {
        app.deposit(&format!("late-{i}"), "TB-0001/C1", "1000", "2024-03-02")
            .await
            .unwrap();
    }

    // The first reader goes away: its export stops, and a turn is free.
    drop(readers.remove(0));
    let started = std::time::Instant::now();
    let whole = loop {
        match export(&mut books, journal.clone()).await {
            Ok(whole) => break whole,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "the export of a client gone still holds its turn"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert!(whole.chunks.len() > 10, "{} chunks", whole.chunks.len());
    assert_eq!(whole.header.head_sequence, head + 10);
    assert_eq!(whole.trailer.rows, head + 10);

    // The second reader reads on to the end: the journal up to its head.
    let mut rest = Vec::new();
    let mut stream = readers.remove(0);
    let mut trailer = None;
    while let Some(message) = stream.message().await.unwrap() {
        match message.part {
            Some(Part::Chunk(chunk)) => rest.extend_from_slice(&chunk.data),
            Some(Part::Trailer(last)) => trailer = Some(last),
            other => panic!("{other:?}"),
        }
    }
    let trailer = trailer.expect("a trailer");
    assert_eq!(trailer.rows, head);
    assert_eq!(trailer.sha256, hex::encode(Sha256::digest(&rest)));
    assert!(whole.data.starts_with(&rest) && whole.data.len() > rest.len());
}

/// Runs `scripts/trial-balance-from-export.py` on `export` (and an opening
/// trial balance): its JSON. Python 3 is on every machine that runs these
/// tests; without it the test fails.
fn independent_trial_balance(
    export: &std::path::Path,
    opening: Option<&std::path::Path>,
) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/trial-balance-from-export.py"
    );
    let mut command = std::process::Command::new("python3");
    command.arg(script).arg(export);
    if let Some(opening) = opening {
        command.arg("--opening").arg(opening);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// (line, debits, credits, debit balance, credit balance) of a trial balance's JSON rows.
fn script_rows(trial: &serde_json::Value) -> Vec<[String; 5]> {
    trial["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            [
                "line",
                "debits",
                "credits",
                "debit_balance",
                "credit_balance",
            ]
            .map(|key| row[key].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn an_independent_reader_adds_the_postings_up_to_the_hand_worked_trial_balance() {
    let app = history().await;
    let mut books = books(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let hand_worked: Vec<[String; 5]> = [
        ["cash", "9180999", "10050999", "0", "870000"],
        ["loan-portfolio", "10000000", "8000000", "2000000", "0"],
        ["savings-compulsory", "50999", "570999", "0", "520000"],
        ["interest-income", "0", "610000", "0", "610000"],
    ]
    .iter()
    .map(|row| row.map(str::to_owned))
    .collect();
    for format in [pb::ExportFormat::Csv, pb::ExportFormat::JsonLines] {
        let exported = export(
            &mut books,
            period(
                request(pb::ExportKind::Postings, format, "TB"),
                "",
                "2023-12-31",
            ),
        )
        .await
        .unwrap();
        let file = dir.path().join(format!("postings-{format:?}"));
        std::fs::write(&file, &exported.data).unwrap();
        let trial = independent_trial_balance(&file, None);
        assert_eq!(script_rows(&trial), hand_worked, "{format:?}");
        assert_eq!(trial["total_debits"], "19231998");
        assert_eq!(trial["total_credits"], "19231998");
        assert_eq!(trial["total_debit_balance"], "2000000");
        assert_eq!(trial["postings"], exported.trailer.rows);
    }

    // 2022's closing trial balance and 2023's postings give 2023's closing one.
    let opening = books
        .get_trial_balance(pb::GetTrialBalanceRequest {
            branch_id: "TB".into(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Date("2022-12-31".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let opening_json = serde_json::json!({
        "rows": opening.rows.iter().map(|r| serde_json::json!({
            "gl_code": r.gl_code,
            "gl_name": r.gl_name,
            "line": r.line,
            "debits": {"amount": amount(&r.debits), "currency": "VND"},
            "credits": {"amount": amount(&r.credits), "currency": "VND"},
        })).collect::<Vec<_>>(),
    });
    let opening_file = dir.path().join("tb-2022.json");
    std::fs::write(&opening_file, opening_json.to_string()).unwrap();
    let year = export(
        &mut books,
        period(
            request(pb::ExportKind::Postings, pb::ExportFormat::Csv, "TB"),
            "2023-01-01",
            "2023-12-31",
        ),
    )
    .await
    .unwrap();
    let year_file = dir.path().join("postings-2023.csv");
    std::fs::write(&year_file, &year.data).unwrap();
    let rolled = independent_trial_balance(&year_file, Some(&opening_file));
    assert_eq!(script_rows(&rolled), hand_worked);
}
