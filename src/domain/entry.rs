//! Journal entries: the one record of every accepted command.
//!
//! An [`Entry`] holds the command as the client sent it, what the ledger
//! decided (its [`Outcome`]) and the balanced [`Posting`]s. Its canonical bytes
//! are a version byte followed by the postcard encoding of [`EntryBody`]
//! (length-prefixed strings and sequences, fixed field order), and its hash is
//! `SHA-256(previous hash || canonical bytes)`. Entries are never changed once
//! built; a correction is a new entry that reverses one.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::account::AccountId;
use super::command::{CommandBody, SavingsKind};
use super::ids::{Actor, BranchId, FeeCode, LoanId, ProductId, RequestId, SavingsAccountId};
use super::money::Currency;
use super::product::{FeeCollection, LoanPolicy};
use super::schedule::{Installment, LoanTerms};

/// Version of the canonical encoding; the first byte of every entry's bytes.
pub const ENCODING_VERSION: u8 = 2;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash before the first entry.
pub const GENESIS_HASH: Hash = [0; 32];

/// Debit or credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// Debit.
    Debit,
    /// Credit.
    Credit,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Debit => Side::Credit,
            Side::Credit => Side::Debit,
        }
    }
}

/// One line of an entry: an account moved on one side by a positive amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// Account moved.
    pub account: AccountId,
    /// Debit or credit.
    pub side: Side,
    /// Positive, normalised amount.
    #[serde(with = "crate::domain::codec::decimal")]
    pub amount: Decimal,
}

impl Posting {
    /// A debit of `amount` to `account`.
    pub fn debit(account: AccountId, amount: Decimal) -> Posting {
        Posting {
            account,
            side: Side::Debit,
            amount: amount.normalize(),
        }
    }

    /// A credit of `amount` to `account`.
    pub fn credit(account: AccountId, amount: Decimal) -> Posting {
        Posting {
            account,
            side: Side::Credit,
            amount: amount.normalize(),
        }
    }
}

/// What a repayment paid on one installment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallmentPayment {
    /// 1-based installment number.
    pub number: u32,
    /// Fees paid on it.
    #[serde(with = "crate::domain::codec::decimal")]
    pub fee: Decimal,
    /// Interest paid on it.
    #[serde(with = "crate::domain::codec::decimal")]
    pub interest: Decimal,
    /// Principal paid on it.
    #[serde(with = "crate::domain::codec::decimal")]
    pub principal: Decimal,
}

impl InstallmentPayment {
    /// Fee, interest and principal together.
    pub fn total(&self) -> Decimal {
        self.fee + self.interest + self.principal
    }
}

/// A fee charged on a disbursement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeCharge {
    /// Which fee; its income account is `fee-income:BRANCH/CODE`.
    pub code: FeeCode,
    /// How much.
    #[serde(with = "crate::domain::codec::decimal")]
    pub amount: Decimal,
    /// Deducted at disbursement or due with the next installment.
    pub collection: FeeCollection,
}

/// Installments recomputed after a tranche or a prepayment: the ones from
/// `before[0].number` on, as they were and as they are now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recast {
    /// The installments before the change.
    pub before: Vec<Installment>,
    /// The same installments after it.
    pub after: Vec<Installment>,
}

/// How a payment on a loan was allocated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repayment {
    /// The loan.
    pub loan: LoanId,
    /// What it paid on each installment, oldest first.
    pub payments: Vec<InstallmentPayment>,
    /// Principal paid ahead of the schedule.
    #[serde(with = "crate::domain::codec::decimal")]
    pub prepaid: Decimal,
    /// The installments recomputed because principal was paid ahead.
    pub recast: Option<Recast>,
    /// Collected on a written-off loan (recovery income).
    #[serde(with = "crate::domain::codec::decimal")]
    pub recovery: Decimal,
    /// Principal outstanding after the payment.
    #[serde(with = "crate::domain::codec::decimal")]
    pub principal_outstanding_after: Decimal,
    /// True when it repaid the loan in full.
    pub closed: bool,
}

