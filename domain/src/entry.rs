//! Journal entries: the one record of every accepted command.
//!
//! An [`Entry`] holds the command as the client sent it, what the ledger
//! decided (its [`Outcome`]) and the balanced [`Posting`]s. Its canonical bytes
//! are the encoding version byte, the rules version the entry was decided
//! under (`u16`, little-endian), then the postcard encoding of [`EntryBody`]
//! (length-prefixed strings and sequences, fixed field order); its hash is
//! `SHA-256(previous hash || canonical bytes)`. Entries are never changed once
//! built; a correction is a new entry that reverses one.
//!
//! Versions: encoding version 3 is the first with a compatibility promise:
//! every later release decodes it (decoding dispatches on the version byte,
//! so a new encoding is added beside the old ones, never in place of them).
//! Encoding version 4 is version 3 followed by the entry's [`Attribution`]
//! (the authenticated principal who asked, and who approved): an entry with
//! an attribution is written as version 4, one without (written before
//! access control) as version 3, byte for byte as it always was.
//! Versions from 0xC0 up are never entry encodings: the journal file marks
//! with them how it stores an entry's bytes (0xC0: zstd-compressed), so
//! that a release before such a mark reads it as a newer encoding and
//! refuses the journal instead of misreading it.
//! The rules version names the decision code an entry was decided by, so that
//! `verify` re-decides each entry under its own rules after a rules fix.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::account::AccountId;
use super::command::{Command, CommandBody, FundingSource, SavingsKind};
use super::ids::{
    Actor, BranchId, FeeCode, LoanId, PrincipalId, ProductId, RequestId, SavingsAccountId,
};
use super::money::Currency;
use super::product::{FeeCollection, LoanPolicy};
use super::schedule::{Installment, LoanTerms};
use super::totals::Overflow;

/// Newest version of the canonical encoding this build writes and reads;
/// the first byte of an entry's bytes.
pub const ENCODING_VERSION: u8 = 4;

/// The encoding of entries without an [`Attribution`].
const ENCODING_VERSION_UNATTRIBUTED: u8 = 3;

/// Encoding versions written by development builds before the compatibility
/// promise (version 3): refused with a message saying so.
const ENCODING_VERSIONS_BEFORE_PROMISE: std::ops::RangeInclusive<u8> = 1..=2;

/// Version of the ledger's rules (the decision code of `execute`). A rules
/// fix that changes what any command decides adds a version; the code of
/// every released version is kept so that old entries re-decide as they were.
pub type RulesVersion = u16;

/// The rules this build decides new commands under.
pub const RULES_VERSION_CURRENT: RulesVersion = RULES_VERSION_FUNDING;

/// The rules of the first release with a journal compatibility promise,
/// before access control: entries name no principal. Tests of the money
/// rules alone decide under them.
pub const RULES_VERSION_FIRST: RulesVersion = 1;

/// The first rules version with access control: every entry names the
/// principal who asked, and `execute` refuses a command its roles do not
/// allow. Entries of earlier rules have no principal and no such check.
pub const RULES_VERSION_ACCESS: RulesVersion = 2;

/// The first rules version with branch funding (`FundBranch`,
/// `ReturnBranchFunding`); every other command decides as under version 2.
/// Entries written from then on name it, so that an earlier release, which
/// knows no funding, refuses such a journal with a message naming the
/// version (as the README's downgrade policy says) instead of failing to
/// decode an entry.
pub const RULES_VERSION_FUNDING: RulesVersion = 3;

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
    #[serde(with = "crate::codec::decimal")]
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
    #[serde(with = "crate::codec::decimal")]
    pub fee: Decimal,
    /// Interest paid on it.
    #[serde(with = "crate::codec::decimal")]
    pub interest: Decimal,
    /// Principal paid on it.
    #[serde(with = "crate::codec::decimal")]
    pub principal: Decimal,
}

impl InstallmentPayment {
    /// Fee, interest and principal together, or an overflow.
    pub fn total(&self) -> Result<Decimal, Overflow> {
        checked_sum([self.fee, self.interest, self.principal])
    }
}

