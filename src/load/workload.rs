//! What the load sends: the synthetic branch's ids, and the n-th command of a
//! run (kind, loan or account, amount, request id), derived from n alone so
//! that clients need no shared state beyond a counter and the verification
//! can rebuild every command from its index.

use crate::pb;
use crate::pb::batch_command::Command as Write;

/// Principal of every loan set up, in VND.
pub const PRINCIPAL_VND: u64 = 1_000_000_000;
/// Annual flat interest rate of the loans, in percent.
pub const RATE_PERCENT: &str = "18";
/// Installments of every loan (a year of weekly repayments, as TYM's loans).
pub const INSTALLMENTS: u32 = 50;
/// Smallest amount of a command, in VND.
pub const AMOUNT_MIN: u64 = 1_000;
/// Largest amount of a command, in VND.
pub const AMOUNT_MAX: u64 = 9_000;
/// Every this many commands, one is a deposit; the others are repayments.
pub const DEPOSIT_EVERY: u64 = 4;
/// Members per group.
pub const GROUP_SIZE: u32 = 5;
/// Date of the branch, its structure, the accounts and the disbursements.
pub const SETUP_DATE: &str = "2024-01-01";
/// First repayment date of the loans, and business date of every command of
/// the load (in the past, never before the loans' last transaction).
pub const LOAD_DATE: &str = "2024-01-08";
/// Who enters the commands.
pub const ACTOR: &str = "load";
/// Currency of every amount.
pub const CURRENCY: &str = "VND";
/// Journal command names.
pub const REPAYMENT_COMMAND: &str = "record_repayment";
/// Journal command names.
pub const DEPOSIT_COMMAND: &str = "deposit_savings";

/// What a command of the load does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `RecordRepayment` on the member's loan.
    Repayment,
    /// `DepositSavings` into the member's compulsory savings account.
    Deposit,
}

impl Kind {
    /// The command's name in the journal.
    pub fn command_name(self) -> &'static str {
        match self {
            Kind::Repayment => REPAYMENT_COMMAND,
            Kind::Deposit => DEPOSIT_COMMAND,
        }
    }
}

/// The n-th command of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Repayment or deposit.
    pub kind: Kind,
    /// Index of the member (her loan or her compulsory savings account).
    pub member: u32,
    /// Amount in VND, `AMOUNT_MIN..=AMOUNT_MAX`.
    pub amount: u64,
}

/// The synthetic branch of one run and its commands.
#[derive(Debug)]
pub struct Workload {
    prefix: String,
    members: u32,
    stride: u64,
    loan_ids: Vec<String>,
    account_ids: Vec<String>,
}

impl Workload {
    /// The branch `prefix` with `members` members, each with one loan and
    /// one compulsory savings account.
    pub fn new(prefix: String, members: u32) -> Workload {
        assert!(members > 0, "at least one member");
        let member_ids: Vec<String> = (0..members).map(|i| member_id(&prefix, i)).collect();
        Workload {
            stride: stride_for(u64::from(members)),
            loan_ids: member_ids.iter().map(|m| format!("{m}/L1")).collect(),
            account_ids: member_ids.iter().map(|m| format!("{m}/C1")).collect(),
            prefix,
            members,
        }
    }

    /// The branch id, also the prefix of every id and request id of the run.
    pub fn branch_id(&self) -> &str {
        &self.prefix
    }

    /// Members (and loans, and savings accounts).
    pub fn members(&self) -> u32 {
        self.members
    }

    /// The one center.
    pub fn center_id(&self) -> String {
        format!("{}-C1", self.prefix)
    }

    /// Groups of `GROUP_SIZE` members.
    pub fn groups(&self) -> u32 {
        self.members.div_ceil(GROUP_SIZE)
    }

    /// The g-th group.
    pub fn group_id(&self, group: u32) -> String {
        format!("{}-G{group:05}", self.prefix)
    }

    /// The i-th member.
    pub fn member_id(&self, member: u32) -> String {
        member_id(&self.prefix, member)
    }

    /// The i-th member's loan, "MEMBER/L1".
    pub fn loan_id(&self, member: u32) -> &str {
        &self.loan_ids[member as usize]
    }

    /// The i-th member's compulsory savings account, "MEMBER/C1".
    pub fn account_id(&self, member: u32) -> &str {
        &self.account_ids[member as usize]
    }

    /// Request id of a setup command.
    pub fn setup_request_id(&self, what: &str, index: u32) -> String {
        format!("{}:setup:{what}:{index}", self.prefix)
    }

    /// Request id of the n-th command of the load.
    pub fn request_id(&self, n: u64) -> String {
        format!("{}:{n}", self.prefix)
    }

