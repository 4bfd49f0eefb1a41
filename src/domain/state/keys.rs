//! The state as key/value records: what the store persists, what startup
//! loads, and what `verify` compares. Keys are text with a kind prefix so
//! that records sort by kind; values are postcard bytes.

use super::*;

/// One piece of the state that can change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// Last sequence number and hash.
    Head,
    Branch(BranchId),
    Center(CenterId),
    Group(GroupId),
    Member(MemberId),
    Savings(SavingsAccountId),
    Loan(LoanId),
    Balance(AccountId),
    Request(RequestId),
    Reversed(u64),
    Day(BranchId, NaiveDate),
}

/// A record: key bytes and value bytes, or `None` when the key is gone.
pub type StateRecord = (Vec<u8>, Option<Vec<u8>>);

const HEAD_KEY: &str = "head";

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encodes plain data into a Vec without failing")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("record {key:?}: {e}"))
}

impl StateKey {
    /// The key's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            StateKey::Head => HEAD_KEY.to_owned(),
            StateKey::Branch(id) => format!("branch/{id}"),
            StateKey::Center(id) => format!("center/{id}"),
            StateKey::Group(id) => format!("group/{id}"),
            StateKey::Member(id) => format!("member/{id}"),
            StateKey::Savings(id) => format!("savings/{id}"),
            StateKey::Loan(id) => format!("loan/{id}"),
            StateKey::Balance(account) => format!("balance/{account}"),
            StateKey::Request(id) => format!("request/{id}"),
            StateKey::Reversed(sequence) => format!("reversed/{sequence:020}"),
            StateKey::Day(branch, date) => format!("day/{branch}/{date}"),
        }
        .into_bytes()
    }
}

impl LedgerState {
    /// The record of `key` in the current state.
    fn record(&self, key: &StateKey) -> Option<Vec<u8>> {
        match key {
            StateKey::Head => Some(encode(&(self.last_sequence, self.last_hash()))),
            StateKey::Branch(id) => self.branches.get(id).map(encode),
            StateKey::Center(id) => self.centers.get(id).map(encode),
            StateKey::Group(id) => self.groups.get(id).map(encode),
            StateKey::Member(id) => self.members.get(id).map(encode),
            StateKey::Savings(id) => self.savings.get(id).map(encode),
            StateKey::Loan(id) => self.loans.get(id).map(encode),
            StateKey::Balance(account) => self.balances.get(account).map(|b| encode(&(account, b))),
            StateKey::Request(id) => self.requests.get(id).map(|r| encode(&(id, r))),
            StateKey::Reversed(sequence) => self.reversed.get(sequence).map(encode),
            StateKey::Day(branch, date) => self
                .days
                .get(branch)
                .and_then(|days| days.get(date))
                .map(encode),
        }
    }

    /// The records changed since the last call, in key order.
    pub fn take_changes(&mut self) -> Vec<StateRecord> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .iter()
            .map(|key| (key.to_bytes(), self.record(key)))
            .collect()
    }

    /// Forgets which records changed (after loading or rebuilding).
    pub fn clear_changes(&mut self) {
        self.changed.clear();
    }

    /// Every record of the state, sorted by key bytes.
    pub fn export(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut keys = vec![StateKey::Head];
        keys.extend(self.branches.keys().cloned().map(StateKey::Branch));
        keys.extend(self.centers.keys().cloned().map(StateKey::Center));
        keys.extend(self.groups.keys().cloned().map(StateKey::Group));
        keys.extend(self.members.keys().cloned().map(StateKey::Member));
        keys.extend(self.savings.keys().cloned().map(StateKey::Savings));
        keys.extend(self.loans.keys().cloned().map(StateKey::Loan));
        keys.extend(self.balances.keys().cloned().map(StateKey::Balance));
        keys.extend(self.requests.keys().cloned().map(StateKey::Request));
        keys.extend(self.reversed.keys().copied().map(StateKey::Reversed));
        for (branch, days) in &self.days {
            keys.extend(days.keys().map(|date| StateKey::Day(branch.clone(), *date)));
        }
        keys.iter()
            .filter_map(|key| Some((key.to_bytes(), self.record(key)?)))
            .collect()
    }

    /// Rebuilds a state from its records (as `export` gives them).
    pub fn import<'a>(
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<LedgerState, String> {
        let mut state = LedgerState::new();
        for (key, value) in records {
            let key =
                std::str::from_utf8(key).map_err(|_| "a record key is not text".to_owned())?;
            state.import_record(key, value)?;
        }
        Ok(state)
    }

    fn import_record(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        if key == HEAD_KEY {
            let (sequence, hash): (u64, Hash) = decode(key, value)?;
            self.last_sequence = sequence;
            self.last_hash = (sequence > 0).then_some(hash);
            return Ok(());
        }
        let (kind, rest) = key
            .split_once('/')
            .ok_or_else(|| format!("record key {key:?} has no kind"))?;
        match kind {
            "branch" => {
                let branch: Branch = decode(key, value)?;
                self.branches.insert(branch.id.clone(), branch);
            }
            "center" => {
                let center: Center = decode(key, value)?;
                self.centers.insert(center.id.clone(), center);
            }
            "group" => {
                let group: Group = decode(key, value)?;
                self.groups.insert(group.id.clone(), group);
            }
            "member" => {
                let member: Member = decode(key, value)?;
                self.members.insert(member.id.clone(), member);
            }
            "savings" => {
                let account: SavingsAccount = decode(key, value)?;
                self.savings.insert(account.id.clone(), account);
            }
            "loan" => {
                let loan: Loan = decode(key, value)?;
                self.loans.insert(loan.id.clone(), loan);
            }
            "balance" => {
                let (account, balance): (AccountId, Balance) = decode(key, value)?;
                self.balances.insert(account, balance);
            }
            "request" => {
                let (id, record): (RequestId, RequestRecord) = decode(key, value)?;
                self.requests.insert(id, record);
            }
            "reversed" => {
                let sequence: u64 = rest.parse().map_err(|_| format!("record key {key:?}"))?;
                self.reversed.insert(sequence, decode(key, value)?);
            }
            "day" => {
                let (branch, date) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("record key {key:?}"))?;
                let branch = BranchId::parse("key", branch).map_err(|e| e.to_string())?;
                let date: NaiveDate = date.parse().map_err(|_| format!("record key {key:?}"))?;
                self.days
                    .entry(branch)
                    .or_default()
                    .insert(date, decode(key, value)?);
            }
            _ => return Err(format!("record key {key:?} has an unknown kind")),
        }
        Ok(())
    }
}
