//! `mfi-ledger simulate`: a branch's years, driven through a running
//! server's real gRPC API.
//!
//! The simulated branch ([`model::Model`]) holds centers of groups of about
//! five women who borrow under the branch's products, repay and save at
//! weekly center meetings (one collection sheet per meeting), join and
//! leave; a few pay late and a rare loan is written off. Capital funds the
//! branch's cash when it opens, and head office tops it up before any day
//! that would take it below zero. Each day's commands
//! go to the server in order, in `SubmitBatch` calls, and the replies (loan
//! ids and schedules) feed back into the model. A run is deterministic: the
//! same preset, seed and scale give the same commands in the same order, so
//! a server started with `--fixed-clock` writes the same journal, hash for
//! hash.

pub mod model;
pub mod preset;

use std::time::{Duration, Instant};

use crate::cli::connect::Conn;
use crate::cli::output::{Report, count, grouped};
use anyhow::{Context, bail};
use chrono::{Datelike, Days, NaiveDate};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::Decimal;
use serde_json::json;

use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::batch_command::Command as Write;
use crate::pb::branch_service_client::BranchServiceClient;
use crate::pb::product_service_client::ProductServiceClient;

use self::model::{Model, Pending};

/// Most commands in one `SubmitBatch`.
const BATCH_MAX: usize = 1000;
/// Time allowed for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Replies carry schedules: allow large ones.
const REPLY_SIZE_MAX: usize = 64 << 20;

/// Arguments of `simulate`.
#[derive(Args, Clone, Debug)]
pub struct SimulateArgs {
    /// Branch to simulate: "tym-thai-binh" (TYM Thái Bình, 2021 to 2023,
    /// calibrated to its published 2022 and 2023 figures),
    /// "tym-thai-binh-decade" (the same, then seven more years like 2023,
    /// to 2030) or "demo" (a small branch over 2023).
    #[arg(long, default_value = "tym-thai-binh")]
    pub preset: String,
    /// Seed of the simulated choices [default: the preset's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Size of the branch in percent of the preset's (centers, loans,
    /// amounts, savings), for quicker runs of the same shape.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub scale: u32,
    /// Stop after this day (YYYY-MM-DD) [default: the preset's last day].
    #[arg(long, value_name = "DATE")]
    pub until: Option<NaiveDate>,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Token file of a second manager who approves the simulated branch's
    /// write-offs (maker-checker: the principal running the simulation, a
    /// clerk or manager of the branch, cannot approve its own requests).
    #[arg(long, env = "MFI_LEDGER_APPROVER_TOKEN_FILE", value_name = "FILE")]
    pub approver_token_file: Option<std::path::PathBuf>,
}

/// The clients of a run.
struct Clients {
    branch: BranchServiceClient<Conn>,
    /// The approving manager's, if there is one.
    approver: Option<BranchServiceClient<Conn>>,
    products: ProductServiceClient<Conn>,
    audit: AuditServiceClient<Conn>,
}

