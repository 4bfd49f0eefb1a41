//! A savings account's changes by date folded at a close: what memory
//! holds of an account is the changes after its branch's last close, and
//! their sum before it ([`Folded`]); each close writes the changes it
//! folds, one record an account, read when asked
//! ([`StateKey::SavingsHistory`], [`crate::stored`]).
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

/// Key prefix of the changes a close folded out of a savings account
/// ([`StateKey::SavingsHistory`]), read when asked.
pub const SAVINGS_HISTORY_PREFIX: &str = "cold/savings-history/";

/// The key of the changes folded out of `account` through `through`.
pub(super) fn history_key(account: &SavingsAccountId, through: NaiveDate) -> String {
    format!("{SAVINGS_HISTORY_PREFIX}{account}/{through}")
}

/// The account and the date folded through that a key names, if it is the
/// key of folded changes.
pub(super) fn history_of(key: &str) -> Option<Result<(SavingsAccountId, NaiveDate), String>> {
    let rest = key.strip_prefix(SAVINGS_HISTORY_PREFIX)?;
    let parsed = rest
        .rsplit_once('/')
        .and_then(|(id, date)| {
            Some((
                SavingsAccountId::parse("key", id).ok()?,
                NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?,
            ))
        })
        .ok_or_else(|| format!("record key {key:?}"));
    Some(parsed)
}