/// A fee charged on a disbursement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeCharge {
    /// Which fee; its income account is `fee-income:BRANCH/CODE`.
    pub code: FeeCode,
    /// How much.
    #[serde(with = "crate::codec::decimal")]
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
    #[serde(with = "crate::codec::decimal")]
    pub prepaid: Decimal,
    /// The installments recomputed because principal was paid ahead.
    pub recast: Option<Recast>,
    /// Collected on a written-off loan (recovery income).
    #[serde(with = "crate::codec::decimal")]
    pub recovery: Decimal,
    /// Principal outstanding after the payment.
    #[serde(with = "crate::codec::decimal")]
    pub principal_outstanding_after: Decimal,
    /// True when it repaid the loan in full.
    pub closed: bool,
}

impl Repayment {
    /// Principal repaid (installments and prepaid), or an overflow.
    pub fn principal(&self) -> Result<Decimal, Overflow> {
        let installments = checked_sum(self.payments.iter().map(|p| p.principal))?;
        checked_sum([installments, self.prepaid])
    }

    /// Interest paid, or an overflow.
    pub fn interest(&self) -> Result<Decimal, Overflow> {
        checked_sum(self.payments.iter().map(|p| p.interest))
    }

    /// Fees paid, or an overflow.
    pub fn fees(&self) -> Result<Decimal, Overflow> {
        checked_sum(self.payments.iter().map(|p| p.fee))
    }

    /// Paid on scheduled installments (what arrears are measured against),
    /// or an overflow.
    pub fn to_installments(&self) -> Result<Decimal, Overflow> {
        self.payments
            .iter()
            .try_fold(Decimal::ZERO, |sum, payment| {
                sum.checked_add(payment.total()?).ok_or(Overflow)
            })
    }
}

/// The sum of `values` exactly as `Iterator::sum` gives it (not normalised),
/// or an overflow instead of a panic.
fn checked_sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    values.into_iter().try_fold(Decimal::ZERO, |sum, value| {
        sum.checked_add(value).ok_or(Overflow)
    })
}

/// An amount moved in or out of a savings account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsAmount {
    /// The account.
    pub account: SavingsAccountId,
    /// The amount (a deposit's amount, or a balance).
    #[serde(with = "crate::codec::decimal")]
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
        #[serde(with = "crate::codec::decimal")]
        amount: Decimal,
    },
    /// A withdrawal of `amount` from `account`.
    Withdrawal {
        account: SavingsAccountId,
        #[serde(with = "crate::codec::decimal")]
        amount: Decimal,
    },
    /// A loan's disbursement: the loan is cancelled.
    Disbursement {
        loan: LoanId,
        #[serde(with = "crate::codec::decimal")]
        principal: Decimal,
        /// Fees deducted at disbursement.
        #[serde(with = "crate::codec::decimal")]
        fees: Decimal,
    },
    /// A tranche: the principal and the schedule as they were.
    Tranche {
        loan: LoanId,
        #[serde(with = "crate::codec::decimal")]
        amount: Decimal,
        /// Fees deducted at disbursement.
        #[serde(with = "crate::codec::decimal")]
        fees: Decimal,
        recast: Recast,
    },
    /// A repayment's allocation over the loan's installments.
    Repayment(Repayment),
    /// A write-off: the loan is active again.
    WriteOff {
        loan: LoanId,
        #[serde(with = "crate::codec::decimal")]
        principal: Decimal,
    },
    /// A collection sheet: its repayments, and its deposits (account, amount).
    CollectionSheet {
        repayments: Vec<Repayment>,
        deposits: Vec<SavingsAmount>,
    },
    /// A branch's funding from `source` of `amount` (or, when `returned`,
    /// funds of that amount given back to it). Added with branch funding: at
    /// the end, so older entries decode unchanged.
    Funding {
        source: FundingSource,
        #[serde(with = "crate::codec::decimal")]
        amount: Decimal,
        returned: bool,
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
        #[serde(with = "crate::codec::decimal")]
        balance_after: Decimal,
    },
    /// A loan disbursed, with its id, resolved terms, rules and schedule.
    LoanDisbursed {
        loan: LoanId,
        product: Option<(ProductId, u32)>,
        terms: LoanTerms,
        policy: LoanPolicy,
        #[serde(with = "crate::codec::decimal")]
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
        #[serde(with = "crate::codec::decimal")]
        principal: Decimal,
    },
    /// A collection sheet, line by line.
    CollectionSheetRecorded { lines: Vec<LineOutcome> },
    /// A reversal of entry `sequence`.
    Reversed { sequence: u64, undo: Undo },
    /// Principals, roles or credentials changed (see [`CommandBody::Access`]).
    AccessChanged,
    /// The command needs a second principal's approval: recorded as a
    /// pending request, it changes nothing until a manager of its branch
    /// approves it (before `expires_at_micros`), as a later entry.
    ApprovalRequested { expires_at_micros: i64 },
    /// A branch's books closed through a date; `carried` when the close
    /// carried the year's income and expenses into retained earnings (the
    /// entry's postings).
    PeriodClosed {
        #[serde(with = "crate::codec::date")]
        through: NaiveDate,
        carried: bool,
    },
    /// A branch's books reopened: closed through `closed_through` now
    /// (the day before the reopened date), or not at all.
    PeriodReopened {
        #[serde(with = "crate::codec::date_option")]
        closed_through: Option<NaiveDate>,
    },
    /// Interest posted to savings accounts for the period ending on the
    /// entry's date: the kinds of savings whose period it ends, and each
    /// account credited with its amount (accounts that earned nothing are
    /// left out).
    SavingsInterestPosted {
        kinds: Vec<SavingsKind>,
        credited: Vec<SavingsAmount>,
    },
    /// Money put into a branch's cash from a funding source, or given back
    /// to it, with what the branch holds from that source after it (the
    /// source account's balance, every entry so far counted).
    FundingMoved {
        source: FundingSource,
        #[serde(with = "crate::codec::decimal")]
        balance_after: Decimal,
    },
}

