//! A savings account's changes by date folded at a close: what memory
//! holds of an account is the changes after its branch's last close, and
//! their sum before it ([`Folded`]); each close writes the changes it
//! folds into records read when asked ([`StateKey::SavingsHistory`],
//! [`crate::stored`]), the branch's accounts shared out between them by a
//! hash of their ids, [`FOLD_RECORD_ACCOUNTS`] or so a record (a record an
//! account made every account a key of its own in the store at every
//! close: its page table, its node cache and the terms startup checks
//! grew with them).
//!
//! No entry is dated in a closed period ([`Branch::check_open`]), so what
//! deciding and the members' borrower steps read of an account's changes
//! lies after the fold, but for a question from a date before it: an
//! interest period begun before the close (a close in the middle of one),
//! or a back-dated withdrawal once a reopening let one in. Those read the
//! folds they need back ([`LedgerState::savings_from`]). A reopening takes
//! back the folds it reopens, into memory, whole: the entries it lets in
//! may change the days they cover.

use std::borrow::Cow;

use super::*;
use crate::dated::PackedAmounts;
use crate::stored::ReadError;
use crate::totals::{minus, plus};

/// Key prefix of the changes a close folded out of a branch's savings
/// accounts ([`StateKey::SavingsHistory`]), read when asked.
pub const SAVINGS_HISTORY_PREFIX: &str = "cold/savings-history/";

/// About how many accounts' changes a record of a fold holds: a fold of
/// `n` accounts has `n / FOLD_RECORD_ACCOUNTS` records rounded up, or
/// fewer, so that none is empty ([`fold_records`]).
pub const FOLD_RECORD_ACCOUNTS: usize = 256;

/// One close's fold of a branch's savings accounts ([`Branch::folds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// The date the close folded the accounts' changes through.
    #[serde(with = "crate::codec::date")]
    pub through: NaiveDate,
    /// How many records hold them ([`record_of`] says which holds an
    /// account's).
    pub records: u32,
}

/// The record of a fold of `records` that holds `account`'s changes: its
/// id's FNV-1a hash, modulo `records` (part of the format: a build that
/// shared them out otherwise would look for an account in another).
pub fn record_of(account: &SavingsAccountId, records: u32) -> u32 {
    let hash = account
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    u32::try_from(hash % u64::from(records.max(1))).unwrap_or(0)
}

/// The changes one record of a fold holds: each account's, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldRecord(Vec<(SavingsAccountId, PackedAmounts)>);

impl FoldRecord {
    /// `account`'s changes, if the record holds them.
    pub fn get(&self, account: &SavingsAccountId) -> Option<&PackedAmounts> {
        self.0
            .binary_search_by(|(held, _)| held.cmp(account))
            .ok()
            .map(|at| &self.0[at].1)
    }

    /// Every account's changes, in id order.
    pub fn accounts(&self) -> impl Iterator<Item = (&SavingsAccountId, &PackedAmounts)> {
        self.0.iter().map(|(account, changes)| (account, changes))
    }
}

/// A record of a fold as stored.
#[derive(Serialize, Deserialize)]
struct FoldedAccount {
    account: SavingsAccountId,
    #[serde(with = "crate::codec::packed_amounts")]
    changes: PackedAmounts,
}

/// The key of record `index` of `branch`'s fold through `through`.
pub(super) fn history_key(branch: &BranchId, through: NaiveDate, index: u32) -> String {
    format!("{SAVINGS_HISTORY_PREFIX}{branch}/{through}/{index:04}")
}

/// The branch, date and record a key names, if it is the key of a record
/// of a fold.
pub(super) fn history_of(key: &str) -> Option<Result<(BranchId, NaiveDate, u32), String>> {
    let rest = key.strip_prefix(SAVINGS_HISTORY_PREFIX)?;
    let mut parts = rest.rsplitn(3, '/');
    let parsed = (|| {
        let index = parts.next()?.parse().ok()?;
        let through = NaiveDate::parse_from_str(parts.next()?, "%Y-%m-%d").ok()?;
        let branch = BranchId::parse("key", parts.next()?).ok()?;
        Some((branch, through, index))
    })()
    .ok_or_else(|| format!("record key {key:?}"));
    Some(parsed)
}