impl Repayment {
    /// Principal repaid (installments and prepaid).
    pub fn principal(&self) -> Decimal {
        self.payments.iter().map(|p| p.principal).sum::<Decimal>() + self.prepaid
    }

    /// Interest paid.
    pub fn interest(&self) -> Decimal {
        self.payments.iter().map(|p| p.interest).sum()
    }

    /// Fees paid.
    pub fn fees(&self) -> Decimal {
        self.payments.iter().map(|p| p.fee).sum()
    }

    /// Paid on scheduled installments (what arrears are measured against).
    pub fn to_installments(&self) -> Decimal {
        self.payments.iter().map(InstallmentPayment::total).sum()
    }
}

/// An amount moved in or out of a savings account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsAmount {
    /// The account.
    pub account: SavingsAccountId,
    /// The amount (a deposit's amount, or a balance).
    #[serde(with = "crate::domain::codec::decimal")]
    pub amount: Decimal,
}

/// What one line of a collection sheet did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineOutcome {
    /// The repayment's allocation, if the line had one.
    pub repayment: Option<Repayment>,
    /// The deposit's account and the balance after it, if the line had one.
    pub deposit: Option<SavingsAmount>,
}

/// What a reversal undoes, copied from the reversed entry so that applying
/// the reversal needs nothing but itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Undo {
    /// A deposit of `amount` into `account`.
    Deposit {
        account: SavingsAccountId,
        #[serde(with = "crate::domain::codec::decimal")]
        amount: Decimal,
    },
    /// A withdrawal of `amount` from `account`.
    Withdrawal {
        account: SavingsAccountId,
        #[serde(with = "crate::domain::codec::decimal")]
        amount: Decimal,
    },
    /// A loan's disbursement: the loan is cancelled.
    Disbursement {
        loan: LoanId,
        #[serde(with = "crate::domain::codec::decimal")]
        principal: Decimal,
        /// Fees deducted at disbursement.
        #[serde(with = "crate::domain::codec::decimal")]
        fees: Decimal,
    },
    /// A tranche: the principal and the schedule as they were.
    Tranche {
        loan: LoanId,
        #[serde(with = "crate::domain::codec::decimal")]
        amount: Decimal,
        /// Fees deducted at disbursement.
        #[serde(with = "crate::domain::codec::decimal")]
        fees: Decimal,
        recast: Recast,
    },
    /// A repayment's allocation over the loan's installments.
    Repayment(Repayment),
    /// A write-off: the loan is active again.
    WriteOff {
        loan: LoanId,
        #[serde(with = "crate::domain::codec::decimal")]
        principal: Decimal,
    },
    /// A collection sheet: its repayments, and its deposits (account, amount).
    CollectionSheet {
        repayments: Vec<Repayment>,
        deposits: Vec<SavingsAmount>,
    },
}

/// What the ledger decided when it executed a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Structure created (branch, center, group, member).
    Created,
    /// A product version defined.
    ProductDefined { version: u32 },
    /// A savings account opened, with the id the ledger gave it.
    SavingsAccountOpened {
        account: SavingsAccountId,
        kind: SavingsKind,
    },
    /// A deposit or withdrawal, with the account's balance after it.
    SavingsMoved {
        account: SavingsAccountId,
        #[serde(with = "crate::domain::codec::decimal")]
        balance_after: Decimal,
    },
    /// A loan disbursed, with its id, resolved terms, rules and schedule.
    LoanDisbursed {
        loan: LoanId,
        product: Option<(ProductId, u32)>,
        terms: LoanTerms,
        policy: LoanPolicy,
        #[serde(with = "crate::domain::codec::decimal")]
        approved_principal: Decimal,
        currency: Currency,
        fees: Vec<FeeCharge>,
        schedule: Vec<Installment>,
    },
    /// A further tranche and the installments it recomputed.
    TrancheDisbursed {
        loan: LoanId,
        fees: Vec<FeeCharge>,
        recast: Recast,
    },
    /// A repayment's allocation and whether it closed the loan.
    RepaymentAllocated(Repayment),
    /// A loan's outstanding principal written off.
    WrittenOff {
        loan: LoanId,
        #[serde(with = "crate::domain::codec::decimal")]
        principal: Decimal,
    },
    /// A collection sheet, line by line.
    CollectionSheetRecorded { lines: Vec<LineOutcome> },
    /// A reversal of entry `sequence`.
    Reversed { sequence: u64, undo: Undo },
}

