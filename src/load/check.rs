//! The verification after a run against the ledger: every acknowledged
//! command must be in the journal at the sequence its receipt gave, under its
//! request id and command name; then the branch's cash and every savings
//! account must hold what the applied commands add up to.
//!
//! The journal is read page by page from the first sequence after the setup
//! to the head, walking the acknowledgements sorted by sequence beside it.
//! An entry of this run that was never acknowledged (its call timed out or
//! lost its connection) is legal: it is counted, and its amount is included
//! in the expected balances.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::cli::connect::Conn;
use anyhow::{Context, anyhow};
use tokio::task::JoinSet;

use super::drive::{Ack, Outcome};
use super::workload::{Kind, PRINCIPAL_VND, Workload};
use crate::pb;
use crate::pb::audit_service_client::AuditServiceClient;

/// Entries per journal page (the service's largest).
const PAGE_SIZE: u32 = 1000;
/// Journal pages asked for ahead of the one being walked.
const PAGES_AHEAD: usize = 4;
/// Balance reads in flight at once.
const READS_IN_FLIGHT: usize = 16;
/// Mismatches described in the report, at most.
const EXAMPLES_MAX: usize = 5;

/// What the verification found.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// Acknowledged commands checked.
    pub acknowledged: u64,
    /// Journal entries read.
    pub entries_read: u64,
    /// First and last sequence read.
    pub range: (u64, u64),
    /// Acknowledged commands whose entry is missing or is another command.
    pub mismatches: u64,
    /// Entries of this run that were never acknowledged (calls with an
    /// unknown outcome that were applied).
    pub applied_unacknowledged: u64,
    /// Savings accounts (and the branch's cash) whose balance was checked.
    pub balances_checked: u64,
    /// Balances that differ from the applied commands' sum.
    pub balance_mismatches: u64,
    /// A few mismatches, described.
    pub examples: Vec<String>,
    /// How long the verification took.
    pub elapsed: Duration,
}

impl Verification {
    /// Whether everything checked out.
    pub fn passed(&self) -> bool {
        self.mismatches == 0 && self.balance_mismatches == 0
    }

    fn mismatch(&mut self, description: String) {
        self.mismatches += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(description);
        }
    }

    fn balance_mismatch(&mut self, description: String) {
        self.balance_mismatches += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(description);
        }
    }
}

