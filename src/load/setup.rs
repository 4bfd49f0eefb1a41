//! The synthetic branch a run loads, created through the real API: the
//! branch and its center one call each, then the groups, then per member her
//! registration, compulsory savings account and loan. With `SubmitBatch`
//! (tried first) a few batches run at once; a server without it gets the
//! same commands one call each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::connect::Conn;
use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tonic::Code;

use super::drive::{branch_client, code_name};
use super::workload::{
    ACTOR, GROUP_SIZE, INSTALLMENTS, LOAD_DATE, PRINCIPAL_VND, RATE_PERCENT, SETUP_DATE, Workload,
    vnd,
};
use crate::pb;
use crate::pb::batch_command::Command as Write;
use crate::pb::batch_result::Result as Reply;
use crate::pb::branch_service_client::BranchServiceClient;

/// Members whose three commands go in one batch (999 commands).
const MEMBERS_PER_BATCH: u32 = 333;
/// Groups per batch.
const GROUPS_PER_BATCH: u32 = 1000;
/// Batches in flight at once.
const BATCHES_IN_FLIGHT: usize = 4;
/// Unary calls in flight at once (without `SubmitBatch`).
const CALLS_IN_FLIGHT: usize = 32;

/// What the setup did.
#[derive(Clone, Debug)]
pub struct SetupReport {
    /// Commands it sent (all accepted).
    pub commands: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Whether it used `SubmitBatch`.
    pub batched: bool,
}

/// Creates the workload's branch, center, groups, members, savings accounts
/// and loans.
pub async fn run(channel: &Conn, workload: Arc<Workload>) -> anyhow::Result<SetupReport> {
    let started = Instant::now();
    let client = branch_client(channel);
    let total = 2 + u64::from(workload.groups()) + 3 * u64::from(workload.members());
    let progress = progress_bar(total);

    let one = |write| unary(client.clone(), write);
    one(create_branch(&workload)).await?;
    one(create_center(&workload)).await?;
    progress.inc(2);

    let groups: Vec<Vec<Write>> = chunks(workload.groups(), GROUPS_PER_BATCH)
        .map(|range| range.map(|g| create_group(&workload, g)).collect())
        .collect();
    let members: Vec<Vec<Write>> = chunks(workload.members(), MEMBERS_PER_BATCH)
        .map(|range| range.flat_map(|m| member_writes(&workload, m)).collect())
        .collect();

    // Try SubmitBatch on the first batch of groups; fall back to unary calls.
    let mut groups = groups.into_iter();
    let first = groups.next().expect("at least one group");
    let first_len = first.len() as u64;
    let batched = match batch(client.clone(), first.clone()).await {
        Ok(()) => true,
        Err(error) if is_unimplemented(&error) => {
            for write in first {
                one(write).await?;
            }
            false
        }
        Err(error) => return Err(error),
    };
    progress.inc(first_len);
    if batched {
        run_batches(&client, groups.collect(), &progress).await?;
        run_batches(&client, members, &progress).await?;
    } else {
        // Groups on their own; each member's three commands in order.
        run_unary(
            &client,
            groups.flatten().map(|w| vec![w]).collect(),
            &progress,
        )
        .await?;
        let per_member = members
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(<[Write]>::to_vec)
            .collect();
        run_unary(&client, per_member, &progress).await?;
    }
    progress.finish_and_clear();
    Ok(SetupReport {
        commands: total,
        elapsed: started.elapsed(),
        batched,
    })
}

fn progress_bar(total: u64) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("setup [{elapsed_precise}] {bar:24} {human_pos}/{human_len}")
            .expect("valid template"),
    );
    progress
}

/// Ranges `0..n` cut into pieces of at most `size`.
fn chunks(n: u32, size: u32) -> impl Iterator<Item = std::ops::Range<u32>> {
    (0..n.div_ceil(size)).map(move |i| i * size..((i + 1) * size).min(n))
}

