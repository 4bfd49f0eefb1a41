//! Reads under write load: 64 clients write while one client loops the most
//! expensive reads (portfolio quality, every page of the loans in arrears,
//! branch totals) over a branch of a few thousand loans. Every write is
//! acknowledged and in the journal, every read answers, and the pages of
//! every list RPC cover each item exactly once, each within its size and
//! byte bounds. (Timings are the benchmark's business: `mfi-ledger load
//! --reader ... --compare-without-reader`, see BENCHMARKS.md.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mfi_ledger::api::pages::PAGE_BYTES_MAX;
use mfi_ledger::load::setup;
use mfi_ledger::load::workload::{self, Workload};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use mfi_ledger::pb::product_service_client::ProductServiceClient;
use prost::Message;
use tonic::Code;

use crate::support::{App, TODAY, assert_refused, create_product, product_rules, spawn_app};

/// Loans set up (one member each, all in arrears today: nothing was repaid
/// on them but a few thousand đồng). Setting them up is most of the test's
/// time in a debug build.
const LOANS: u32 = 1000;
/// Clients writing at once.
const WRITERS: u64 = 64;
/// Writes of each writer.
const WRITES_EACH: u64 = 8;

async fn channel(app: &App) -> crate::support::Conn {
    crate::support::connect(app.address, &app.token).await
}

/// Encoded size of a list reply: within the byte bound unless its one item
/// alone is larger.
fn assert_within_bytes(reply: &impl Message, items: usize, what: &str) {
    let bytes = reply.encoded_len();
    assert!(
        bytes <= PAGE_BYTES_MAX || items == 1,
        "a page of {items} {what} is {bytes} bytes, more than the {PAGE_BYTES_MAX} allowed"
    );
}