/// The value of a record of a fold.
pub(super) fn encode_history(record: &FoldRecord) -> Vec<u8> {
    let accounts: Vec<FoldedAccount> = record
        .0
        .iter()
        .map(|(account, changes)| FoldedAccount {
            account: account.clone(),
            changes: changes.clone(),
        })
        .collect();
    crate::codec::encode(&accounts)
}

/// A record of a fold through `through`, as read back: its accounts in id
/// order, each with changes dated on or before `through` (which record of
/// the fold holds which account `check_fold_record` checks).
pub(super) fn decode_history(
    key: &str,
    value: &[u8],
    through: NaiveDate,
) -> Result<FoldRecord, String> {
    let accounts: Vec<FoldedAccount> =
        postcard::from_bytes(value).map_err(|e| format!("record {key:?}: {e}"))?;
    let mut read: Vec<(SavingsAccountId, PackedAmounts)> = Vec::with_capacity(accounts.len());
    for FoldedAccount { account, changes } in accounts {
        if read.last().is_some_and(|(last, _)| *last >= account) {
            return Err(format!("record {key:?}: account {account} out of order"));
        }
        match changes.last_key_value() {
            None => {
                return Err(format!(
                    "record {key:?} holds no change of account {account}"
                ));
            }
            Some((last, _)) if last > through => {
                return Err(format!(
                    "record {key:?} holds a change of account {account} dated {last}, after {through}"
                ));
            }
            Some(_) => read.push((account, changes)),
        }
    }
    if read.is_empty() {
        return Err(format!("record {key:?} holds no account"));
    }
    Ok(FoldRecord(read))
}

/// Refuses a record of a fold of `records` holding an account another of
/// them holds ([`record_of`]).
fn check_fold_record(
    key: &str,
    record: &FoldRecord,
    index: u32,
    records: u32,
) -> Result<(), String> {
    match record
        .accounts()
        .find(|(account, _)| record_of(account, records) != index)
    {
        Some((account, _)) => Err(format!(
            "record {key:?} holds account {account}, whose changes are in record {} of {records}",
            record_of(account, records)
        )),
        None => Ok(()),
    }
}

/// `account` with its changes on or before `through` folded, and those
/// changes; `None` when it has none to fold.
pub(super) fn fold(
    account: &SavingsAccount,
    through: NaiveDate,
) -> Result<Option<(SavingsAccount, PackedAmounts)>, String> {
    if account
        .folded
        .is_some_and(|folded| folded.through >= through)
    {
        return Err(format!(
            "savings account {} is folded through {through} already",
            account.id
        ));
    }
    let folding: PackedAmounts = account.changes.range(..=through).collect();
    if folding.is_empty() {
        return Ok(None);
    }
    let mut kept: PackedAmounts = account
        .changes
        .range((
            std::ops::Bound::Excluded(through),
            std::ops::Bound::Unbounded,
        ))
        .collect();
    kept.shrink_to_fit();
    let before = account
        .folded
        .map_or(Decimal::ZERO, |folded| folded.carried);
    let carried = plus(before, folding.sum()?)?;
    let folded = with_changes(account, kept, Some(Folded { through, carried }));
    Ok(Some((folded, folding)))
}

/// `account` with `changes` and `folded` in place of its own (its changes
/// not copied on the way).
fn with_changes(
    account: &SavingsAccount,
    changes: PackedAmounts,
    folded: Option<Folded>,
) -> SavingsAccount {
    SavingsAccount {
        id: account.id.clone(),
        member: account.member.clone(),
        branch: account.branch.clone(),
        kind: account.kind,
        opened_on: account.opened_on,
        opened: account.opened,
        changes,
        folded,
    }
}