/// Everything the hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// The rules version the entry was decided under. Part of the canonical
    /// bytes, written ahead of the postcard body by [`EntryBody::canonical_bytes`]
    /// (so that it can be read without decoding the body), not by serde.
    #[serde(skip)]
    pub rules_version: RulesVersion,
    /// Gap-free, from 1.
    pub sequence: u64,
    /// Business date in the branch's time zone.
    #[serde(with = "crate::codec::date")]
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
    /// Who asked for it (and who approved it), authenticated. Encoded after
    /// the body (encoding version 4), not by serde.
    #[serde(skip)]
    pub attribution: Option<Attribution>,
}

/// The authenticated principals behind an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The principal whose credential sent the command (the maker, for a
    /// command that needed approval).
    pub principal: PrincipalId,
    /// For a command that needed a second principal's approval
    /// (maker-checker): who approved which pending request.
    pub approval: Option<Approval>,
}

/// A checker's approval of a pending request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Approval {
    /// The principal who approved it.
    pub by: PrincipalId,
    /// The entry that recorded the request as pending.
    pub request: u64,
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
    /// The version byte is not one any release wrote.
    #[error("unknown entry encoding version {0}")]
    UnknownVersion(u8),
    /// Written by a development build before the compatibility promise.
    #[error(
        "entry encoding version {0} was written by a development build before journals were \
         stable; this release reads encoding version {ENCODING_VERSION} and later (re-enter the \
         commands into a new data directory, or use the build that wrote it)"
    )]
    BeforePromise(u8),
    /// Written by a newer release than this build.
    #[error(
        "entry encoding version {0} was written by a newer release of mfi-ledger than this one \
         (which reads up to version {ENCODING_VERSION}); upgrade mfi-ledger to read it"
    )]
    NewerEncoding(u8),
    /// Decided under rules newer than this build's: a server running this
    /// build would decide the next commands under older rules.
    #[error(
        "entry {sequence} was decided under rules version {version}, written by a newer release \
         of mfi-ledger than this one (which decides under rules version {RULES_VERSION_CURRENT}); \
         upgrade mfi-ledger to serve this journal"
    )]
    NewerRules {
        sequence: u64,
        version: RulesVersion,
    },
    /// No bytes at all.
    #[error("empty entry")]
    Empty,
    /// The body does not decode.
    #[error("malformed entry body: {0}")]
    Body(#[from] postcard::Error),
    /// Bytes after the end of the entry's encoding.
    #[error("malformed entry: {0} bytes after its end")]
    Trailing(usize),
}

impl DecodeError {
    /// True when the bytes may well be an entry, of a version this build
    /// does not read (as opposed to damaged bytes).
    pub fn is_version(&self) -> bool {
        matches!(
            self,
            DecodeError::BeforePromise(_)
                | DecodeError::NewerEncoding(_)
                | DecodeError::NewerRules { .. }
        )
    }
}