/// Every page of the loans in arrears in `branch` on `as_of`, `page_size` at
/// a time: each within its bounds; the loan ids in the order given.
async fn arrears_pages(
    audit: &mut AuditServiceClient<crate::support::Conn>,
    branch: &str,
    as_of: &str,
    page_size: u32,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = pb::ListLoansInArrearsRequest {
        branch_id: branch.into(),
        as_of_date: as_of.into(),
        page_size,
        page_token: String::new(),
    };
    let mut ids = Vec::new();
    loop {
        let page = audit
            .list_loans_in_arrears(request.clone())
            .await?
            .into_inner();
        let size_max = if page_size == 0 { 100 } else { page_size };
        assert!(
            page.loans.len() <= size_max as usize,
            "{}",
            page.loans.len()
        );
        assert_within_bytes(&page, page.loans.len(), "loans");
        ids.extend(page.loans.into_iter().map(|l| l.loan_id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        request.page_token = page.next_page_token;
    }
}

/// Each of `ids` once, and they are `expected`.
fn assert_each_once(ids: &[String], expected: &BTreeSet<String>, what: &str) {
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{what}: an item on two pages");
    assert_eq!(
        distinct,
        expected.iter().collect::<BTreeSet<_>>(),
        "{what}: items missing or extra"
    );
}

/// Reproduces: reads held the ledger's read lock on the async workers for a
/// whole scan of the loans while the publisher needed it to acknowledge
/// writes, and no list had pages: ListLoansInArrears answered every loan at
/// once, ListProducts every product, and a journal page of large entries
/// passed 1 MiB. Now 64 writers and a reader looping the longest reads all
/// get their answers, and every list pages within its bounds, each item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_and_reads_answer_while_one_client_loops_the_longest_reads() {
    let app = spawn_app().await;
    let channel = channel(&app).await;
    let workload = Arc::new(Workload::new("RL".into(), LOANS));
    setup::run(&channel, workload.clone()).await.unwrap();
    let branch_id = workload.branch_id().to_owned();
    let products = ["P-A", "P-B", "P-C", "P-D", "P-E"];
    for id in products {
        let rules = product_rules(
            pb::InterestMethod::Flat,
            pb::RepaymentFrequency::Weekly,
            "20",
            10,
        );
        create_product(&app, id, rules).await;
    }
    let every_loan: BTreeSet<String> = (0..LOANS).map(|m| workload.loan_id(m).to_owned()).collect();

    // The reader: the longest reads, in a loop, until the writers are done.
    let writing = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (writing, reads) = (writing.clone(), reads.clone());
        let mut audit = AuditServiceClient::new(channel.clone());
        let (branch_id, every_loan) = (branch_id.clone(), every_loan.clone());
        async move {
            while writing.load(Ordering::SeqCst) {
                audit
                    .get_portfolio_quality(pb::GetPortfolioQualityRequest {
                        branch_id: branch_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("portfolio quality answers");
                let listed = arrears_pages(&mut audit, &branch_id, "", 0)
                    .await
                    .expect("the loans in arrears answer");
                assert_each_once(&listed, &every_loan, "loans in arrears under load");
                audit
                    .get_branch_totals(pb::GetBranchTotalsRequest {
                        as_of_sequence: 0,
                        branch_id: branch_id.clone(),
                        period: Some(pb::get_branch_totals_request::Period::Year(2024)),
                    })
                    .await
                    .expect("branch totals answer");
                reads.fetch_add(3, Ordering::SeqCst);
            }
        }
    });

    // The writers: each its own unary calls, each command its own request id.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = BranchServiceClient::new(channel.clone());
        let workload = workload.clone();
        writers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in writer * WRITES_EACH..(writer + 1) * WRITES_EACH {
                let op = workload.op(n);
                let receipt = match op.kind {
                    workload::Kind::Repayment => client
                        .record_repayment(workload.repayment(n, op))
                        .await
                        .map(|r| r.into_inner().receipt),
                    workload::Kind::Deposit => client
                        .deposit_savings(workload.deposit(n, op))
                        .await
                        .map(|r| r.into_inner().receipt),
                };
                let receipt = receipt.expect("every write is acknowledged");
                acks.push((n, receipt.expect("a receipt").sequence));
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for writer in writers {
        acks.extend(writer.await.unwrap());
    }
    writing.store(false, Ordering::SeqCst);
    reader.await.expect("every read answered");
    assert!(reads.load(Ordering::SeqCst) >= 3, "the reader read");
    assert_eq!(acks.len() as u64, WRITERS * WRITES_EACH);

    // Every acknowledged write is in the journal at its sequence; the pages
    // of the journal cover each entry once, within their bounds.
    let mut audit = AuditServiceClient::new(channel.clone());
    let mut journal: BTreeMap<u64, String> = BTreeMap::new();
    let mut from = 1;
    while from != 0 {
        let page = audit
            .list_journal_entries(pb::ListJournalEntriesRequest {
                from_sequence: from,
                page_size: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!page.entries.is_empty() && page.entries.len() <= 1000);
        assert_within_bytes(&page, page.entries.len(), "journal entries");
        for (offset, entry) in page.entries.iter().enumerate() {
            assert_eq!(entry.sequence, from + offset as u64, "pages are contiguous");
            journal.insert(entry.sequence, entry.request_id.clone());
        }
        from = page.next_sequence;
        assert!(from == 0 || from == page.entries.last().unwrap().sequence + 1);
    }
    assert_eq!(journal.len() as u64, *journal.keys().last().unwrap());
    for (n, sequence) in &acks {
        assert_eq!(journal.get(sequence), Some(&workload.request_id(*n)));
    }

    // Pages of every list RPC cover each item exactly once: small pages and
    // the largest.
    for page_size in [1, 7, 1000] {
        let listed = arrears_pages(&mut audit, &branch_id, TODAY, page_size)
            .await
            .unwrap();
        assert_each_once(&listed, &every_loan, "loans in arrears");
        let sorted = listed.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted, "loans in arrears come in loan id order");
    }
    let mut catalogue = ProductServiceClient::new(channel.clone());
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = catalogue
            .list_products(pb::ListProductsRequest {
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.products.len() <= 2);
        assert_within_bytes(&page, page.products.len(), "products");
        listed.extend(page.products.into_iter().map(|p| p.product_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: BTreeSet<String> = products.iter().map(|&p| p.to_owned()).collect();
    assert_each_once(&listed, &expected, "products");
}

/// Reproduces: list requests had no page token to check. A token that is
/// not one the list gave, or that was given for other filters, is refused
/// naming `page_token`, as is a page size past the largest.
#[tokio::test]
async fn a_page_token_of_another_list_or_other_filters_is_refused() {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let channel = channel(&app).await;
    let mut catalogue = ProductServiceClient::new(channel);
    let first = |token: &str| pb::ListLoansInArrearsRequest {
        branch_id: "TB".into(),
        as_of_date: TODAY.into(),
        page_size: 1,
        page_token: token.into(),
    };
    // A token of this list, for another date.
    let other_date = mfi_ledger::api::pages::next_page_token(
        mfi_ledger::api::pages::List::LoansInArrears,
        "TB\n2024-01-01",
        "TB-0001/L1",
    );
    let of_products =
        mfi_ledger::api::pages::next_page_token(mfi_ledger::api::pages::List::Products, "", "P-A");
    for token in [
        "not a token",
        "00",
        other_date.as_str(),
        of_products.as_str(),
    ] {
        let refused = app
            .audit
            .list_loans_in_arrears(first(token))
            .await
            .unwrap_err();
        assert_refused(&refused, Code::InvalidArgument, "page_token");
    }
    let refused = catalogue
        .list_products(pb::ListProductsRequest {
            page_size: 1,
            page_token: "ab".repeat(200),
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "page_token");
    let refused = catalogue
        .list_products(pb::ListProductsRequest {
            page_size: 1001,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "page_size");
}