/// The records of a fold through `through` of `folded` (each account's
/// changes folded, in id order): the fold, and each record by its index.
/// Every record of a fold holds an account: the count is the one
/// [`FOLD_RECORD_ACCOUNTS`] gives, less one until none is left empty (so
/// a record missing from the store is damage, never an empty share, and
/// a fold made again on a date a reopening took back holds every index
/// it names).
pub(super) fn fold_records(
    through: NaiveDate,
    folded: Vec<(SavingsAccountId, PackedAmounts)>,
) -> (Fold, Vec<(u32, FoldRecord)>) {
    let mut records =
        u32::try_from(folded.len().div_ceil(FOLD_RECORD_ACCOUNTS).max(1)).unwrap_or(u32::MAX);
    while records > 1 {
        let mut used = vec![false; records as usize];
        for (account, _) in &folded {
            used[record_of(account, records) as usize] = true;
        }
        if used.iter().all(|used| *used) {
            break;
        }
        records -= 1;
    }
    let mut by_index: BTreeMap<u32, FoldRecord> = BTreeMap::new();
    for (account, changes) in folded {
        by_index
            .entry(record_of(&account, records))
            .or_default()
            .0
            .push((account, changes));
    }
    (Fold { through, records }, by_index.into_iter().collect())
}

/// `changes` and every change of `folds` together, summed by date.
fn merged<'a>(
    changes: &PackedAmounts,
    folds: impl IntoIterator<Item = &'a PackedAmounts>,
) -> Result<PackedAmounts, String> {
    let mut by_date: BTreeMap<NaiveDate, Decimal> = changes.iter().collect();
    for fold in folds {
        for (date, change) in fold {
            let sum = by_date.entry(date).or_default();
            *sum = plus(*sum, change)?;
        }
    }
    Ok(by_date
        .into_iter()
        .filter(|(_, change)| !change.is_zero())
        .collect())
}

/// `account` with `folds` (its folded changes read back) taken back into
/// its changes, folded through `back_to` from then on (no longer folded
/// without it).
pub(super) fn unfold(
    account: &SavingsAccount,
    folds: &[PackedAmounts],
    back_to: Option<NaiveDate>,
) -> Result<SavingsAccount, String> {
    let Some(folded) = account.folded else {
        return Ok(account.clone());
    };
    let mut carried = folded.carried;
    for fold in folds {
        carried = minus(carried, fold.sum()?)?;
    }
    let folded = match back_to {
        Some(through) => Some(Folded { through, carried }),
        None if carried.is_zero() => None,
        None => {
            return Err(format!(
                "savings account {} keeps {} as the sum of its changes folded through {}, \
                 and those read back leave {} of it unaccounted for",
                account.id, folded.carried, folded.through, carried
            ));
        }
    };
    Ok(with_changes(
        account,
        merged(&account.changes, folds)?,
        folded,
    ))
}

/// A record of a fold, by branch, date folded through and index.
type FoldKey = (BranchId, NaiveDate, u32);

/// The records of folds a state holds ([`LedgerState::savings_history`]):
/// shared by the writer's copy and the read side, which takes the
/// writer's. The read side holds each until the checkpoint that saved it;
/// the writer's copy, which never saves, holds each only as long as the
/// read side does (`weak`), then reads it from the store like a record
/// made before it started.
#[derive(Clone, Debug, Default)]
pub(super) struct HeldFolds {
    records: BTreeMap<FoldKey, Held>,
    /// Holds what it is given without keeping it (the writer's copy).
    weak: bool,
    /// How many it held after it last let go of those no other copy
    /// holds: it does so again once it holds twice as many, so inserts
    /// cost no walk of them all each.
    pruned_at: usize,
}

#[derive(Clone, Debug)]
enum Held {
    Kept(Arc<FoldRecord>),
    WhileShared(std::sync::Weak<FoldRecord>),
}

impl HeldFolds {
    /// The record of `key`, if held (and, on the writer's copy, still
    /// held by the read side).
    pub(super) fn get(&self, key: &FoldKey) -> Option<Arc<FoldRecord>> {
        match self.records.get(key)? {
            Held::Kept(record) => Some(record.clone()),
            Held::WhileShared(record) => record.upgrade(),
        }
    }

