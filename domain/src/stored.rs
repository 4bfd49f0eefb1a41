//! Records of the state that stay in the store once written: read back
//! when a query asks for them, not at startup.
//!
//! A record whose key starts with [`STORED_PREFIX`] changes only when
//! what it holds changes, which is rarely or never: a closed chunk of a
//! branch's day log (written once), a closed or cancelled loan whole, its
//! summary and its account's records of steps (written when the loan
//! ends, and again if it changes while ended; gone when a reversal reopens
//! it). Memory holds what it holds only until the
//! checkpoint that saved it completes, and holds it again from the entry
//! that changes it: a read made in the state's lock never meets a record
//! being rewritten (reads outside it go back to the state). A store keeps,
//! beside each, the hash the cache's digest counts for it, so that startup
//! checks the digest from those hashes without reading the records, and
//! checks each record against its own hash when it is read
//! ([`StoredRecords::read`]). The records that change (the open chunk of a
//! day log among them) keep other keys and are read at startup.
//!
//! Startup does not list them either: the store keeps the sum of their
//! hashes beside the digest and adds that, checking it against the hashes
//! kept on a thread of its own once startup is done (a record read before
//! that check ends waits for it). Only the keys of the day logs' closed
//! chunks are handed over at startup ([`LISTED_AT_STARTUP`]), for each
//! day log to know where its chunks start.

/// Key prefix of the records read when asked, not at startup.
pub const STORED_PREFIX: &[u8] = b"cold/";

/// True for the key of a record read when asked ([`STORED_PREFIX`]).
pub fn is_stored_key(key: &[u8]) -> bool {
    key.starts_with(STORED_PREFIX)
}

/// Key prefix of the records read when asked whose keys a store hands over
/// at startup (without their values): the day logs' closed chunks
/// ([`crate::day_log::CLOSED_CHUNK_PREFIX`]), one every few hundred of a
/// branch's entries. The keys of the others (closed loans, their summaries and
/// steps, savings accounts' closed records of steps: most of the cache's
/// keys on a long history) are not listed at startup.
pub const LISTED_AT_STARTUP: &[u8] = crate::day_log::CLOSED_CHUNK_PREFIX.as_bytes();

/// Why a record read when asked gave no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// It could not be read now (the store failed to): asking again may
    /// answer.
    #[error("{0}")]
    Unreadable(String),
    /// What was read is not the record written (edited or damaged on disk,
    /// or not decodable): asking again will not answer.
    #[error("{0}")]
    Damaged(String),
}

/// Records as `(key, value)` pairs, in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Where the records under [`STORED_PREFIX`] are read from, once startup
/// left them in the store.
pub trait StoredRecords: Send + Sync + std::fmt::Debug {
    /// The record `key`'s value, checked against the hash kept for it
    /// (`None`: there is no such record). An error says why it could not
    /// be read, or why it is not the record written: the caller never
    /// takes either for absent.
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;

    /// A record read at startup and let go of since (an account's closed
    /// record of steps, which never changes again, though it moves into
    /// one read when asked when the account's loan ends): its value as the
    /// store holds it (`None` once gone), which the caller checks against
    /// what it kept of it.
    fn read_again(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.read(key)
    }

    /// The records whose keys start with `prefix` (one under
    /// [`STORED_PREFIX`]), in key order, from the first key past
    /// `prefix` + `after` on (from the first under `prefix` without
    /// `after`), at most `limit` of them, each checked as
    /// [`StoredRecords::read`] checks it; those whose keys `skip` names
    /// are passed over unread (records the caller holds, which may be
    /// being written again). A store that cannot list its records says
    /// so: its caller never takes that for none.
    fn records_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        skip: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Records, ReadError>;
}

/// Records kept in a map, as the state cache keeps those read when asked:
/// what the tests' states let go of is read back from here.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct KeptInMap(
    pub(crate) std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    /// A record it cannot read just now, if any.
    Option<Vec<u8>>,
);

#[cfg(test)]
impl KeptInMap {
    pub(crate) fn new(records: std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> KeptInMap {
        KeptInMap(std::sync::Mutex::new(records), None)
    }

    /// Records kept in a map, of which record `key` cannot be read just now.
    pub(crate) fn busy_for(
        records: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        key: Vec<u8>,
    ) -> KeptInMap {
        KeptInMap(std::sync::Mutex::new(records), Some(key))
    }
}

#[cfg(test)]
impl StoredRecords for KeptInMap {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if self.1.as_deref() == Some(key) {
            return Err(ReadError::Unreadable("the disk is busy".into()));
        }
        Ok(self.0.lock().expect("not poisoned").get(key).cloned())
    }

    fn records_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        skip: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Records, ReadError> {
        let records = self.0.lock().expect("not poisoned");
        Ok(records_after_in(&records, prefix, after, limit, skip))
    }
}

/// [`StoredRecords::records_after`] over records kept in a map, for the
/// stores tests keep.
#[cfg(test)]
pub(crate) fn records_after_in(
    records: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    skip: &dyn Fn(&[u8]) -> bool,
) -> Records {
    use std::ops::Bound;
    let start = match after {
        Some(after) => Bound::Excluded([prefix, after].concat()),
        None => Bound::Included(prefix.to_vec()),
    };
    records
        .range((start, Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(prefix))
        .filter(|(key, _)| !skip(key))
        .take(limit)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}
