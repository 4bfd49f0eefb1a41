//! Paging of the list RPCs: page sizes, the byte bound of a page, and page
//! tokens.
//!
//! Every list RPC takes `page_size` (0 means [`PAGE_SIZE_DEFAULT`], at most
//! [`PAGE_SIZE_MAX`]) and `page_token` (empty for the first page) and
//! returns `next_page_token` (empty after the last page). A page also stops
//! before the item that would take its encoded reply past
//! [`PAGE_BYTES_MAX`], but always holds at least one item, so that a list
//! always moves on. Lists are walked in key order from the key after the
//! token's, so the work of a page is bounded by the page.
//!
//! A token is opaque to clients: hex of the list it belongs to, a digest of
//! the request's filters (a token given for other filters is refused), and
//! the last key of its page.

use sha2::{Digest, Sha256};

use crate::domain::DomainError;

/// Most items in one page.
pub const PAGE_SIZE_MAX: u32 = 1000;
/// Items in a page when the client does not say.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// Largest encoded reply of a list RPC, in bytes, unless its one item alone
/// is larger.
pub const PAGE_BYTES_MAX: usize = 1 << 20;
/// Bytes of a page's reply kept for its fields other than the items (dates,
/// tokens, sequence numbers).
const PAGE_OTHER_BYTES_MAX: usize = 4 << 10;
/// Bytes a page's items may take.
const PAGE_ITEMS_BYTES_MAX: usize = PAGE_BYTES_MAX - PAGE_OTHER_BYTES_MAX;
/// Longest page token accepted, in characters.
pub const PAGE_TOKEN_LEN_MAX: usize = 256;
/// Bytes of the filter digest in a token.
const FILTER_DIGEST_LEN: usize = 8;

/// The list a page token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// `ListLoansInArrears`: the key is a loan id.
    LoansInArrears,
    /// `ListProducts`: the key is a product id.
    Products,
    /// `ListAccounts`: the key is an account name.
    Accounts,
}

impl List {
    fn tag(self) -> u8 {
        match self {
            List::LoansInArrears => b'a',
            List::Products => b'p',
            List::Accounts => b'c',
        }
    }
}

/// The page size asked for: 0 means the default; more than the maximum is refused.
pub fn page_size(asked: u32) -> Result<usize, DomainError> {
    match asked {
        0 => Ok(PAGE_SIZE_DEFAULT as usize),
        size if size > PAGE_SIZE_MAX => Err(DomainError::invalid(
            "page_size",
            format!("{size} is more than the {PAGE_SIZE_MAX} allowed"),
        )),
        size => Ok(size as usize),
    }
}

/// The token of the page after the one that ended at `last_key`, for a
/// request with these `filters`.
pub fn next_page_token(list: List, filters: &str, last_key: &str) -> String {
    let mut bytes = Vec::with_capacity(1 + FILTER_DIGEST_LEN + last_key.len());
    bytes.push(list.tag());
    bytes.extend_from_slice(&filter_digest(filters));
    bytes.extend_from_slice(last_key.as_bytes());
    hex::encode(bytes)
}

/// The last key of the page before, from `token`: `None` for the first page
/// (an empty token). A token that is not one this list gave for these
/// `filters` is refused naming `page_token`.
pub fn key_after(list: List, filters: &str, token: &str) -> Result<Option<String>, DomainError> {
    if token.is_empty() {
        return Ok(None);
    }
    let refuse = |problem: &str| DomainError::invalid("page_token", problem.to_owned());
    if token.len() > PAGE_TOKEN_LEN_MAX {
        return Err(refuse(&format!(
            "is {} characters long; a page token is at most {PAGE_TOKEN_LEN_MAX}",
            token.len()
        )));
    }
    let bytes = hex::decode(token)
        .map_err(|_| refuse("is not a page token this list gave (use next_page_token as given)"))?;
    let Some((&tag, rest)) = bytes.split_first() else {
        return Err(refuse("is not a page token this list gave"));
    };
    if tag != list.tag() || rest.len() <= FILTER_DIGEST_LEN {
        return Err(refuse("is not a page token this list gave"));
    }
    let (digest, key) = rest.split_at(FILTER_DIGEST_LEN);
    if digest != filter_digest(filters) {
        return Err(refuse(
            "was given for a request with other filters; ask again from the first page",
        ));
    }
    String::from_utf8(key.to_vec())
        .map(Some)
        .map_err(|_| refuse("is not a page token this list gave"))
}