/// Sends batches, a few at a time.
async fn run_batches(
    client: &BranchServiceClient<Conn>,
    batches: Vec<Vec<Write>>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut in_flight = JoinSet::new();
    for writes in batches {
        if in_flight.len() >= BATCHES_IN_FLIGHT {
            progress.inc(in_flight.join_next().await.expect("a task")??);
        }
        let client = client.clone();
        in_flight.spawn(async move {
            let len = writes.len() as u64;
            batch(client, writes).await.map(|()| len)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        progress.inc(done??);
    }
    Ok(())
}

/// Sends sequences of writes one call each: the writes of a sequence in
/// order, a few sequences at a time.
async fn run_unary(
    client: &BranchServiceClient<Conn>,
    sequences: Vec<Vec<Write>>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let mut in_flight = JoinSet::new();
    for writes in sequences {
        if in_flight.len() >= CALLS_IN_FLIGHT {
            progress.inc(in_flight.join_next().await.expect("a task")??);
        }
        let client = client.clone();
        in_flight.spawn(async move {
            let len = writes.len() as u64;
            for write in writes {
                unary(client.clone(), write).await?;
            }
            anyhow::Ok(len)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        progress.inc(done??);
    }
    Ok(())
}

/// A refusal of a setup command, naming it.
#[derive(Debug)]
struct Refused {
    code: Code,
    request_id: String,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused: {}: {}",
            self.request_id,
            code_name(self.code as i32),
            self.message
        )
    }
}

impl std::error::Error for Refused {}

fn is_unimplemented(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<Refused>()
        .is_some_and(|refused| refused.code == Code::Unimplemented)
}

/// Sends one batch; every command must be accepted with the reply it asks for.
async fn batch(mut client: BranchServiceClient<Conn>, writes: Vec<Write>) -> anyhow::Result<()> {
    let request = pb::SubmitBatchRequest {
        commands: writes
            .iter()
            .map(|w| pb::BatchCommand {
                command: Some(w.clone()),
            })
            .collect(),
    };
    let results = client
        .submit_batch(request)
        .await
        .map_err(|status| Refused {
            code: status.code(),
            request_id: format!("SubmitBatch of {} setup commands", writes.len()),
            message: status.message().to_owned(),
        })?
        .into_inner()
        .results;
    if results.len() != writes.len() {
        bail!(
            "SubmitBatch answered {} results for {} commands",
            results.len(),
            writes.len()
        );
    }
    for (write, result) in writes.iter().zip(results) {
        let reply = result
            .result
            .ok_or_else(|| anyhow!("{}: empty result", request_id(write)))?;
        if let Reply::Error(error) = &reply {
            return Err(Refused {
                code: Code::from(error.code),
                request_id: request_id(write).to_owned(),
                message: error.message.clone(),
            }
            .into());
        }
        check(write, &reply)?;
    }
    Ok(())
}

/// Sends one write as its own call.
async fn unary(mut client: BranchServiceClient<Conn>, write: Write) -> anyhow::Result<()> {
    let id = request_id(&write).to_owned();
    let refused = |status: tonic::Status| Refused {
        code: status.code(),
        request_id: id.clone(),
        message: status.message().to_owned(),
    };
    let reply = match write.clone() {
        Write::CreateBranch(r) => {
            Reply::CreateBranch(client.create_branch(r).await.map_err(refused)?.into_inner())
        }
        Write::CreateCenter(r) => {
            Reply::CreateCenter(client.create_center(r).await.map_err(refused)?.into_inner())
        }
        Write::CreateGroup(r) => {
            Reply::CreateGroup(client.create_group(r).await.map_err(refused)?.into_inner())
        }
        Write::RegisterMember(r) => Reply::RegisterMember(
            client
                .register_member(r)
                .await
                .map_err(refused)?
                .into_inner(),
        ),
        Write::OpenSavingsAccount(r) => Reply::OpenSavingsAccount(
            client
                .open_savings_account(r)
                .await
                .map_err(refused)?
                .into_inner(),
        ),
        Write::DisburseLoan(r) => {
            Reply::DisburseLoan(client.disburse_loan(r).await.map_err(refused)?.into_inner())
        }
        other => bail!("{}: not a setup command", request_id(&other)),
    };
    check(&write, &reply)
}

/// Checks that a reply is the one the write asks for, and that the ids the
/// ledger gave are those the load will use.
fn check(write: &Write, reply: &Reply) -> anyhow::Result<()> {
    let fits = match (write, reply) {
        (Write::CreateBranch(_), Reply::CreateBranch(_))
        | (Write::CreateCenter(_), Reply::CreateCenter(_))
        | (Write::CreateGroup(_), Reply::CreateGroup(_))
        | (Write::RegisterMember(_), Reply::RegisterMember(_)) => true,
        (Write::OpenSavingsAccount(r), Reply::OpenSavingsAccount(a)) => {
            a.account_id == format!("{}/C1", r.member_id)
        }
        (Write::DisburseLoan(r), Reply::DisburseLoan(l)) => {
            l.loan_id == format!("{}/L1", r.member_id)
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(anyhow!("{}: unexpected reply {reply:?}", request_id(write)))
            .context("the server's reply does not fit the setup command")
    }
}

fn request_id(write: &Write) -> &str {
    let context = match write {
        Write::CreateBranch(r) => &r.context,
        Write::CreateCenter(r) => &r.context,
        Write::CreateGroup(r) => &r.context,
        Write::RegisterMember(r) => &r.context,
        Write::OpenSavingsAccount(r) => &r.context,
        Write::DepositSavings(r) => &r.context,
        Write::WithdrawSavings(r) => &r.context,
        Write::DisburseLoan(r) => &r.context,
        Write::RecordRepayment(r) => &r.context,
        Write::ReverseEntry(r) => &r.context,
        Write::DisburseTranche(r) => &r.context,
        Write::WriteOffLoan(r) => &r.context,
        Write::RecordCollectionSheet(r) => &r.context,
        Write::ClosePeriod(r) => &r.context,
        Write::ReopenPeriod(r) => &r.context,
        Write::PostSavingsInterest(r) => &r.context,
        Write::FundBranch(r) => &r.context,
        Write::ReturnBranchFunding(r) => &r.context,
    };
    context.as_ref().map_or("", |c| c.request_id.as_str())
}

fn context(workload: &Workload, what: &str, index: u32) -> Option<pb::WriteContext> {
    Some(pb::WriteContext {
        request_id: workload.setup_request_id(what, index),
        actor: ACTOR.to_owned(),
    })
}

fn create_branch(workload: &Workload) -> Write {
    Write::CreateBranch(pb::CreateBranchRequest {
        context: context(workload, "branch", 0),
        branch_id: workload.branch_id().to_owned(),
        name: format!("Load test {}", workload.branch_id()),
        time_zone: String::new(),
        currency: "VND".to_owned(),
        compulsory_savings_percent: String::new(),
        opened_on: SETUP_DATE.to_owned(),
    })
}

fn create_center(workload: &Workload) -> Write {
    Write::CreateCenter(pb::CreateCenterRequest {
        context: context(workload, "center", 0),
        center_id: workload.center_id(),
        branch_id: workload.branch_id().to_owned(),
        name: "Load test center".to_owned(),
        opened_on: SETUP_DATE.to_owned(),
    })
}

fn create_group(workload: &Workload, group: u32) -> Write {
    Write::CreateGroup(pb::CreateGroupRequest {
        context: context(workload, "group", group),
        group_id: workload.group_id(group),
        center_id: workload.center_id(),
        name: format!("Load test group {group}"),
        opened_on: SETUP_DATE.to_owned(),
    })
}

/// A member's registration, compulsory savings account and loan, in order.
fn member_writes(workload: &Workload, member: u32) -> [Write; 3] {
    let member_id = workload.member_id(member);
    let terms = pb::LoanTerms {
        principal: Some(vnd(PRINCIPAL_VND)),
        annual_interest_rate_percent: RATE_PERCENT.to_owned(),
        interest_method: pb::InterestMethod::Flat as i32,
        installment_count: INSTALLMENTS,
        repayment_frequency: pb::RepaymentFrequency::Weekly as i32,
        first_repayment_date: LOAD_DATE.to_owned(),
        rounding_multiple: "1000".to_owned(),
    };
    [
        Write::RegisterMember(pb::RegisterMemberRequest {
            context: context(workload, "member", member),
            member_id: member_id.clone(),
            full_name: format!("Thành viên {member}"),
            group_id: workload.group_id(member / GROUP_SIZE),
            joined_on: SETUP_DATE.to_owned(),
        }),
        Write::OpenSavingsAccount(pb::OpenSavingsAccountRequest {
            context: context(workload, "savings", member),
            member_id: member_id.clone(),
            kind: pb::SavingsKind::Compulsory as i32,
            opened_on: SETUP_DATE.to_owned(),
        }),
        Write::DisburseLoan(pb::DisburseLoanRequest {
            context: context(workload, "loan", member),
            member_id,
            loan: Some(pb::disburse_loan_request::Loan::Terms(terms)),
            disbursed_on: SETUP_DATE.to_owned(),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range() {
        let pieces: Vec<_> = chunks(7, 3).collect();
        assert_eq!(pieces, vec![0..3, 3..6, 6..7]);
        assert_eq!(chunks(3, 3).collect::<Vec<_>>(), vec![0..3]);
    }
}