/// Everything the hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// Gap-free, from 1.
    pub sequence: u64,
    /// Business date in the branch's time zone.
    #[serde(with = "crate::domain::codec::date")]
    pub effective_date: NaiveDate,
    /// When recorded, microseconds since the Unix epoch, UTC.
    pub recorded_at_micros: i64,
    /// Branch the entry belongs to; none for the institution's product catalogue.
    pub branch: Option<BranchId>,
    /// Who entered it.
    pub actor: Actor,
    /// The client's request id.
    pub request_id: RequestId,
    /// SHA-256 of the normalised request, to tell a retry from a reuse of the id.
    pub request_hash: Hash,
    /// The command as the client sent it.
    pub command: CommandBody,
    /// What the ledger decided.
    pub outcome: Outcome,
    /// Balanced postings.
    pub postings: Vec<Posting>,
    /// Currency of every amount in the entry: that of the books it is in.
    pub currency: Currency,
}

/// A journal entry: its body and the hash chaining it to the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The hashed content.
    pub body: EntryBody,
    /// SHA-256(previous hash || canonical bytes of `body`).
    pub hash: Hash,
    /// The canonical bytes of `body`, computed once.
    pub canonical: Vec<u8>,
}

/// Why stored bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The version byte is not one this build reads.
    #[error("unknown entry encoding version {0}")]
    UnknownVersion(u8),
    /// No bytes at all.
    #[error("empty entry")]
    Empty,
    /// The body does not decode.
    #[error("malformed entry body: {0}")]
    Body(#[from] postcard::Error),
}

impl EntryBody {
    /// The canonical bytes: version byte, then the postcard encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![ENCODING_VERSION];
        postcard::to_io(self, &mut bytes)
            .expect("postcard encodes plain data into a Vec without failing");
        bytes
    }

    /// Decodes canonical bytes.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<EntryBody, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&ENCODING_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&version, _)) => Err(DecodeError::UnknownVersion(version)),
        }
    }

    /// Seals the body into an entry chained to `previous_hash`.
    pub fn seal(self, previous_hash: &Hash) -> Entry {
        let canonical = self.canonical_bytes();
        let hash = chain_hash(previous_hash, &canonical);
        Entry {
            body: self,
            hash,
            canonical,
        }
    }

    /// Sum of debits and sum of credits.
    pub fn totals(&self) -> (Decimal, Decimal) {
        let mut debits = Decimal::ZERO;
        let mut credits = Decimal::ZERO;
        for posting in &self.postings {
            // Each amount is at most 10^18 and an entry has a handful of
            // postings, so these sums cannot overflow a 96-bit decimal.
            match posting.side {
                Side::Debit => debits += posting.amount,
                Side::Credit => credits += posting.amount,
            }
        }
        (debits, credits)
    }

    /// True when debits equal credits and every amount is positive.
    pub fn is_balanced(&self) -> bool {
        let (debits, credits) = self.totals();
        debits == credits && self.postings.iter().all(|p| p.amount > Decimal::ZERO)
    }
}

/// The first fields of an entry's encoding, read without decoding the rest.
#[derive(Deserialize)]
struct EntryHead<'a> {
    sequence: u64,
    _effective_date: i32,
    _recorded_at_micros: i64,
    _branch: Option<&'a str>,
    _actor: &'a str,
    request_id: &'a str,
}