fn filter_digest(filters: &str) -> [u8; FILTER_DIGEST_LEN] {
    let digest = Sha256::digest(filters.as_bytes());
    let mut out = [0u8; FILTER_DIGEST_LEN];
    out.copy_from_slice(&digest[..FILTER_DIGEST_LEN]);
    out
}

/// A page being filled: at most `size_max` items, and items that fit in
/// [`PAGE_BYTES_MAX`] with the reply's other fields (the first item always).
#[derive(Debug)]
pub struct Page<T> {
    items: Vec<T>,
    size_max: usize,
    bytes: usize,
    full: bool,
}

impl<T: prost::Message> Page<T> {
    /// An empty page of at most `size_max` items (at least one).
    pub fn new(size_max: usize) -> Page<T> {
        Page {
            items: Vec::new(),
            size_max: size_max.max(1),
            bytes: 0,
            full: false,
        }
    }

    /// Adds `item` if it fits. An item that does not fit makes the page
    /// full and is given back: it starts the next page.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        let cost = item_bytes(&item);
        let fits = self.items.is_empty() || self.bytes.saturating_add(cost) <= PAGE_ITEMS_BYTES_MAX;
        if self.full || !fits {
            self.full = true;
            return Err(item);
        }
        self.bytes = self.bytes.saturating_add(cost);
        self.items.push(item);
        if self.items.len() >= self.size_max || self.bytes >= PAGE_ITEMS_BYTES_MAX {
            self.full = true;
        }
        Ok(())
    }

    /// Whether no more items go in this page.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Items in the page.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page has no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The page's items, in order.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Bytes an item takes in a reply's repeated field: key, length, message
/// (field numbers below 16 have a one-byte key).
fn item_bytes(item: &impl prost::Message) -> usize {
    let len = item.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn posting(account_len: usize) -> pb::Posting {
        pb::Posting {
            account: "a".repeat(account_len),
            ..Default::default()
        }
    }

    #[test]
    fn a_page_stops_at_its_size() {
        let mut page = Page::new(2);
        assert!(page.push(posting(1)).is_ok());
        assert!(!page.is_full());
        assert!(page.push(posting(1)).is_ok());
        assert!(page.is_full());
        assert!(page.push(posting(1)).is_err());
        assert_eq!(page.len(), 2);
    }

    /// A page stops before the item that would take its reply past the byte
    /// bound; the reply of the full page stays within it.
    #[test]
    fn a_page_stops_before_its_byte_bound() {
        let mut page = Page::new(PAGE_SIZE_MAX as usize);
        let mut refused = None;
        for _ in 0..PAGE_SIZE_MAX {
            if let Err(item) = page.push(posting(100 << 10)) {
                refused = Some(item);
                break;
            }
        }
        assert!(
            refused.is_some(),
            "100 KiB items fill a page before 1000 of them"
        );
        assert!(page.is_full());
        assert_eq!(page.len(), 10);
        let reply = pb::JournalEntry {
            postings: page.into_items(),
            hash: "f".repeat(64),
            ..Default::default()
        };
        assert!(prost::Message::encoded_len(&reply) <= PAGE_BYTES_MAX);
    }

    #[test]
    fn a_page_always_takes_its_first_item() {
        let mut page = Page::new(10);
        assert!(
            page.push(posting(2 << 20)).is_ok(),
            "larger than a page alone"
        );
        assert!(page.is_full());
        assert!(page.push(posting(1)).is_err());
    }

    #[test]
    fn tokens_round_trip_for_their_list_and_filters_only() {
        let token = next_page_token(List::LoansInArrears, "TB\n2024-06-30", "TB-0001/L1");
        assert_eq!(
            key_after(List::LoansInArrears, "TB\n2024-06-30", &token).unwrap(),
            Some("TB-0001/L1".to_owned())
        );
        assert_eq!(key_after(List::Products, "", "").unwrap(), None);
        for (list, filters, token) in [
            (List::Products, "TB\n2024-06-30", token.as_str()),
            (List::LoansInArrears, "TB\n2024-07-01", token.as_str()),
            (List::LoansInArrears, "TB\n2024-06-30", "zz"),
            (List::LoansInArrears, "TB\n2024-06-30", "61"),
            (List::LoansInArrears, "TB\n2024-06-30", &"61".repeat(200)),
        ] {
            let error = key_after(list, filters, token).unwrap_err();
            assert!(error.to_string().contains("page_token"), "{token}: {error}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), PAGE_SIZE_DEFAULT as usize);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(PAGE_SIZE_MAX).unwrap(), PAGE_SIZE_MAX as usize);
        assert!(
            page_size(PAGE_SIZE_MAX + 1)
                .unwrap_err()
                .to_string()
                .contains("page_size")
        );
    }
}