/// Canonical bytes split by their encoding version: a later encoding adds
/// a variant here and keeps the earlier ones.
enum Layout<'a> {
    /// Version 3: the rules version (`u16`, little-endian), then the
    /// postcard encoding of the body.
    V3 {
        rules_version: RulesVersion,
        body: &'a [u8],
    },
    /// Version 4: as version 3, then the postcard encoding of the entry's
    /// [`Attribution`] (`body` holds both; the body's own encoding ends
    /// where the attribution's begins).
    V4 {
        rules_version: RulesVersion,
        body: &'a [u8],
    },
}

impl<'a> Layout<'a> {
    fn parts(&self) -> (RulesVersion, &'a [u8]) {
        match *self {
            Layout::V3 {
                rules_version,
                body,
            }
            | Layout::V4 {
                rules_version,
                body,
            } => (rules_version, body),
        }
    }
}

/// The one place that dispatches on the version byte.
fn layout(bytes: &[u8]) -> Result<Layout<'_>, DecodeError> {
    fn rules_and_body(rest: &[u8]) -> Result<(RulesVersion, &[u8]), DecodeError> {
        match rest.split_first_chunk::<2>() {
            Some((rules, body)) => Ok((RulesVersion::from_le_bytes(*rules), body)),
            None => Err(DecodeError::Body(postcard::Error::DeserializeUnexpectedEnd)),
        }
    }
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&3, rest)) => {
            let (rules_version, body) = rules_and_body(rest)?;
            Ok(Layout::V3 {
                rules_version,
                body,
            })
        }
        Some((&4, rest)) => {
            let (rules_version, body) = rules_and_body(rest)?;
            Ok(Layout::V4 {
                rules_version,
                body,
            })
        }
        Some((&version, _)) if ENCODING_VERSIONS_BEFORE_PROMISE.contains(&version) => {
            Err(DecodeError::BeforePromise(version))
        }
        Some((&version, _)) if version > ENCODING_VERSION => {
            Err(DecodeError::NewerEncoding(version))
        }
        Some((&version, _)) => Err(DecodeError::UnknownVersion(version)),
    }
}

impl EntryBody {
    /// The command the entry records, as its client sent it (what
    /// [`Command::request_hash`] of the entry was worked out from).
    pub fn client_command(&self) -> Command {
        Command {
            request_id: self.request_id.clone(),
            actor: self.actor.clone(),
            principal: self.attribution.as_ref().map(|a| a.principal.clone()),
            approval: self.attribution.as_ref().and_then(|a| a.approval.clone()),
            body: self.command.clone(),
        }
    }