    pub(super) fn insert(&mut self, key: FoldKey, record: Arc<FoldRecord>) {
        let held = match self.weak {
            true => Held::WhileShared(Arc::downgrade(&record)),
            false => Held::Kept(record),
        };
        self.records.insert(key, held);
        // What the read side let go of since is in the store.
        if self.weak && self.records.len() >= 2 * self.pruned_at.max(64) {
            self.records.retain(|_, held| match held {
                Held::Kept(_) => true,
                Held::WhileShared(record) => record.strong_count() > 0,
            });
            self.pruned_at = self.records.len();
        }
    }

    pub(super) fn remove(&mut self, key: &FoldKey) {
        self.records.remove(key);
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&FoldKey) -> bool) {
        self.records.retain(|key, _| keep(key));
    }

    /// Holds what it holds, and is given from now on, only while another
    /// copy does (the writer's copy, [`LedgerState::keep_decisions_only`]).
    pub(super) fn hold_while_shared(&mut self) {
        self.weak = true;
        for held in self.records.values_mut() {
            if let Held::Kept(record) = held {
                *held = Held::WhileShared(Arc::downgrade(record));
            }
        }
    }

    /// Every record held, by key.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&FoldKey, Arc<FoldRecord>)> {
        self.records
            .keys()
            .filter_map(|key| Some((key, self.get(key)?)))
    }

    pub(super) fn contains_key(&self, key: &FoldKey) -> bool {
        self.get(key).is_some()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Two states are equal whatever each holds only while the other does.
impl PartialEq for HeldFolds {
    fn eq(&self, other: &HeldFolds) -> bool {
        self.iter().eq(other.iter())
    }
}

/// A record of a fold its branch keeps, not in the store.
fn missing(key: &str) -> ReadError {
    ReadError::Damaged(format!("record {key:?} is missing from the state cache"))
}

/// What a reopening takes back ([`LedgerState::folds_taken_back`]): the
/// accounts with their folds taken back, and the records those were in,
/// by date and index.
pub(super) type TakenBack = (Vec<SavingsAccount>, Vec<(NaiveDate, u32)>);

/// The records of folds read back for one question (an interest posting
/// reads each record its accounts share once).
#[derive(Default)]
pub struct FoldReads(BTreeMap<(BranchId, NaiveDate, u32), Arc<FoldRecord>>);

impl LedgerState {
    /// `branch`'s fold through `through`, if it made one.
    fn fold_of(&self, branch: &BranchId, through: NaiveDate) -> Option<Fold> {
        self.branches
            .get(branch)?
            .folds
            .iter()
            .copied()
            .find(|fold| fold.through == through)
    }

    /// Record `index` of `branch`'s fold through `through`: held, or read
    /// back from the store (`None`: there is none).
    fn fold_record(
        &self,
        branch: &BranchId,
        through: NaiveDate,
        index: u32,
    ) -> Result<Option<Arc<FoldRecord>>, ReadError> {
        if let Some(held) = self.savings_history.get(&(branch.clone(), through, index)) {
            return Ok(Some(held));
        }
        let Some(fold) = self
            .fold_of(branch, through)
            .filter(|fold| index < fold.records)
        else {
            return Ok(None);
        };
        let key = history_key(branch, through, index);
        let value = match self.stored.read(key.as_bytes())? {
            Some(value) => value,
            None if self.stored.0.is_some() => return Err(missing(&key)),
            None => return Ok(None),
        };
        decode_history(&key, &value, through)
            .and_then(|record| {
                check_fold_record(&key, &record, index, fold.records)?;
                Ok(Some(Arc::new(record)))
            })
            .map_err(ReadError::Damaged)
    }

    /// The value of record `index` of `branch`'s fold through `through`,
    /// while the branch keeps that fold (`None` once a reopening took it
    /// back, or when no account's changes fell to that record).
    pub(super) fn savings_history_record(
        &self,
        branch: &BranchId,
        through: NaiveDate,
        index: u32,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(held) = self.savings_history.get(&(branch.clone(), through, index)) {
            return Ok(Some(encode_history(&held)));
        }
        if self
            .fold_of(branch, through)
            .is_none_or(|fold| index >= fold.records)
        {
            return Ok(None);
        }
        let key = history_key(branch, through, index);
        match self.stored.read(key.as_bytes())? {
            Some(value) => Ok(Some(value)),
            None if self.stored.0.is_some() => Err(missing(&key)),
            None => Ok(None),
        }
    }

    /// `account`'s folds holding its changes from `from` on: the changes
    /// each of its branch's folds on or after `from`, up to the account's
    /// own, holds of it.
    fn folds_from(
        &self,
        account: &SavingsAccount,
        from: NaiveDate,
        reads: &mut FoldReads,
    ) -> Result<Vec<PackedAmounts>, ReadError> {
        let Some(folded) = account.folded else {
            return Ok(Vec::new());
        };
        let Some(branch) = self.branches.get(&account.branch) else {
            return Ok(Vec::new());
        };
        let mut folds = Vec::new();
        for fold in &branch.folds {
            if fold.through < from || fold.through > folded.through {
                continue;
            }
            let index = record_of(&account.id, fold.records);
            let key = (branch.id.clone(), fold.through, index);
            let record = match reads.0.get(&key) {
                Some(record) => Some(record.clone()),
                None => self.fold_record(&branch.id, fold.through, index)?,
            };
            if let Some(record) = record {
                if let Some(changes) = record.get(&account.id) {
                    folds.push(changes.clone());
                }
                reads.0.insert(key, record);
            }
        }
        Ok(folds)
    }

    /// `account`'s changes from `from` on (perhaps some before), and the
    /// balance before the first of them: memory's when it holds them
    /// ([`SavingsAccount::held_from`]), with the folds they need read back
    /// otherwise (kept in `reads` for the next account's question). An
    /// error when the store could not give them.
    pub fn savings_from<'a>(
        &self,
        account: &'a SavingsAccount,
        from: NaiveDate,
        reads: &mut FoldReads,
    ) -> Result<(Decimal, Cow<'a, PackedAmounts>), DomainError> {
        if let Some((opening, changes)) = account.held_from(from) {
            return Ok((opening, Cow::Borrowed(changes)));
        }
        let what = || format!("savings account {}'s changes", account.id);
        let folds = self
            .folds_from(account, from, reads)
            .map_err(|error| stored_error(&what(), error))?;
        let mut opening = account
            .folded
            .map_or(Decimal::ZERO, |folded| folded.carried);
        for fold in &folds {
            opening = minus(opening, fold.sum()?)?;
        }
        let changes = merged(&account.changes, &folds).map_err(|message| DomainError::Damaged {
            message: format!(
                "{}: {message}; `mfi-ledger verify` compares the state cache with the journal",
                what()
            ),
        })?;
        Ok((opening, Cow::Owned(changes)))
    }

    /// What reopening `branch`'s books after `closed_through` (from its
    /// first day, without one) takes back of its savings accounts' folds:
    /// each account folded after it, with those folds taken into its
    /// changes, and the records of the folds taken back that exist, by
    /// date and index. An error when the store could not give them, or
    /// they do not add up to what an account keeps of them.
    pub(super) fn folds_taken_back(
        &self,
        branch: &Branch,
        closed_through: Option<NaiveDate>,
    ) -> Result<TakenBack, DomainError> {
        let reopened = |date: NaiveDate| closed_through.is_none_or(|through| date > through);
        let what = || format!("branch {}'s savings accounts' folded changes", branch.id);
        let mut records = Vec::new();
        let mut folds: BTreeMap<&SavingsAccountId, Vec<PackedAmounts>> = BTreeMap::new();
        let mut read = Vec::new();
        for fold in branch.folds.iter().filter(|fold| reopened(fold.through)) {
            for index in 0..fold.records {
                let record = self
                    .fold_record(&branch.id, fold.through, index)
                    .map_err(|error| stored_error(&what(), error))?;
                if let Some(record) = record {
                    records.push((fold.through, index));
                    read.push(record);
                }
            }
        }
        for record in &read {
            for (account, changes) in record.accounts() {
                folds.entry(account).or_default().push(changes.clone());
            }
        }
        let back_to = branch
            .folds
            .iter()
            .map(|fold| fold.through)
            .rfind(|date| !reopened(*date));
        let mut taken = Vec::new();
        for account in self.savings.values() {
            if account.branch != branch.id
                || account
                    .folded
                    .is_none_or(|folded| !reopened(folded.through))
            {
                continue;
            }
            let its = folds.remove(&account.id).unwrap_or_default();
            let whole = unfold(account, &its, back_to).map_err(|message| DomainError::Damaged {
                message: format!(
                    "{message}; `mfi-ledger verify` compares the state cache with the journal"
                ),
            })?;
            taken.push(whole);
        }
        if let Some(account) = folds.keys().next() {
            return Err(DomainError::Damaged {
                message: format!(
                    "{} hold changes of savings account {account}, which keeps none folded \
                     there; `mfi-ledger verify` compares the state cache with the journal",
                    what()
                ),
            });
        }
        Ok((taken, records))
    }

    /// Checks the folds of a state read back whole (`verify`'s reading;
    /// startup leaves them in the store): each branch's are in date order,
    /// within its closed period; every record of a fold is one of a fold
    /// its branch keeps, and holds accounts of that branch that keep their
    /// changes folded through it; and each account's folded changes add up
    /// to the sum it keeps.
    pub(super) fn check_folds(&self) -> Result<(), String> {
        for branch in self.branches.values() {
            let closed = branch.closed.map(|closed| closed.through);
            let ordered = branch
                .folds
                .windows(2)
                .all(|pair| pair[0].through < pair[1].through);
            let within = branch
                .folds
                .last()
                .is_none_or(|last| closed.is_some_and(|through| last.through <= through));
            if !ordered || !within {
                return Err(format!(
                    "branch {} folded its savings accounts {:?}, with its books closed through {closed:?}",
                    branch.id, branch.folds
                ));
            }
        }
        for branch in self.branches.values() {
            for fold in &branch.folds {
                if let Some(index) = (0..fold.records).find(|index| {
                    !self
                        .savings_history
                        .contains_key(&(branch.id.clone(), fold.through, *index))
                }) {
                    return Err(format!(
                        "record {:?} of the {} of branch {}'s fold through {} is missing",
                        history_key(&branch.id, fold.through, index),
                        fold.records,
                        branch.id,
                        fold.through
                    ));
                }
            }
        }
        let mut sums: BTreeMap<SavingsAccountId, Decimal> = BTreeMap::new();
        for ((branch, through, index), record) in self.savings_history.iter() {
            let key = history_key(branch, *through, *index);
            let Some(fold) = self.fold_of(branch, *through) else {
                return Err(format!(
                    "record {key:?} holds a fold its branch does not keep"
                ));
            };
            if *index >= fold.records {
                return Err(format!(
                    "record {key:?} is past the {} records of its fold",
                    fold.records
                ));
            }
            check_fold_record(&key, &record, *index, fold.records)?;
            for (account, changes) in record.accounts() {
                let folded_here = self.savings.get(account).is_some_and(|held| {
                    held.branch == *branch
                        && held.folded.is_some_and(|folded| *through <= folded.through)
                });
                if !folded_here {
                    return Err(format!(
                        "record {key:?} holds changes of savings account {account}, which \
                         does not keep them folded there"
                    ));
                }
                let sum = sums.entry(account.clone()).or_default();
                *sum = plus(*sum, changes.sum()?)?;
            }
        }
        for account in self.savings.values() {
            let kept = account
                .folded
                .map_or(Decimal::ZERO, |folded| folded.carried);
            let read = sums.get(&account.id).copied().unwrap_or_default();
            if kept != read {
                return Err(format!(
                    "savings account {} keeps {kept} as the sum of its folded changes, and \
                     the records of its branch's folds ({SAVINGS_HISTORY_PREFIX}) hold {read} of them",
                    account.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn account(changes: &[(&str, i64)]) -> SavingsAccount {
        SavingsAccount {
            id: SavingsAccountId::parse("a", "M1/C1").unwrap(),
            member: MemberId::parse("m", "M1").unwrap(),
            branch: BranchId::parse("b", "TB").unwrap(),
            kind: SavingsKind::Compulsory,
            opened_on: date("2022-01-03"),
            opened: 3,
            changes: changes
                .iter()
                .map(|(day, amount)| (date(day), Decimal::from(*amount)))
                .collect(),
            folded: None,
        }
    }

    /// A fold keeps the changes after its date and their sum before it;
    /// the balance on every later date, and the lowest from one, are as
    /// before it. Taken back, the account is the one folded, whatever was
    /// folded in how many steps.
    #[test]
    fn a_fold_keeps_every_later_balance_and_taken_back_is_the_account_as_it_was() {
        let whole = account(&[
            ("2022-01-03", 100),
            ("2022-06-01", -40),
            ("2022-12-31", 25),
            ("2023-02-01", -70),
            ("2023-03-01", 10),
            ("2024-01-05", 5),
        ]);
        let (once, first) = fold(&whole, date("2022-12-31")).unwrap().unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(once.changes.len(), 3);
        assert_eq!(
            once.folded,
            Some(Folded {
                through: date("2022-12-31"),
                carried: Decimal::from(85)
            })
        );
        let (twice, second) = fold(&once, date("2023-12-31")).unwrap().unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(twice.changes.len(), 1);
        assert_eq!(twice.folded.unwrap().carried, Decimal::from(25));
        // Nothing left to fold, or folded through a later date already.
        assert!(
            fold(&account(&[("2022-01-03", 1)]), date("2021-12-31"))
                .unwrap()
                .is_none()
        );
        for again in ["2023-06-30", "2023-12-31"] {
            let refused = fold(&twice, date(again)).unwrap_err();
            assert!(
                refused.contains(&format!("folded through {again} already")),
                "{refused}"
            );
        }
        // Every balance from a date after the fold is memory's.
        for from in ["2024-01-01", "2024-01-05", "2024-06-01"] {
            let (opening, changes) = twice.held_from(date(from)).unwrap();
            let held = whole.held_from(date(from)).unwrap();
            assert_eq!(
                lowest_balance_from(opening, changes, date(from)),
                lowest_balance_from(held.0, held.1, date(from)),
                "from {from}"
            );
        }
        // One on or before it needs the folds.
        assert!(twice.held_from(date("2023-12-31")).is_none());
        assert!(twice.held_from(date("2022-02-01")).is_none());
        // Taken back one fold, then the other: the account as it was.
        let back_once = unfold(
            &twice,
            std::slice::from_ref(&second),
            Some(date("2022-12-31")),
        )
        .unwrap();
        assert_eq!(back_once, once);
        assert_eq!(
            unfold(&back_once, std::slice::from_ref(&first), None).unwrap(),
            whole
        );
        let back_both = unfold(&twice, &[first, second.clone()], None).unwrap();
        assert_eq!(back_both, whole);
        // A fold missing: what is read back does not add up to the sum kept.
        let refused = unfold(&twice, &[second], None).unwrap_err();
        assert!(
            refused.contains("leave 85 of it unaccounted for"),
            "{refused}"
        );
    }

    /// A fold's accounts are shared out between records by their ids'
    /// hash, about `FOLD_RECORD_ACCOUNTS` a record, each record in id
    /// order; read back, each is as written, and refused when its
    /// accounts are out of order, or have no change, or one after the
    /// fold's date, or belong to another record.
    #[test]
    fn a_folds_records_share_out_its_accounts_and_are_read_back_as_written() {
        let through = date("2022-12-31");
        let changes: PackedAmounts = [(date("2022-03-01"), Decimal::from(5))].into();
        let ids: Vec<SavingsAccountId> = (0..700)
            .map(|m| SavingsAccountId::parse("a", &format!("M{m:04}/C1")).unwrap())
            .collect();
        let (fold, records) = fold_records(
            through,
            ids.iter().map(|id| (id.clone(), changes.clone())).collect(),
        );
        assert_eq!(
            fold,
            Fold {
                through,
                records: 3
            }
        );
        assert_eq!(records.len(), 3);
        let mut seen = 0;
        for (index, record) in &records {
            let accounts: Vec<_> = record.accounts().map(|(id, _)| id.clone()).collect();
            assert!(accounts.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(
                accounts.len() > 150 && accounts.len() < 320,
                "{}",
                accounts.len()
            );
            assert!(accounts.iter().all(|id| record_of(id, 3) == *index));
            seen += accounts.len();
            let key = history_key(&BranchId::parse("b", "TB").unwrap(), through, *index);
            assert_eq!(
                key,
                format!("cold/savings-history/TB/2022-12-31/{index:04}")
            );
            assert_eq!(
                history_of(&key).unwrap().unwrap(),
                (BranchId::parse("b", "TB").unwrap(), through, *index)
            );
            let value = encode_history(record);
            let read = decode_history(&key, &value, through).unwrap();
            assert_eq!(&read, record);
            check_fold_record(&key, &read, *index, 3).unwrap();
            let elsewhere = check_fold_record(&key, &read, (*index + 1) % 3, 3).unwrap_err();
            assert!(
                elsewhere.contains("whose changes are in record"),
                "{elsewhere}"
            );
            let late = decode_history(&key, &value, date("2022-02-28")).unwrap_err();
            assert!(
                late.contains("dated 2022-03-01, after 2022-02-28"),
                "{late}"
            );
        }
        assert_eq!(seen, 700);
        assert_eq!(
            records[0].1.get(&ids[699]).is_some(),
            record_of(&ids[699], 3) == records[0].0
        );
        // A record of no account, and accounts out of order.
        let key = "cold/savings-history/TB/2022-12-31/0000";
        let empty = encode_history(&FoldRecord::default());
        assert!(
            decode_history(key, &empty, through)
                .unwrap_err()
                .contains("no account")
        );
        let reversed = FoldRecord(vec![
            (ids[1].clone(), changes.clone()),
            (ids[0].clone(), changes.clone()),
        ]);
        let refused = decode_history(key, &encode_history(&reversed), through).unwrap_err();
        assert!(refused.contains("out of order"), "{refused}");
        assert!(
            history_of("cold/savings-history/TB/2022-13-01/0000")
                .unwrap()
                .is_err()
        );
        assert!(history_of("cold/loan/M1/L1").is_none());
        // One record for a fold of few accounts; none of a fold's records
        // empty, whatever its number of accounts.
        assert_eq!(fold_records(through, Vec::new()).0.records, 1);
        for n in [1, 2, 255, 256, 257, 300, 513, 700] {
            let (fold, records) = fold_records(
                through,
                ids[..n]
                    .iter()
                    .map(|id| (id.clone(), changes.clone()))
                    .collect(),
            );
            let indices: Vec<u32> = records.iter().map(|(index, _)| *index).collect();
            assert_eq!(
                indices,
                (0..fold.records).collect::<Vec<_>>(),
                "{n} accounts"
            );
            assert!(fold.records as usize <= n.div_ceil(FOLD_RECORD_ACCOUNTS).max(1));
        }
        // 257 accounts that would all fall to the first of two records:
        // one record.
        let first_of_two: Vec<SavingsAccountId> = (0..2000)
            .map(|m| SavingsAccountId::parse("a", &format!("M{m:05}/C1")).unwrap())
            .filter(|id| record_of(id, 2) == 0)
            .take(257)
            .collect();
        assert_eq!(first_of_two.len(), 257);
        let (fold, records) = fold_records(
            through,
            first_of_two
                .into_iter()
                .map(|id| (id, changes.clone()))
                .collect(),
        );
        assert_eq!((fold.records, records.len()), (1, 1));
    }
}