/// Runs the simulation against `server` and prints a summary (JSON with `json`).
pub async fn run(server: &str, json: bool, args: SimulateArgs) -> anyhow::Result<()> {
    let Some(preset) = preset::preset(&args.preset) else {
        let names: Vec<&str> = preset::presets().iter().map(|p| p.name).collect();
        bail!(
            "--preset {:?} is not a preset; choose one of {}",
            args.preset,
            names.join(", ")
        );
    };
    let preset = preset.scaled(args.scale);
    let seed = args.seed.unwrap_or(preset.seed);
    let end = args.until.unwrap_or(preset.end).min(preset.end);
    if end < preset.start {
        bail!(
            "--until {end} is before the preset's first day {}",
            preset.start
        );
    }
    let channel = crate::cli::connect::endpoint(server, CALL_TIMEOUT)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to the ledger at {server}"))?;
    let approver = match &args.approver_token_file {
        None => None,
        Some(path) => {
            let token = crate::auth::read_secret(path)?;
            let bearer = crate::cli::connect::Bearer::new(Some(&token))?;
            Some(BranchServiceClient::new(
                tonic::service::interceptor::InterceptedService::new(channel.clone(), bearer),
            ))
        }
    };
    let channel = crate::cli::connect::with_credentials(channel)?;
    let mut clients = Clients {
        approver,
        branch: BranchServiceClient::new(channel.clone()).max_decoding_message_size(REPLY_SIZE_MAX),
        products: ProductServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
    };
    let started = Instant::now();
    let mut model = Model::new(preset.clone(), seed);
    let opening = model.opening();
    submit(&mut clients, &mut model, opening, preset.start).await?;
    for request in model.products() {
        clients
            .products
            .create_product(request)
            .await
            .map_err(|s| refused("CreateProduct", &s))?;
    }
    for request in model.savings_products() {
        clients
            .products
            .define_savings_product(request)
            .await
            .map_err(|s| refused("DefineSavingsProduct", &s))?;
    }
    let days = (end - preset.start).num_days() as u64 + 1;
    let bar = progress(days, args.no_progress);
    let mut day = preset.start;
    while day <= end {
        for request in model.product_updates(day) {
            clients
                .products
                .update_product(request)
                .await
                .map_err(|s| refused("UpdateProduct", &s))?;
        }
        let month_end = model.month_end(day);
        submit(&mut clients, &mut model, month_end, day).await?;
        let writes = model.day(day);
        submit(&mut clients, &mut model, writes, day).await?;
        bar.inc(1);
        if day.day() == 1 {
            let t = model.tally;
            bar.set_message(format!(
                "{day}  {} members, {} loans, {} meetings",
                count(t.members),
                count(t.loans),
                count(t.sheets)
            ));
        }
        day = day + Days::new(1);
    }
    // The last month's interest (and, at a year's end, its close), as the
    // first day after the run would do it.
    if let Some(after) = end.succ_opt() {
        let month_end = model.month_end(after);
        submit(&mut clients, &mut model, month_end, after).await?;
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    summary(&mut clients, &model, seed, end, elapsed, json).await
}

fn progress(days: u64, hidden: bool) -> ProgressBar {
    let target = if hidden {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(days), target);
    bar.set_style(
        ProgressStyle::with_template(
            "simulate [{elapsed_precise}] {bar:30} {pos}/{len} days  {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

fn refused(call: &str, status: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{call} refused: {:?}: {}", status.code(), status.message())
}

/// Sends `writes` in order, in batches, and gives each reply to the model.
/// A command that waits for approval (a write-off) ends its batch and is
/// approved by the approving manager before the next command is sent, so
/// that every command takes effect in the simulated order.
async fn submit(
    clients: &mut Clients,
    model: &mut Model,
    writes: Vec<(Write, Pending)>,
    day: NaiveDate,
) -> anyhow::Result<()> {
    let client = &mut clients.branch;
    let mut writes = writes.into_iter().peekable();
    while writes.peek().is_some() {
        let mut chunk: Vec<(Write, Pending)> = Vec::new();
        while chunk.len() < BATCH_MAX {
            let Some(write) = writes.next() else { break };
            let waits = matches!(write.0, Write::WriteOffLoan(_) | Write::ReverseEntry(_));
            chunk.push(write);
            if waits {
                break;
            }
        }
        let (commands, pending): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
        let request = pb::SubmitBatchRequest {
            commands: commands
                .iter()
                .cloned()
                .map(|command| pb::BatchCommand {
                    command: Some(command),
                })
                .collect(),
        };
        let results = client
            .submit_batch(request)
            .await
            .map_err(|s| refused("SubmitBatch", &s))?
            .into_inner()
            .results;
        if results.len() != commands.len() {
            bail!(
                "{} replies to {} commands on {day}",
                results.len(),
                commands.len()
            );
        }
        for ((result, pending), command) in results.into_iter().zip(pending).zip(&commands) {
            match result.result {
                Some(pb::batch_result::Result::Error(error)) => bail!(
                    "the ledger refused a simulated command on {day} (a bug in the simulator or the ledger): {}: {}\n{command:?}",
                    error.code,
                    error.message
                ),
                Some(reply) => {
                    let reply = match waiting_approval(&reply) {
                        None => reply,
                        Some(request) => approve(clients.approver.as_mut(), request, day).await?,
                    };
                    model.settle(pending, &reply, day)?
                }
                None => bail!("an empty reply on {day}"),
            }
        }
    }
    Ok(())
}

/// The pending request a reply says its command waits on.
fn waiting_approval(reply: &pb::batch_result::Result) -> Option<u64> {
    use pb::batch_result::Result as R;
    let pending = match reply {
        R::WriteOffLoan(r) => r.pending.as_ref(),
        R::ReverseEntry(r) => r.pending.as_ref(),
        R::DisburseLoan(r) => r.pending.as_ref(),
        R::DisburseTranche(r) => r.pending.as_ref(),
        _ => None,
    };
    pending.map(|p| p.request)
}

/// Approves `request` as the approving manager: the command's reply.
async fn approve(
    approver: Option<&mut BranchServiceClient<Conn>>,
    request: u64,
    day: NaiveDate,
) -> anyhow::Result<pb::batch_result::Result> {
    let Some(approver) = approver else {
        bail!(
            "a simulated write-off on {day} waits for a manager's approval: give a second \
             manager's token with --approver-token-file"
        );
    };
    let approved = approver
        .approve(pb::ApproveRequest {
            context: Some(pb::WriteContext {
                request_id: format!("sim-approve-{request}"),
                actor: "sim-manager".to_owned(),
            }),
            request,
        })
        .await
        .map_err(|s| refused("Approve", &s))?
        .into_inner();
    approved
        .result
        .and_then(|r| r.result)
        .ok_or_else(|| anyhow::anyhow!("the approval of request {request} had no reply"))
}

/// Prints what the run did and the branch's figures per year, as the ledger computes them.
async fn summary(
    clients: &mut Clients,
    model: &Model,
    seed: u64,
    end: NaiveDate,
    elapsed: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let preset = model.preset();
    let info = clients
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map_err(|s| refused("GetLedgerInfo", &s))?
        .into_inner();
    let mut years = Vec::new();
    for year in preset.start.year()..=end.year() {
        let totals = clients
            .audit
            .get_branch_totals(pb::GetBranchTotalsRequest {
                as_of_sequence: 0,
                branch_id: preset.branch_id.to_owned(),
                period: Some(pb::get_branch_totals_request::Period::Year(year)),
            })
            .await
            .map_err(|s| refused("GetBranchTotals", &s))?
            .into_inner();
        years.push((year, totals.current.unwrap_or_default()));
    }
    let ledger_savings: Decimal = years
        .last()
        .and_then(|(_, t)| t.savings_balance.as_ref())
        .and_then(|m| m.amount.parse().ok())
        .unwrap_or_default();
    if end == preset.end && ledger_savings != model.savings() {
        bail!(
            "the ledger's savings balance {ledger_savings} differs from the {} the simulator deposited",
            model.savings()
        );
    }
    let cash = clients
        .audit
        .get_balance(pb::GetBalanceRequest {
            account: format!("cash:{}", preset.branch_id),
            as_of: None,
        })
        .await
        .map_err(|s| refused("GetBalance", &s))?
        .into_inner();
    let ledger_cash: Decimal = cash
        .balance
        .as_ref()
        .and_then(|m| m.amount.parse().ok())
        .unwrap_or_default();
    if ledger_cash != model.cash() {
        bail!(
            "the ledger's cash {ledger_cash} differs from the {} the simulator moved",
            model.cash()
        );
    }
    let seconds = elapsed.as_secs_f64();
    if json {
        let figures: Vec<_> = years
            .iter()
            .map(|(year, t)| {
                json!({
                    "year": year,
                    "loans_disbursed": t.loans_disbursed,
                    "amount_disbursed": t.amount_disbursed.as_ref().map(|m| m.amount.clone()),
                    "savings_balance": t.savings_balance.as_ref().map(|m| m.amount.clone()),
                    "borrowers": t.borrowers,
                    "borrowers_with_savings": t.borrowers_with_savings,
                })
            })
            .collect();
        let out = json!({
            "preset": preset.name,
            "seed": seed,
            "branch_id": preset.branch_id,
            "first_day": preset.start.to_string(),
            "last_day": end.to_string(),
            "entries": info.last_sequence,
            "last_hash": info.last_hash,
            "seconds": seconds,
            "members": model.tally.members,
            "loans": model.tally.loans,
            "collection_sheets": model.tally.sheets,
            "write_offs": model.tally.write_offs,
            "years": figures,
        });
        // Through `Report`, as every command prints: a reader that stopped
        // reading (`| head`) is not an error.
        return Report {
            text: String::new(),
            json: out,
        }
        .print(true);
    }
    let text = SummaryText {
        preset,
        seed,
        end,
        entries: info.last_sequence,
        last_hash: &info.last_hash,
        seconds,
        tally: model.tally,
        years: &years,
    };
    Report {
        text: text.to_string(),
        json: serde_json::Value::Null,
    }
    .print(false)
}

/// The summary a person reads at the end of a run.
struct SummaryText<'a> {
    preset: &'a preset::Preset,
    seed: u64,
    end: NaiveDate,
    /// Entries in the journal (its head's sequence number).
    entries: u64,
    last_hash: &'a str,
    seconds: f64,
    tally: model::Tally,
    /// Each year's figures, as the ledger computes them.
    years: &'a [(i32, pb::PeriodTotals)],
}

impl std::fmt::Display for SummaryText<'_> {
    /// Counts and amounts with grouped digits, as the CLI shows them; the
    /// journal head's sequence number without, as `journal --from` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (preset, tally) = (self.preset, self.tally);
        let rate = self.entries as f64 / self.seconds.max(1e-9);
        writeln!(
            f,
            "simulated {} ({}) from {} to {}, seed {}",
            preset.branch_name, preset.name, preset.start, self.end, self.seed
        )?;
        writeln!(
            f,
            "{} entries in {:.1} s ({} entries/s): {} members, {} loans, {} collection sheets, {} write-offs",
            count(self.entries),
            self.seconds,
            count(rate.round() as u64),
            count(tally.members),
            count(tally.loans),
            count(tally.sheets),
            count(tally.write_offs)
        )?;
        writeln!(
            f,
            "journal head: entry {} hash {}",
            self.entries, self.last_hash
        )?;
        let amount = |money: &Option<pb::Money>| {
            money
                .as_ref()
                .map_or("0".to_owned(), |m| grouped(&m.amount))
        };
        for (year, t) in self.years {
            writeln!(
                f,
                "{year}: {} loans, {} VND disbursed; savings {} VND at year end; {} of {} borrowers saving",
                count(t.loans_disbursed),
                amount(&t.amount_disbursed),
                amount(&t.savings_balance),
                count(t.borrowers_with_savings),
                count(t.borrowers)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount: &str) -> Option<pb::Money> {
        Some(pb::Money {
            amount: amount.to_owned(),
            currency: "VND".to_owned(),
        })
    }

    #[test]
    fn the_summary_groups_counts_and_amounts_but_not_the_head_sequence() {
        let preset = preset::preset("tym-thai-binh").expect("the preset");
        let year = pb::PeriodTotals {
            loans_disbursed: 2175,
            amount_disbursed: money("71034500000"),
            savings_balance: money("22104250000"),
            borrowers: 5318,
            borrowers_with_savings: 5318,
            ..pb::PeriodTotals::default()
        };
        let text = SummaryText {
            preset: &preset,
            seed: 7,
            end: preset.end,
            entries: 123_456,
            last_hash: "ab12",
            seconds: 24.5,
            tally: model::Tally {
                members: 5_400,
                loans: 6_100,
                sheets: 15_000,
                write_offs: 12,
            },
            years: &[(2023, year)],
        }
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "123,456 entries in 24.5 s (5,039 entries/s): 5,400 members, 6,100 loans, \
             15,000 collection sheets, 12 write-offs"
        );
        assert_eq!(lines[2], "journal head: entry 123456 hash ab12");
        assert_eq!(
            lines[3],
            "2023: 2,175 loans, 71,034,500,000 VND disbursed; savings 22,104,250,000 VND \
             at year end; 5,318 of 5,318 borrowers saving"
        );
    }
}