    /// The canonical bytes: version byte, rules version, the postcard
    /// encoding of the body, then (version 4) that of the attribution.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let version = match self.attribution {
            None => ENCODING_VERSION_UNATTRIBUTED,
            Some(_) => ENCODING_VERSION,
        };
        // Room for a small entry, and about what a line takes for the
        // rest: growing the buffer byte by byte from empty reallocates it
        // many times.
        let mut bytes = Vec::with_capacity(256 + 96 * self.postings.len());
        bytes.push(version);
        bytes.extend_from_slice(&self.rules_version.to_le_bytes());
        crate::codec::encode_into(self, &mut bytes);
        if let Some(attribution) = &self.attribution {
            crate::codec::encode_into(attribution, &mut bytes);
        }
        bytes
    }

    /// Whether `bytes` are exactly [`canonical_bytes`](Self::canonical_bytes),
    /// compared as they are encoded, without writing them out (what
    /// `verify` asks of every stored entry).
    pub fn has_canonical_bytes(&self, bytes: &[u8]) -> bool {
        /// Consumes the expected bytes as the encoder writes them, failing
        /// at the first difference.
        struct Compare<'a>(&'a [u8]);
        impl postcard::ser_flavors::Flavor for Compare<'_> {
            type Output = bool;
            fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
                match self.0.split_first() {
                    Some((&expected, rest)) if expected == byte => {
                        self.0 = rest;
                        Ok(())
                    }
                    _ => Err(postcard::Error::SerializeBufferFull),
                }
            }
            fn try_extend(&mut self, written: &[u8]) -> postcard::Result<()> {
                let (expected, rest) = self
                    .0
                    .split_at_checked(written.len())
                    .ok_or(postcard::Error::SerializeBufferFull)?;
                // The pieces are a few bytes each (a decimal's 16, an id's
                // text): compared in line, every byte's difference folded
                // into one, rather than by a call to `memcmp` per piece,
                // which was 13 % of `verify --chain-only`'s samples.
                let differs = expected
                    .iter()
                    .zip(written)
                    .fold(0u8, |differs, (a, b)| differs | (a ^ b));
                if differs != 0 {
                    return Err(postcard::Error::SerializeBufferFull);
                }
                self.0 = rest;
                Ok(())
            }
            fn finalize(self) -> postcard::Result<bool> {
                Ok(self.0.is_empty())
            }
        }
        let version = match self.attribution {
            None => ENCODING_VERSION_UNATTRIBUTED,
            Some(_) => ENCODING_VERSION,
        };
        let Some(rest) = bytes
            .strip_prefix(&[version])
            .and_then(|rest| rest.strip_prefix(&self.rules_version.to_le_bytes()[..]))
        else {
            return false;
        };
        match &self.attribution {
            None => postcard::serialize_with_flavor(self, Compare(rest)).unwrap_or(false),
            Some(attribution) => {
                /// The body, then its attribution.
                #[derive(Serialize)]
                struct Attributed<'a>(&'a EntryBody, &'a Attribution);
                postcard::serialize_with_flavor(&Attributed(self, attribution), Compare(rest))
                    .unwrap_or(false)
            }
        }
    }

    /// Decodes canonical bytes of any encoding version this build reads.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<EntryBody, DecodeError> {
        match layout(bytes)? {
            Layout::V3 {
                rules_version,
                body,
            } => {
                let mut body: EntryBody = postcard::from_bytes(body)?;
                body.rules_version = rules_version;
                Ok(body)
            }
            Layout::V4 {
                rules_version,
                body,
            } => {
                let (mut body, rest): (EntryBody, _) = postcard::take_from_bytes(body)?;
                let (attribution, rest) = postcard::take_from_bytes(rest)?;
                if !rest.is_empty() {
                    return Err(DecodeError::Trailing(rest.len()));
                }
                body.attribution = Some(attribution);
                body.rules_version = rules_version;
                Ok(body)
            }
        }
    }

    /// Seals the body into an entry chained to `previous_hash`.
    pub fn seal(self, previous_hash: &Hash) -> Entry {
        let canonical = self.canonical_bytes();
        self.sealed_as(canonical, previous_hash)
    }

    /// [`EntryBody::seal`] with its canonical bytes worked out already.
    pub(crate) fn sealed_as(self, canonical: Vec<u8>, previous_hash: &Hash) -> Entry {
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
/// cheaply (for rebuilding the request index at startup). Refuses an entry
/// this build cannot serve: an encoding it does not read, or rules newer
/// than its own (it would decide the next commands under older rules).
pub fn peek_request_id(canonical: &[u8]) -> Result<(u64, &str), DecodeError> {
    let (rules_version, body) = layout(canonical)?.parts();
    let (head, _) = postcard::take_from_bytes::<EntryHead>(body)?;
    if rules_version > RULES_VERSION_CURRENT {
        return Err(DecodeError::NewerRules {
            sequence: head.sequence,
            version: rules_version,
        });
    }
    Ok((head.sequence, head.request_id))
}

/// `SHA-256(previous || bytes)`.
pub fn chain_hash(previous: &Hash, bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// Largest canonical encoding of one entry, in bytes. A command whose entry
/// would be larger is refused when the writer seals it
/// ([`crate::state::LedgerState::seal_and_keep`], naming the list that made
/// it so), so the journal never meets an entry it cannot hold: the store's
/// record limit (`store::RECORD_LEN_MAX`, 1 MiB, for these bytes and the
/// 32-byte hash) is 64 KiB above it.
pub const ENTRY_BYTES_MAX: usize = 960 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Name;

    fn body(amount: i64) -> EntryBody {
        EntryBody {
            rules_version: RULES_VERSION_CURRENT,
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
            attribution: None,
        }
    }

    fn attributed(amount: i64) -> EntryBody {
        EntryBody {
            attribution: Some(Attribution {
                principal: PrincipalId::parse("p", "clerk.tb").unwrap(),
                approval: Some(Approval {
                    by: PrincipalId::parse("p", "manager.tb").unwrap(),
                    request: 5,
                }),
            }),
            ..body(amount)
        }
    }

    #[test]
    fn canonical_bytes_round_trip_and_start_with_the_version() {
        let body = body(5000);
        let bytes = body.canonical_bytes();
        assert_eq!(bytes[0], 3, "an entry without a principal keeps version 3");
        assert_eq!(EntryBody::from_canonical_bytes(&bytes).unwrap(), body);
        let attributed = attributed(5000);
        let bytes = attributed.canonical_bytes();
        assert_eq!(bytes[0], ENCODING_VERSION);
        assert_eq!(EntryBody::from_canonical_bytes(&bytes).unwrap(), attributed);
        assert_eq!(peek_request_id(&bytes).unwrap(), (7, "req-1"));
    }

    /// The check `verify` makes without writing the bytes out agrees with
    /// comparing them: equal bytes pass, a changed, missing or extra byte
    /// fails.
    #[test]
    fn has_canonical_bytes_is_equality_with_the_encoding() {
        for body in [body(5000), attributed(5000)] {
            let bytes = body.canonical_bytes();
            assert!(body.has_canonical_bytes(&bytes));
            for at in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                let mut changed = bytes.clone();
                changed[at] ^= 1;
                assert!(!body.has_canonical_bytes(&changed), "byte {at} changed");
            }
            assert!(!body.has_canonical_bytes(&bytes[..bytes.len() - 1]));
            assert!(!body.has_canonical_bytes(&[bytes.as_slice(), &[0]].concat()));
            assert!(!body.has_canonical_bytes(&[]));
        }
    }

    /// Version 4 is version 3's bytes then the attribution's: the principal
    /// is covered by the hash, and changing it changes the hash.
    #[test]
    fn the_attribution_follows_the_version_3_body_and_is_hashed() {
        let plain = body(5000).canonical_bytes();
        let attributed = attributed(5000);
        let bytes = attributed.canonical_bytes();
        assert_eq!(&bytes[1..plain.len()], &plain[1..]);
        let mut other = attributed.clone();
        other.attribution.as_mut().unwrap().approval = None;
        assert_ne!(
            other.seal(&GENESIS_HASH).hash,
            attributed.seal(&GENESIS_HASH).hash
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            EntryBody::from_canonical_bytes(&trailing),
            Err(DecodeError::Trailing(1))
        ));
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
        assert_eq!(peek_request_id(&bytes).unwrap(), (7, "req-1"));
    }

    /// The encoding is the version byte, the rules version, then the body:
    /// what the fixture journal and every later release rely on.
    #[test]
    fn the_rules_version_follows_the_version_byte_and_round_trips() {
        let mut body = body(5000);
        body.rules_version = 0x0102;
        let bytes = body.canonical_bytes();
        assert_eq!(&bytes[..3], &[3, 0x02, 0x01]);
        assert_eq!(EntryBody::from_canonical_bytes(&bytes).unwrap(), body);
    }

    #[test]
    fn newer_versions_are_refused_as_newer_and_older_as_before_the_promise() {
        let mut bytes = body(1).canonical_bytes();
        bytes[0] = 9;
        let newer = EntryBody::from_canonical_bytes(&bytes).unwrap_err();
        assert!(matches!(newer, DecodeError::NewerEncoding(9)), "{newer}");
        assert!(newer.to_string().contains("newer release"), "{newer}");
        assert!(newer.to_string().contains("upgrade"), "{newer}");
        bytes[0] = 2;
        let old = peek_request_id(&bytes).unwrap_err();
        assert!(matches!(old, DecodeError::BeforePromise(2)), "{old}");
        bytes[0] = 0;
        assert!(matches!(
            EntryBody::from_canonical_bytes(&bytes),
            Err(DecodeError::UnknownVersion(0))
        ));
    }

    #[test]
    fn newer_rules_decode_but_are_refused_for_serving() {
        let mut body = body(1);
        body.rules_version = RULES_VERSION_CURRENT + 1;
        let bytes = body.canonical_bytes();
        assert_eq!(EntryBody::from_canonical_bytes(&bytes).unwrap(), body);
        let refused = peek_request_id(&bytes).unwrap_err();
        assert!(refused.to_string().contains("newer release"), "{refused}");
    }

    #[test]
    fn balance_check_sees_unequal_sides() {
        let mut b = body(5000);
        assert!(b.is_balanced());
        b.postings[1].amount = Decimal::new(4999, 0);
        assert!(!b.is_balanced());
    }
}