/// The sequence number and request id of an entry, from its canonical bytes,
/// cheaply (for rebuilding the request index at startup).
pub fn peek_request_id(canonical: &[u8]) -> Option<(u64, &str)> {
    match canonical.split_first() {
        Some((&ENCODING_VERSION, rest)) => {
            let (head, _) = postcard::take_from_bytes::<EntryHead>(rest).ok()?;
            Some((head.sequence, head.request_id))
        }
        _ => None,
    }
}

/// `SHA-256(previous || bytes)`.
pub fn chain_hash(previous: &Hash, bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// Largest canonical encoding of one entry, in bytes. A command whose entry
/// would be larger is refused when it is decided (naming the list that made
/// it so), so the journal never meets an entry it cannot hold: the store's
/// record limit (`store::RECORD_LEN_MAX`, 1 MiB, for these bytes and the
/// 32-byte hash) is 64 KiB above it.
pub const ENTRY_BYTES_MAX: usize = 960 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Name;

    fn body(amount: i64) -> EntryBody {
        EntryBody {
            sequence: 7,
            effective_date: NaiveDate::from_ymd_opt(2023, 5, 2).unwrap(),
            recorded_at_micros: 1_700_000_000_000_000,
            branch: Some(BranchId::parse("b", "TB").unwrap()),
            actor: Actor::parse("a", "clerk").unwrap(),
            request_id: RequestId::parse("r", "req-1").unwrap(),
            request_hash: [3; 32],
            command: CommandBody::ReverseEntry {
                sequence: 3,
                reason: Name::parse("reason", "typo").unwrap(),
                effective_date: None,
            },
            outcome: Outcome::Created,
            postings: vec![
                Posting::debit(
                    AccountId::Cash(BranchId::parse("b", "TB").unwrap()),
                    Decimal::new(amount, 0),
                ),
                Posting::credit(
                    AccountId::InterestIncome(BranchId::parse("b", "TB").unwrap()),
                    Decimal::new(amount, 0),
                ),
            ],
            currency: Currency::Vnd,
        }
    }

    #[test]
    fn canonical_bytes_round_trip_and_start_with_the_version() {
        let body = body(5000);
        let bytes = body.canonical_bytes();
        assert_eq!(bytes[0], ENCODING_VERSION);
        assert_eq!(EntryBody::from_canonical_bytes(&bytes).unwrap(), body);
    }

    #[test]
    fn different_entries_give_different_bytes_and_hashes() {
        let a = body(5000).seal(&GENESIS_HASH);
        let b = body(5001).seal(&GENESIS_HASH);
        assert_ne!(a.body.canonical_bytes(), b.body.canonical_bytes());
        assert_ne!(a.hash, b.hash);
        // The same entry after a different predecessor hashes differently.
        assert_ne!(body(5000).seal(&[1; 32]).hash, a.hash);
    }

    #[test]
    fn hash_is_sha256_of_previous_hash_and_bytes() {
        let entry = body(5000).seal(&GENESIS_HASH);
        let mut input = GENESIS_HASH.to_vec();
        input.extend(entry.body.canonical_bytes());
        let expected: Hash = Sha256::digest(&input).into();
        assert_eq!(entry.hash, expected);
    }

    #[test]
    fn the_request_id_can_be_read_without_decoding_the_entry() {
        let bytes = body(5000).canonical_bytes();
        assert_eq!(peek_request_id(&bytes), Some((7, "req-1")));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut bytes = body(1).canonical_bytes();
        bytes[0] = 9;
        assert!(matches!(
            EntryBody::from_canonical_bytes(&bytes),
            Err(DecodeError::UnknownVersion(9))
        ));
    }

    #[test]
    fn balance_check_sees_unequal_sides() {
        let mut b = body(5000);
        assert!(b.is_balanced());
        b.postings[1].amount = Decimal::new(4999, 0);
        assert!(!b.is_balanced());
    }
}