/// The record of folded changes: their packed bytes
/// ([`crate::codec::packed_amounts`]).
#[derive(Serialize, Deserialize)]
struct HistoryRecord(#[serde(with = "crate::codec::packed_amounts")] PackedAmounts);

/// The value of the record holding `changes`.
pub(super) fn encode_history(changes: &PackedAmounts) -> Vec<u8> {
    crate::codec::encode(&HistoryRecord(changes.clone()))
}

/// The changes a record of folded changes holds, which must be dated on or
/// before `through`, the date its key names.
pub(super) fn decode_history(
    key: &str,
    value: &[u8],
    through: NaiveDate,
) -> Result<PackedAmounts, String> {
    let HistoryRecord(changes) =
        postcard::from_bytes(value).map_err(|e| format!("record {key:?}: {e}"))?;
    match changes.last_key_value() {
        None => Err(format!("record {key:?} holds no change")),
        Some((last, _)) if last > through => Err(format!(
            "record {key:?} holds a change dated {last}, after {through}"
        )),
        Some(_) => Ok(changes),
    }
}

/// `account` with its changes on or before `through` folded, and those
/// changes; `None` when it has none to fold.
pub(super) fn fold(
    account: &SavingsAccount,
    through: NaiveDate,
) -> Result<Option<(SavingsAccount, PackedAmounts)>, String> {
    let folding: PackedAmounts = account.changes.range(..=through).collect();
    if folding.is_empty() {
        return Ok(None);
    }
    if account
        .folded
        .is_some_and(|folded| folded.through >= through)
    {
        return Err(format!(
            "savings account {} is folded through {through} already",
            account.id
        ));
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
    let folded = SavingsAccount {
        id: account.id.clone(),
        member: account.member.clone(),
        branch: account.branch.clone(),
        kind: account.kind,
        opened_on: account.opened_on,
        opened: account.opened,
        changes: kept,
        folded: Some(Folded { through, carried }),
    };
    Ok(Some((folded, folding)))
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

/// `account` with `folds` (the folds of it read back from the store)
/// taken back into its changes, folded through `back_to` from then on (no
/// longer folded without it).
pub(super) fn unfold(
    account: &SavingsAccount,
    folds: &[(NaiveDate, Arc<PackedAmounts>)],
    back_to: Option<NaiveDate>,
) -> Result<SavingsAccount, String> {
    let Some(folded) = account.folded else {
        return Ok(account.clone());
    };
    let mut carried = folded.carried;
    for (_, fold) in folds {
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
    Ok(SavingsAccount {
        id: account.id.clone(),
        member: account.member.clone(),
        branch: account.branch.clone(),
        kind: account.kind,
        opened_on: account.opened_on,
        opened: account.opened,
        changes: merged(&account.changes, folds.iter().map(|(_, fold)| &**fold))?,
        folded,
    })
}

impl LedgerState {
    /// The changes a close folded out of `account` through `through`:
    /// held, or read back from the store (`None`: there are none).
    pub(super) fn savings_history(
        &self,
        account: &SavingsAccountId,
        through: NaiveDate,
    ) -> Result<Option<Arc<PackedAmounts>>, ReadError> {
        if let Some(held) = self.savings_history.get(&(account.clone(), through)) {
            return Ok(Some(held.clone()));
        }
        let key = history_key(account, through);
        let Some(value) = self.stored.read(key.as_bytes())? else {
            return Ok(None);
        };
        decode_history(&key, &value, through)
            .map(|changes| Some(Arc::new(changes)))
            .map_err(ReadError::Damaged)
    }

    /// The record of the changes folded out of `account` through
    /// `through`, while the account keeps them folded (`None` once a
    /// reopening took them back, or when that close folded none of it).
    pub(super) fn savings_history_record(
        &self,
        account: &SavingsAccountId,
        through: NaiveDate,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(held) = self.savings_history.get(&(account.clone(), through)) {
            return Ok(Some(encode_history(held)));
        }
        if !self.folded_through(account, through) {
            return Ok(None);
        }
        self.stored.read(history_key(account, through).as_bytes())
    }

    /// True when `account` keeps changes folded through `through`, a date
    /// its branch folded through.
    fn folded_through(&self, account: &SavingsAccountId, through: NaiveDate) -> bool {
        self.savings.get(account).is_some_and(|held| {
            held.folded.is_some_and(|folded| through <= folded.through)
                && self
                    .branches
                    .get(&held.branch)
                    .is_some_and(|branch| branch.folds.contains(&through))
        })
    }

    /// The dates `account`'s changes were folded through, from `from` on
    /// (each of its branch's folds on or after `from`, up to the
    /// account's).
    pub(super) fn fold_dates_from(
        &self,
        account: &SavingsAccount,
        from: NaiveDate,
    ) -> Vec<NaiveDate> {
        let Some(folded) = account.folded else {
            return Vec::new();
        };
        self.branches
            .get(&account.branch)
            .map_or(&[][..], |branch| &branch.folds)
            .iter()
            .copied()
            .filter(|date| *date >= from && *date <= folded.through)
            .collect()
    }

    /// The folds of `account` holding its changes from `from` on, read
    /// back (held, or from the store), each with the date it was folded
    /// through.
    fn folds_from(
        &self,
        account: &SavingsAccount,
        from: NaiveDate,
    ) -> Result<Vec<(NaiveDate, Arc<PackedAmounts>)>, ReadError> {
        let mut folds = Vec::new();
        for through in self.fold_dates_from(account, from) {
            if let Some(changes) = self.savings_history(&account.id, through)? {
                folds.push((through, changes));
            }
        }
        Ok(folds)
    }

    /// `account`'s changes from `from` on (perhaps some before), and the
    /// balance before the first of them: memory's when it holds them
    /// ([`SavingsAccount::held_from`]), with the folds they need read back
    /// otherwise. An error when the store could not give them.
    pub fn savings_from<'a>(
        &self,
        account: &'a SavingsAccount,
        from: NaiveDate,
    ) -> Result<(Decimal, Cow<'a, PackedAmounts>), DomainError> {
        if let Some((opening, changes)) = account.held_from(from) {
            return Ok((opening, Cow::Borrowed(changes)));
        }
        let what = || format!("savings account {}'s changes", account.id);
        let folds = self
            .folds_from(account, from)
            .map_err(|error| stored_error(&what(), error))?;
        let damaged = |message: String| DomainError::Damaged {
            message: format!(
                "{}: {message}; `mfi-ledger verify` compares the state cache with the journal",
                what()
            ),
        };
        let mut opening = account
            .folded
            .map_or(Decimal::ZERO, |folded| folded.carried);
        for (_, fold) in &folds {
            opening = minus(opening, fold.sum()?)?;
        }
        let changes =
            merged(&account.changes, folds.iter().map(|(_, fold)| &**fold)).map_err(damaged)?;
        Ok((opening, Cow::Owned(changes)))
    }

    /// Checks the folds of a state read back whole (`verify`'s reading;
    /// startup leaves them in the store): each branch's are in date order,
    /// within its closed period; every record of folded changes belongs
    /// to an account that keeps them folded, at a date its branch folded
    /// through; and each account's records add up to the sum it keeps.
    pub(super) fn check_folds(&self) -> Result<(), String> {
        for branch in self.branches.values() {
            let closed = branch.closed.map(|closed| closed.through);
            let ordered = branch.folds.windows(2).all(|pair| pair[0] < pair[1]);
            let within = branch
                .folds
                .last()
                .is_none_or(|last| closed.is_some_and(|through| *last <= through));
            if !ordered || !within {
                return Err(format!(
                    "branch {} folded its savings accounts through {:?}, with its books closed through {closed:?}",
                    branch.id, branch.folds
                ));
            }
        }
        let mut sums: BTreeMap<&SavingsAccountId, Decimal> = BTreeMap::new();
        for ((account, through), changes) in &self.savings_history {
            if !self.folded_through(account, *through) {
                return Err(format!(
                    "record {:?} holds changes of savings account {account} folded through \
                     {through}, which neither it nor its branch keeps folded",
                    history_key(account, *through)
                ));
            }
            let sum = sums.entry(account).or_default();
            *sum = plus(*sum, changes.sum()?)?;
        }
        for account in self.savings.values() {
            let kept = account
                .folded
                .map_or(Decimal::ZERO, |folded| folded.carried);
            let read = sums.get(&account.id).copied().unwrap_or_default();
            if kept != read {
                return Err(format!(
                    "savings account {} keeps {kept} as the sum of its folded changes, and \
                     its records of them ({SAVINGS_HISTORY_PREFIX}) add up to {read}",
                    account.id
                ));
            }
        }
        Ok(())
    }

    /// What reopening `branch`'s books after `closed_through` (from its
    /// first day, without one) takes back of its savings accounts' folds:
    /// each account folded after it, with its folds after it read back
    /// and taken into its changes, and the dates of the folds read. An
    /// error when the store could not give them, or they do not add up to
    /// what the account keeps of them.
    pub(super) fn folds_taken_back(
        &self,
        branch: &Branch,
        closed_through: Option<NaiveDate>,
    ) -> Result<Vec<(SavingsAccount, Vec<NaiveDate>)>, DomainError> {
        let reopened = |date: NaiveDate| closed_through.is_none_or(|through| date > through);
        let Some(first) = branch.folds.iter().copied().find(|date| reopened(*date)) else {
            return Ok(Vec::new());
        };
        let back_to = branch.folds.iter().copied().rfind(|date| !reopened(*date));
        let mut taken = Vec::new();
        for account in self.savings.values() {
            if account.branch != branch.id
                || account
                    .folded
                    .is_none_or(|folded| !reopened(folded.through))
            {
                continue;
            }
            let what = || format!("savings account {}'s changes", account.id);
            let folds = self
                .folds_from(account, first)
                .map_err(|error| stored_error(&what(), error))?;
            let whole =
                unfold(account, &folds, back_to).map_err(|message| DomainError::Damaged {
                    message: format!(
                        "{message}; `mfi-ledger verify` compares the state cache with the journal"
                    ),
                })?;
            taken.push((whole, folds.into_iter().map(|(date, _)| date).collect()));
        }
        Ok(taken)
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
        // Nothing left to fold, or folded through that date already.
        assert!(fold(&twice, date("2023-12-31")).unwrap().is_none());
        let again = fold(&account(&[("2022-01-03", 1)]), date("2021-12-31")).unwrap();
        assert!(again.is_none());
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
        let fold_of =
            |date_text: &str, changes: PackedAmounts| (date(date_text), Arc::new(changes));
        let back_once = unfold(
            &twice,
            &[fold_of("2023-12-31", second.clone())],
            Some(date("2022-12-31")),
        )
        .unwrap();
        assert_eq!(back_once, once);
        assert_eq!(
            unfold(&back_once, &[fold_of("2022-12-31", first.clone())], None).unwrap(),
            whole
        );
        let back_both = unfold(
            &twice,
            &[
                fold_of("2022-12-31", first),
                fold_of("2023-12-31", second.clone()),
            ],
            None,
        )
        .unwrap();
        assert_eq!(back_both, whole);
        // A fold missing: what is read back does not add up to the sum kept.
        let refused = unfold(&twice, &[fold_of("2023-12-31", second)], None).unwrap_err();
        assert!(
            refused.contains("leave 85 of it unaccounted for"),
            "{refused}"
        );
    }

    /// A record of folded changes is read back as written, and refused
    /// when it holds none, or a change after the date its key names.
    #[test]
    fn a_record_of_folded_changes_holds_changes_up_to_its_date() {
        let (_, folded) = fold(
            &account(&[("2022-01-03", 100), ("2022-06-01", -40)]),
            date("2022-12-31"),
        )
        .unwrap()
        .unwrap();
        let id = SavingsAccountId::parse("a", "M1/C1").unwrap();
        let key = history_key(&id, date("2022-12-31"));
        assert_eq!(key, "cold/savings-history/M1/C1/2022-12-31");
        assert_eq!(history_of(&key).unwrap().unwrap(), (id, date("2022-12-31")));
        assert!(
            history_of("cold/savings-history/M1/C1/2022-13-01")
                .unwrap()
                .is_err()
        );
        assert!(history_of("cold/loan/M1/L1").is_none());
        let value = encode_history(&folded);
        assert_eq!(
            decode_history(&key, &value, date("2022-12-31")).unwrap(),
            folded
        );
        let late = decode_history(&key, &value, date("2022-05-31")).unwrap_err();
        assert!(
            late.contains("dated 2022-06-01, after 2022-05-31"),
            "{late}"
        );
        let empty = encode_history(&PackedAmounts::new());
        assert!(
            decode_history(&key, &empty, date("2022-12-31"))
                .unwrap_err()
                .contains("no change")
        );
    }
}
