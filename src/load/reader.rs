//! The reader beside the writers (`--reader`): one client that runs one of
//! the ledger's most expensive reads over the synthetic branch, again and
//! again until the writers stop, with its own latency histogram. What it
//! shows is whether long reads delay the writers' acknowledgements.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cli::connect::Conn;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use tonic::Code;

use super::workload::{SETUP_DATE, Workload};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;

/// Highest read latency tracked, in microseconds.
const LATENCY_MAX_US: u64 = 600_000_000;
/// Largest reply the reader accepts (a page is at most 1 MiB).
const REPLY_SIZE_MAX: usize = 16 << 20;

/// The read the reader loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Reader {
    /// `GetPortfolioQuality` of the branch today (PAR, borrowers, the
    /// repayment rate of the year so far).
    PortfolioQuality,
    /// Every page of `ListLoansInArrears` of the branch today (every loan of
    /// the load is in arrears), 1000 loans a page.
    Arrears,
    /// `GetBranchTotals` of the branch for the setup's year, by product.
    BranchTotals,
}

impl Reader {
    /// The name given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Reader::PortfolioQuality => "portfolio-quality",
            Reader::Arrears => "arrears",
            Reader::BranchTotals => "branch-totals",
        }
    }
}

/// What the reader did.
#[derive(Debug)]
pub struct ReaderLog {
    /// The read looped.
    pub reader: Reader,
    /// Latency of each whole read (every page, for `arrears`), in microseconds.
    pub latency: Histogram<u64>,
    /// Reads that answered.
    pub reads: u64,
    /// RPC calls made (pages count one each).
    pub calls: u64,
    /// Reads that failed, by gRPC code.
    pub errors: std::collections::BTreeMap<i32, u64>,
}

/// Loops `reader` over the workload's branch on `channel` until `stop`.
pub async fn run(
    channel: Conn,
    workload: Arc<Workload>,
    reader: Reader,
    stop: Arc<AtomicBool>,
) -> ReaderLog {
    let mut audit = AuditServiceClient::new(channel).max_decoding_message_size(REPLY_SIZE_MAX);
    let mut log = ReaderLog {
        reader,
        latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds"),
        reads: 0,
        calls: 0,
        errors: std::collections::BTreeMap::new(),
    };
    let branch_id = workload.branch_id().to_owned();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = read_once(&mut audit, &branch_id, reader, &mut log.calls).await;
        let micros = started
            .elapsed()
            .as_micros()
            .min(u128::from(LATENCY_MAX_US)) as u64;
        match result {
            Ok(()) => {
                log.latency.saturating_record(micros.max(1));
                log.reads += 1;
            }
            Err(code) => {
                *log.errors.entry(code as i32).or_default() += 1;
                // A server that refuses this read outright would spin: pause.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    log
}

/// One whole read.
async fn read_once(
    audit: &mut AuditServiceClient<Conn>,
    branch_id: &str,
    reader: Reader,
    calls: &mut u64,
) -> Result<(), Code> {
    match reader {
        Reader::PortfolioQuality => {
            *calls += 1;
            audit
                .get_portfolio_quality(pb::GetPortfolioQualityRequest {
                    branch_id: branch_id.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(|s| s.code())?;
        }
        Reader::BranchTotals => {
            *calls += 1;
            let year = SETUP_DATE[..4].parse().unwrap_or(2024);
            audit
                .get_branch_totals(pb::GetBranchTotalsRequest {
                    as_of_sequence: 0,
                    branch_id: branch_id.to_owned(),
                    period: Some(pb::get_branch_totals_request::Period::Year(year)),
                })
                .await
                .map_err(|s| s.code())?;
        }
        Reader::Arrears => {
            let mut request = pb::ListLoansInArrearsRequest {
                branch_id: branch_id.to_owned(),
                page_size: crate::api::PAGE_SIZE_MAX,
                ..Default::default()
            };
            loop {
                *calls += 1;
                let page = audit
                    .list_loans_in_arrears(request.clone())
                    .await
                    .map_err(|s| s.code())?
                    .into_inner();
                if page.next_page_token.is_empty() {
                    break;
                }
                request.as_of_date = page.as_of_date;
                request.page_token = page.next_page_token;
            }
        }
    }
    Ok(())
}