    /// The index of a load command from its request id, if it is one of this run's.
    pub fn index_of(&self, request_id: &str) -> Option<u64> {
        let digits = request_id
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Most commands before some loan could be repaid in full: each member is
    /// chosen once per `members` consecutive repayments, so a loan gets at
    /// most `ceil(repayments / members)` of them, each at most `AMOUNT_MAX`.
    pub fn capacity(&self) -> u64 {
        u64::from(self.members) * (PRINCIPAL_VND / AMOUNT_MAX)
    }

    /// The n-th command: every `DEPOSIT_EVERY`th a deposit, the rest
    /// repayments; within each kind, consecutive commands visit the members
    /// in a fixed scrambled order (a stride coprime with their number), and
    /// the amount is a hash of n.
    pub fn op(&self, n: u64) -> Op {
        let (kind, ordinal) = if n % DEPOSIT_EVERY == DEPOSIT_EVERY - 1 {
            (Kind::Deposit, n / DEPOSIT_EVERY)
        } else {
            (
                Kind::Repayment,
                n / DEPOSIT_EVERY * (DEPOSIT_EVERY - 1) + n % DEPOSIT_EVERY,
            )
        };
        let members = u64::from(self.members);
        let offset = if kind == Kind::Deposit {
            members / 2
        } else {
            0
        };
        let member = ((ordinal % members) * self.stride + offset) % members;
        let amount = AMOUNT_MIN + splitmix64(n) % (AMOUNT_MAX - AMOUNT_MIN + 1);
        Op {
            kind,
            member: member as u32,
            amount,
        }
    }

    /// The write context of the n-th command.
    fn context(&self, n: u64) -> Option<pb::WriteContext> {
        Some(pb::WriteContext {
            request_id: self.request_id(n),
            actor: ACTOR.to_owned(),
        })
    }

    /// The n-th command as a `RecordRepayment` request (`op` a repayment).
    pub fn repayment(&self, n: u64, op: Op) -> pb::RecordRepaymentRequest {
        pb::RecordRepaymentRequest {
            context: self.context(n),
            loan_id: self.loan_id(op.member).to_owned(),
            amount: Some(vnd(op.amount)),
            effective_date: LOAD_DATE.to_owned(),
        }
    }

    /// The n-th command as a `DepositSavings` request (`op` a deposit).
    pub fn deposit(&self, n: u64, op: Op) -> pb::DepositSavingsRequest {
        pb::DepositSavingsRequest {
            context: self.context(n),
            account_id: self.account_id(op.member).to_owned(),
            amount: Some(vnd(op.amount)),
            effective_date: LOAD_DATE.to_owned(),
        }
    }

    /// The n-th command as a batch element.
    pub fn batch_command(&self, n: u64) -> pb::BatchCommand {
        let op = self.op(n);
        let command = match op.kind {
            Kind::Repayment => Write::RecordRepayment(self.repayment(n, op)),
            Kind::Deposit => Write::DepositSavings(self.deposit(n, op)),
        };
        pb::BatchCommand {
            command: Some(command),
        }
    }
}

fn member_id(prefix: &str, member: u32) -> String {
    format!("{prefix}-M{member:06}")
}

/// An amount in VND.
pub fn vnd(amount: u64) -> pb::Money {
    pb::Money {
        amount: amount.to_string(),
        currency: CURRENCY.to_owned(),
    }
}

/// A stride near `members * 0.618` that is coprime with `members`, so that
/// `i * stride mod members` visits every member once per `members` steps.
fn stride_for(members: u64) -> u64 {
    let mut stride = (members * 618 / 1000).max(1);
    while gcd(stride, members) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SplitMix64: a fixed, well-mixed hash of a counter.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_once_per_round_of_each_kind() {
        for members in [1u32, 2, 3, 4, 5, 7, 10, 64, 100, 618, 1000] {
            let workload = Workload::new("LGT".into(), members);
            let mut repaid = vec![0u64; members as usize];
            let mut deposited = vec![0u64; members as usize];
            let rounds = 3;
            let n_max = u64::from(members) * DEPOSIT_EVERY * rounds;
            for n in 0..n_max {
                let op = workload.op(n);
                assert!((AMOUNT_MIN..=AMOUNT_MAX).contains(&op.amount));
                match op.kind {
                    Kind::Repayment => repaid[op.member as usize] += 1,
                    Kind::Deposit => deposited[op.member as usize] += 1,
                }
            }
            let per_round = DEPOSIT_EVERY - 1;
            assert!(repaid.iter().all(|&c| c == rounds * per_round), "{members}");
            assert!(deposited.iter().all(|&c| c == rounds), "{members}");
        }
    }

    #[test]
    fn capacity_never_overpays_a_loan() {
        let workload = Workload::new("LGT".into(), 3);
        let mut paid = [0u64; 3];
        for n in 0..workload.capacity() {
            let op = workload.op(n);
            if op.kind == Kind::Repayment {
                paid[op.member as usize] += op.amount;
            }
        }
        assert!(paid.iter().all(|&p| p <= PRINCIPAL_VND), "{paid:?}");
    }

    #[test]
    fn request_ids_round_trip() {
        let workload = Workload::new("LG1-abcd".into(), 10);
        assert_eq!(workload.index_of(&workload.request_id(12345)), Some(12345));
        assert_eq!(workload.index_of("LG1-abcd:setup:member:1"), None);
        assert_eq!(workload.index_of("LG1-abce:1"), None);
        assert_eq!(workload.index_of("LG1-abcd:"), None);
        assert_eq!(workload.loan_id(3), "LG1-abcd-M000003/L1");
        assert_eq!(workload.account_id(3), "LG1-abcd-M000003/C1");
        assert_eq!(workload.groups(), 2);
    }
}