/// The journal's last sequence number.
pub async fn ledger_head(channel: &Conn) -> anyhow::Result<u64> {
    Ok(AuditServiceClient::new(channel.clone())
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .map_err(|s| anyhow!("GetLedgerInfo: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .last_sequence)
}

/// Checks the run's `outcome` against the journal from `first_sequence` (the
/// first entry after the setup) to the head.
pub async fn run(
    channel: &Conn,
    workload: &Workload,
    outcome: &mut Outcome,
    first_sequence: u64,
) -> anyhow::Result<Verification> {
    let started = Instant::now();
    outcome.acks.sort_unstable();
    let acks = &outcome.acks;
    let head = ledger_head(channel).await?;
    let mut walk = Walk {
        workload,
        acks,
        next_ack: 0,
        deposits: vec![0; workload.members() as usize],
        cash_in: 0,
        result: Verification {
            acknowledged: acks.len() as u64,
            range: (first_sequence, head),
            ..Verification::default()
        },
    };

    // Pages are asked for ahead, a few at once, assuming full pages; a short
    // page leaves a gap that is filled before the next page is walked.
    let audit = AuditServiceClient::new(channel.clone());
    let starts = (first_sequence..=head).step_by(PAGE_SIZE as usize);
    let mut ahead = VecDeque::new();
    let mut cursor = first_sequence;
    for start in starts {
        ahead.push_back((start, tokio::spawn(page(audit.clone(), start))));
        if ahead.len() < PAGES_AHEAD {
            continue;
        }
        let (start, entries) = ahead.pop_front().expect("a page");
        cursor = walk_page(&mut walk, &audit, cursor, start, entries.await??, head).await?;
    }
    while let Some((start, entries)) = ahead.pop_front() {
        cursor = walk_page(&mut walk, &audit, cursor, start, entries.await??, head).await?;
    }
    if cursor <= head {
        walk_page(&mut walk, &audit, cursor, head + 1, Vec::new(), head).await?;
    }
    while let Some(ack) = walk.acks.get(walk.next_ack) {
        walk.next_ack += 1;
        walk.result.mismatch(format!(
            "{} acknowledged at sequence {} is past the journal's head {head}",
            workload.request_id(ack.index),
            ack.sequence
        ));
    }

    let Walk {
        deposits,
        cash_in,
        mut result,
        ..
    } = walk;
    check_balances(channel, workload, &deposits, cash_in, &mut result).await?;
    result.elapsed = started.elapsed();
    Ok(result)
}

/// One page of the journal from `from`.
async fn page(
    mut audit: AuditServiceClient<Conn>,
    from: u64,
) -> anyhow::Result<Vec<pb::JournalEntry>> {
    Ok(audit
        .list_journal_entries(pb::ListJournalEntriesRequest {
            from_sequence: from,
            page_size: PAGE_SIZE,
        })
        .await
        .map_err(|s| anyhow!("ListJournalEntries: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .entries)
}

/// Walks the entries from `cursor` up to the page asked for at `start`
/// (reading any gap first), then the page's `entries`; returns the next
/// sequence to walk.
async fn walk_page(
    walk: &mut Walk<'_>,
    audit: &AuditServiceClient<Conn>,
    mut cursor: u64,
    start: u64,
    entries: Vec<pb::JournalEntry>,
    head: u64,
) -> anyhow::Result<u64> {
    while cursor < start.min(head + 1) {
        let gap = page(audit.clone(), cursor).await?;
        let before = cursor;
        for entry in gap.iter().filter(|e| e.sequence < start) {
            cursor = walk.entry(entry, cursor, head);
        }
        if cursor == before {
            break; // The journal ends before `start`.
        }
    }
    for entry in &entries {
        cursor = walk.entry(entry, cursor, head);
    }
    Ok(cursor)
}

/// The verification's state while it walks the journal in sequence order.
struct Walk<'a> {
    workload: &'a Workload,
    /// Acknowledgements sorted by sequence.
    acks: &'a [Ack],
    /// The first acknowledgement not yet matched to an entry.
    next_ack: usize,
    /// Applied deposits per member's savings account.
    deposits: Vec<u64>,
    /// Everything applied commands brought into the branch's cash.
    cash_in: u128,
    result: Verification,
}

impl Walk<'_> {
    /// A command of the run that was applied.
    fn apply(&mut self, n: u64) {
        let op = self.workload.op(n);
        self.cash_in += u128::from(op.amount);
        if op.kind == Kind::Deposit {
            self.deposits[op.member as usize] += op.amount;
        }
    }

    /// Walks `entry` if it is the one at `cursor` (and not past `head`);
    /// returns the next sequence to walk.
    fn entry(&mut self, entry: &pb::JournalEntry, cursor: u64, head: u64) -> u64 {
        if entry.sequence < cursor || entry.sequence > head {
            return cursor; // Already walked (overlapping pages), or after the run.
        }
        self.result.entries_read += 1;
        let workload = self.workload;
        // Acknowledgements before this entry name sequences the journal skipped.
        while let Some(ack) = self
            .acks
            .get(self.next_ack)
            .filter(|a| a.sequence < entry.sequence)
        {
            self.next_ack += 1;
            self.result.mismatch(format!(
                "{} acknowledged at sequence {} is not in the journal",
                workload.request_id(ack.index),
                ack.sequence
            ));
        }
        let mut acknowledged_here = false;
        while let Some(&ack) = self
            .acks
            .get(self.next_ack)
            .filter(|a| a.sequence == entry.sequence)
        {
            self.next_ack += 1;
            let expected_id = workload.request_id(ack.index);
            let expected_command = workload.op(ack.index).kind.command_name();
            if acknowledged_here {
                self.result.mismatch(format!(
                    "{expected_id} acknowledged at sequence {}, which another command also was",
                    ack.sequence
                ));
            } else if entry.request_id != expected_id || entry.command != expected_command {
                self.result.mismatch(format!(
                    "{expected_id} ({expected_command}) acknowledged at sequence {}, \
                     but the entry there is {} ({})",
                    ack.sequence, entry.request_id, entry.command
                ));
            } else {
                self.apply(ack.index);
            }
            acknowledged_here = true;
        }
        if !acknowledged_here && let Some(n) = workload.index_of(&entry.request_id) {
            // A command of this run whose call failed, applied all the same.
            self.result.applied_unacknowledged += 1;
            self.apply(n);
        }
        entry.sequence + 1
    }
}

/// Compares the branch's cash and every savings balance with the sums of
/// the applied commands (the branch is new: everything in it is this run's).
async fn check_balances(
    channel: &Conn,
    workload: &Workload,
    deposits: &[u64],
    cash_in: u128,
    result: &mut Verification,
) -> anyhow::Result<()> {
    let disbursed = i128::from(workload.members()) * i128::from(PRINCIPAL_VND);
    let cash_expected = cash_in as i128 - disbursed;
    let mut wanted: Vec<(String, i128)> =
        vec![(format!("cash:{}", workload.branch_id()), cash_expected)];
    wanted.extend(deposits.iter().enumerate().map(|(m, &sum)| {
        (
            format!("savings:{}", workload.account_id(m as u32)),
            i128::from(sum),
        )
    }));
    let mut in_flight = JoinSet::new();
    let mut wanted = wanted.into_iter();
    loop {
        while in_flight.len() < READS_IN_FLIGHT {
            let Some((account, expected)) = wanted.next() else {
                break;
            };
            let mut audit = AuditServiceClient::new(channel.clone());
            in_flight.spawn(async move {
                let reply = audit
                    .get_balance(pb::GetBalanceRequest {
                        as_of: None,
                        account: account.clone(),
                    })
                    .await
                    .map_err(|s| anyhow!("GetBalance {account}: {:?}: {}", s.code(), s.message()))?
                    .into_inner();
                let text = reply.balance.map(|m| m.amount).unwrap_or_default();
                anyhow::Ok((account, expected, text))
            });
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let (account, expected, text) = done.context("a balance read failed")??;
        result.balances_checked += 1;
        if parse_vnd(&text) != Some(expected) {
            result.balance_mismatch(format!(
                "{account} holds {text}, but the applied commands add up to {expected}"
            ));
        }
    }
    Ok(())
}

/// A whole number of VND ("-12000"), or none.
fn parse_vnd(text: &str) -> Option<i128> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, request_id: &str, command: &str) -> pb::JournalEntry {
        pb::JournalEntry {
            sequence,
            request_id: request_id.to_owned(),
            command: command.to_owned(),
            ..Default::default()
        }
    }

    fn name(workload: &Workload, n: u64) -> &'static str {
        workload.op(n).kind.command_name()
    }

    #[test]
    fn walk_finds_every_kind_of_mismatch() {
        let workload = Workload::new("LGT".into(), 4);
        let id = |n| workload.request_id(n);
        // Command 3 is a deposit, the others repayments.
        let acks = [
            Ack {
                sequence: 10,
                index: 0,
            },
            Ack {
                sequence: 11,
                index: 1,
            },
            Ack {
                sequence: 13,
                index: 2,
            },
            Ack {
                sequence: 15,
                index: 3,
            },
            Ack {
                sequence: 16,
                index: 4,
            },
            Ack {
                sequence: 99,
                index: 6,
            },
        ];
        let mut walk = Walk {
            workload: &workload,
            acks: &acks,
            next_ack: 0,
            deposits: vec![0; 4],
            cash_in: 0,
            result: Verification::default(),
        };
        let entries = [
            entry(10, &id(0), name(&workload, 0)),         // fine
            entry(11, "someone-else", "record_repayment"), // another command
            entry(12, &id(5), name(&workload, 5)),         // applied, never acknowledged
            entry(14, "someone-else", "create_branch"),    // 13 is missing
            entry(15, &id(3), "record_repayment"),         // wrong command name
            entry(16, &id(4), name(&workload, 4)),         // fine
        ];
        let mut cursor = 10;
        for e in &entries {
            cursor = walk.entry(e, cursor, 20);
        }
        // Overlapping pages walk nothing twice; entries past the head are ignored.
        assert_eq!(walk.entry(&entries[0], cursor, 20), cursor);
        assert_eq!(walk.entry(&entry(21, &id(7), "x"), cursor, 20), cursor);
        assert_eq!(cursor, 17);
        assert_eq!(walk.result.entries_read, 6);
        assert_eq!(walk.result.mismatches, 3, "{:?}", walk.result.examples);
        assert_eq!(walk.result.applied_unacknowledged, 1);
        assert_eq!(walk.next_ack, 5, "the ack at 99 is left for the caller");
        let applied: u128 = [0, 4, 5]
            .iter()
            .map(|&n| u128::from(workload.op(n).amount))
            .sum();
        assert_eq!(walk.cash_in, applied);
        assert!(!walk.result.passed());
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_vnd("0"), Some(0));
        assert_eq!(parse_vnd("-999999999000"), Some(-999_999_999_000));
        assert_eq!(parse_vnd("12.5"), None);
        assert_eq!(parse_vnd(""), None);
        assert_eq!(parse_vnd("-"), None);
    }
}
