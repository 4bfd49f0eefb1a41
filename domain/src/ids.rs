//! Identifiers and short texts, each a newtype whose only way in is `parse`.
//!
//! An id's text is shared (`Arc<str>`): the state keys its maps, stages
//! copies of the objects an entry changes and hands them to the read side
//! by id, and a copy of an id is a count, not a new string. Encoded as
//! the text itself, the same bytes as a `String`.
//!
//! Once an id exists it is valid: 1 to [`ID_LEN_MAX`] characters of
//! `[A-Za-z0-9._-]` (request ids also allow `:`). Names are 1 to
//! [`NAME_LEN_MAX`] characters with no control characters.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::error::{DomainError, echo};

/// Longest id of a branch, center, group or member, in characters.
pub const ID_LEN_MAX: usize = 32;
/// Longest request id or actor, in characters.
pub const REQUEST_ID_LEN_MAX: usize = 64;
/// Longest name or reason, in characters.
pub const NAME_LEN_MAX: usize = 200;

fn check_id(field: &str, text: &str, len_max: usize, extra: &[char]) -> Result<(), DomainError> {
    if text.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    let len = text.chars().count();
    if len > len_max {
        return Err(DomainError::invalid(
            field,
            format!("is {len} characters long, at most {len_max} allowed"),
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c);
    if let Some(bad) = text.chars().find(|&c| !allowed(c)) {
        let more = if extra.is_empty() { "" } else { ":" };
        return Err(DomainError::invalid(
            field,
            format!(
                "{} contains {bad:?}; use only letters, digits and . _ -{more}",
                echo(text)
            ),
        ));
    }
    Ok(())
}

/// Decodes an id's text straight into its shared form: one allocation and
/// one copy of the bytes (borrowed from the input when the decoder can lend
/// them), where serde's `Arc<str>` decodes a `Box<str>` first and copies it
/// into the `Arc` (two allocations, two copies and a free per id: about a
/// tenth of `verify --chain-only`'s samples, which decodes every entry).
fn shared_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
    struct Text;

    impl serde::de::Visitor<'_> for Text {
        type Value = Arc<str>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an id's text")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Arc<str>, E> {
            Ok(shared(text))
        }

        /// As serde's `Arc<str>`: bytes that are text are taken too.
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Arc<str>, E> {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))?;
            Ok(shared(text))
        }
    }

    deserializer.deserialize_str(Text)
}

/// Ids' texts shared between the records a restart reads back.
///
/// Every record decodes its ids afresh: a member's record, each of her
/// accounts and loans, and the books' history of each account carry their
/// branch's id, hers and their own, each its own allocation of a few bytes
/// (about 7 MB of a 400 % branch's heap once listening, for a few tens of
/// thousands of distinct ids). While a thread has entered an interner
/// ([`Interner::enter`]), the ids it decodes or parses take the text of an
/// equal id it already gave out: one allocation an id. Nothing else
/// changes: an id is its text either way. Threads that share one interner
/// share its texts; it is dropped with the reading, and the texts stay as
/// long as an id holds them.
#[derive(Debug, Default)]
pub struct Interner {
    texts: Mutex<HashSet<Arc<str>, foldhash::fast::RandomState>>,
}

thread_local! {
    /// The interner this thread's ids take their text from, if any.
    static INTERNING: RefCell<Option<Arc<Interner>>> = const { RefCell::new(None) };
}

impl Interner {
    /// Runs `f` with the ids this thread decodes or parses sharing their
    /// text through this interner; the interner entered before (if any)
    /// again afterwards, panic or not.
    pub fn enter<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Arc<Interner>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                INTERNING.with(|current| *current.borrow_mut() = before);
            }
        }
        let before = INTERNING.with(|current| current.borrow_mut().replace(Arc::clone(self)));
        let _restore = Restore(before);
        f()
    }

    /// How many distinct texts it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.texts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn intern(&self, text: &str) -> Arc<str> {
        // A panic elsewhere while the lock was held left the set whole
        // (an insert either happened or not): it is used as it is.
        let mut texts = self.texts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = texts.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        texts.insert(Arc::clone(&shared));
        shared
    }
}

/// `text` as an id's shared text: an equal one's through the interner this
/// thread entered, else new.
fn shared(text: &str) -> Arc<str> {
    // A thread whose thread-locals are being torn down has none entered.
    INTERNING
        .try_with(|current| current.borrow().as_ref().map(|i| i.intern(text)))
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(text))
}

/// Whether two ids' texts are equal: as `str`'s `==`, without a call to
/// the C library's `bcmp` for a few bytes (an id is at most 64).
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && text_order(a, b) == Ordering::Equal
}

/// Two ids' texts in byte order, as `str`'s `Ord` orders them, eight bytes
/// at a time, without a call to the C library's `memcmp`: the state's maps
/// are keyed by ids, and a lookup compares its id with a dozen or two
/// (profiles of the realistic mix put `memcmp`, called with ids of about
/// ten bytes, at a tenth of the writer's time).
#[inline]
fn text_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while let (Some((x, a_rest)), Some((y, b_rest))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        (a, b) = (a_rest, b_rest);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// `Eq`, `Ord` and `Hash` of an id type by its text ([`text_order`]).
macro_rules! text_order {
    ($name:ident) => {
        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &$name) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || same_text(&self.0, &other.0)
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            #[inline]
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &$name) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &$name) -> Ordering {
                text_order(&self.0, &other.0)
            }
        }
    };
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len_max:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Serialize, Deserialize)]
        pub struct $name(#[serde(deserialize_with = "shared_text")] Arc<str>);

        impl $name {
            /// Checks `text` as the value of `field`.
            pub fn parse(field: &str, text: &str) -> Result<$name, DomainError> {
                check_id(field, text, $len_max, $extra)?;
                Ok($name(shared(text)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        text_order!($name);
    };
}

id_type!(
    /// A branch's short code, e.g. `TB`.
    BranchId, ID_LEN_MAX, &[]
);
id_type!(
    /// A center's id, unique in the ledger.
    CenterId, ID_LEN_MAX, &[]
);
id_type!(
    /// A group's id, unique in the ledger.
    GroupId, ID_LEN_MAX, &[]
);
id_type!(
    /// A member's id, unique in the ledger, e.g. `TB-0001`.
    MemberId, ID_LEN_MAX, &[]
);
id_type!(
    /// A loan product's id in the catalogue, e.g. `GENERAL`.
    ProductId, ID_LEN_MAX, &[]
);
id_type!(
    /// A fee's code within a product, e.g. `disbursement`; names its income account.
    FeeCode, ID_LEN_MAX, &[]
);
id_type!(
    /// A client-chosen request id: the key of exactly-once application.
    RequestId, REQUEST_ID_LEN_MAX, &[':']
);
id_type!(
    /// Who entered a command: a clerk's user name.
    Actor, REQUEST_ID_LEN_MAX, &['@', ':']
);
id_type!(
    /// An authenticated principal: a person or a system that holds roles,
    /// e.g. `clerk.tb.hoa` or `branch-app-tb`.
    PrincipalId, REQUEST_ID_LEN_MAX, &['@']
);

/// A savings account id the ledger assigns: `MEMBER/C1` (compulsory) or
/// `MEMBER/V1`, `MEMBER/V2`... (voluntary).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavingsAccountId(#[serde(deserialize_with = "shared_text")] Arc<str>);

/// A loan id the ledger assigns: `MEMBER/L1`, `MEMBER/L2`...
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoanId(#[serde(deserialize_with = "shared_text")] Arc<str>);

macro_rules! owned_id {
    ($name:ident, $letter:literal) => {
        impl $name {
            /// The id of a member's `number`th account of this kind.
            pub fn new(member: &MemberId, letter: char, number: u32) -> $name {
                $name(Arc::from(format!("{member}/{letter}{number}")))
            }

            /// Checks the shape `MEMBER/<letter><number>` of a client's text.
            pub fn parse(field: &str, text: &str) -> Result<$name, DomainError> {
                let Some((member, suffix)) = text.split_once('/') else {
                    return Err(DomainError::invalid(
                        field,
                        format!(
                            "{} is not an id of the form MEMBER/{}N",
                            echo(text),
                            $letter
                        ),
                    ));
                };
                check_id(field, member, ID_LEN_MAX, &[])?;
                let mut chars = suffix.chars();
                let letter_ok = chars.next().is_some_and(|c| $letter.contains(c));
                let digits = chars.as_str();
                let well_formed = letter_ok
                    && !digits.is_empty()
                    && digits.len() <= 9
                    && digits.bytes().all(|b| b.is_ascii_digit());
                if !well_formed {
                    return Err(DomainError::invalid(
                        field,
                        format!(
                            "{} is not an id of the form MEMBER/{}N",
                            echo(text),
                            $letter
                        ),
                    ));
                }
                Ok($name(shared(text)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        text_order!($name);
    };
}

owned_id!(SavingsAccountId, "CV");
owned_id!(LoanId, "L");

/// A display name or reason: 1 to [`NAME_LEN_MAX`] characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Name(String);

impl Name {
    /// Checks `text` as the value of `field`.
    pub fn parse(field: &str, text: &str) -> Result<Name, DomainError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DomainError::invalid(field, "is required"));
        }
        let len = trimmed.chars().count();
        if len > NAME_LEN_MAX {
            return Err(DomainError::invalid(
                field,
                format!("is {len} characters long, at most {NAME_LEN_MAX} allowed"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid(field, "contains control characters"));
        }
        Ok(Name(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals and state caches hold ids as their text: a shared id
    /// encodes and decodes as the `String` it was before.
    #[test]
    fn an_id_is_encoded_as_its_text() {
        let member = MemberId::parse("member_id", "TB-0001").unwrap();
        let loan = LoanId::new(&member, 'L', 2);
        for (id, text) in [
            (postcard::to_stdvec(&member).unwrap(), "TB-0001"),
            (postcard::to_stdvec(&loan).unwrap(), "TB-0001/L2"),
        ] {
            assert_eq!(id, postcard::to_stdvec(&text.to_owned()).unwrap());
        }
        let bytes = postcard::to_stdvec(&"TB-0001/L2".to_owned()).unwrap();
        assert_eq!(postcard::from_bytes::<LoanId>(&bytes).unwrap(), loan);
        let bytes = postcard::to_stdvec(&"TB-0001".to_owned()).unwrap();
        assert_eq!(postcard::from_bytes::<MemberId>(&bytes).unwrap(), member);
        let account = crate::account::AccountId::Loan(loan);
        let bytes = postcard::to_stdvec(&account).unwrap();
        assert_eq!(
            postcard::from_bytes::<crate::account::AccountId>(&bytes).unwrap(),
            account
        );
        // Bytes that are not text are refused, not decoded into an id.
        let bytes = postcard::to_stdvec(&vec![0xffu8, 0xfe]).unwrap();
        assert!(postcard::from_bytes::<MemberId>(&bytes).is_err());
        // A decoder that hands over bytes, or text it does not lend, gives
        // the same id as one that lends text.
        use serde::de::IntoDeserializer;
        use serde::de::value::{BytesDeserializer, Error, StringDeserializer};
        let lent: BytesDeserializer<Error> = b"TB-0001".as_slice().into_deserializer();
        assert_eq!(shared_text(lent).unwrap().as_ref(), "TB-0001");
        let owned: StringDeserializer<Error> = "TB-0001".to_owned().into_deserializer();
        assert_eq!(shared_text(owned).unwrap().as_ref(), "TB-0001");
        let not_text: BytesDeserializer<Error> = [0xffu8].as_slice().into_deserializer();
        assert!(shared_text(not_text).is_err());
    }

    /// Under an interner, ids decoded or parsed with equal text share it,
    /// on every thread that entered it; without one, or once `enter`
    /// returns (panic or not), each has its own. The interner entered
    /// before is entered again afterwards.
    #[test]
    fn ids_under_an_interner_share_their_text() {
        let bytes = postcard::to_stdvec(&"TB-0001".to_owned()).unwrap();
        let decoded = || postcard::from_bytes::<MemberId>(&bytes).unwrap();
        let parsed = || MemberId::parse("member_id", "TB-0001").unwrap();
        let at = |id: &MemberId| id.as_str().as_ptr();
        let apart = (decoded(), parsed());
        assert_eq!(apart.0, apart.1);
        assert_ne!(at(&apart.0), at(&apart.1));

        let interner = Arc::new(Interner::default());
        let (first, second, third) = interner.enter(|| (decoded(), parsed(), decoded()));
        assert_eq!(first, apart.0);
        assert_eq!((at(&first), at(&first)), (at(&second), at(&third)));
        let elsewhere = std::thread::scope(|scope| {
            scope
                .spawn(|| interner.enter(|| (parsed(), LoanId::parse("l", "TB-0001/L1").unwrap())))
                .join()
                .unwrap()
        });
        assert_eq!(at(&elsewhere.0), at(&first));
        assert_eq!(interner.len(), 2);
        // A savings account's id made from its member's is not looked up.
        let made = interner.enter(|| SavingsAccountId::new(&first, 'C', 1));
        assert_eq!(made.as_str(), "TB-0001/C1");
        assert_eq!(interner.len(), 2);

        assert_ne!(at(&parsed()), at(&first), "the interner is left on return");
        let outer = Arc::new(Interner::default());
        let inner = Arc::new(Interner::default());
        let (a, b) = outer.enter(|| {
            let a = decoded();
            let panicked = std::panic::catch_unwind(|| {
                inner.enter(|| -> () {
                    let _ = parsed();
                    panic!("in a reading");
                })
            });
            assert!(panicked.is_err());
            (a, parsed())
        });
        assert_eq!(at(&a), at(&b), "the outer interner is entered again");
        assert_eq!((outer.len(), inner.len()), (1, 1));
        assert_ne!(at(&decoded()), at(&a));
    }

    #[test]
    fn ids_take_letters_digits_and_punctuation_only() {
        assert!(MemberId::parse("member_id", "TB-0001").is_ok());
        let err = MemberId::parse("member_id", "TB 0001")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "member_id: \"TB 0001\" contains ' '; use only letters, digits and . _ -"
        );
        let err = MemberId::parse("member_id", &"x".repeat(33))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "member_id: is 33 characters long, at most 32 allowed");
        assert_eq!(
            MemberId::parse("member_id", "").unwrap_err().to_string(),
            "member_id: is required"
        );
    }

    /// Two ids of `a` and `b` order and compare as the texts do.
    fn check_order(a: &str, b: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let ids = (RequestId(Arc::from(a)), RequestId(Arc::from(b)));
        proptest::prop_assert_eq!(ids.0.cmp(&ids.1), a.cmp(b), "{:?} against {:?}", a, b);
        proptest::prop_assert_eq!(ids.1.cmp(&ids.0), b.cmp(a));
        proptest::prop_assert_eq!(ids.0 == ids.1, a == b, "{:?} against {:?}", a, b);
        proptest::prop_assert_eq!(ids.0.partial_cmp(&ids.1), a.partial_cmp(b));
        let shared = ids.0.clone();
        proptest::prop_assert!(shared == ids.0 && shared.cmp(&ids.0).is_eq());
        Ok(())
    }

    proptest::proptest! {
        /// Ids order and compare as their texts do (`str`'s `Ord` and
        /// `==`): the state's maps, the records' keys and every listing
        /// follow that order. Two texts after a common start of any length
        /// (so that they first differ in any of the eight-byte words
        /// compared at once, or in the bytes after them), one a start of the
        /// other, equal texts, and any text at all (bytes above 0x7f too).
        #[test]
        fn ids_order_and_compare_as_their_texts(
            common in "[A-Z0-9/-]{0,40}",
            a in "[A-Z0-9/.-]{0,12}",
            b in "[A-Z0-9/.-]{0,12}",
            any_a in proptest::prelude::any::<String>(),
            any_b in proptest::prelude::any::<String>(),
        ) {
            let (a, b) = (format!("{common}{a}"), format!("{common}{b}"));
            check_order(&a, &b)?;
            check_order(&a, &a)?;
            check_order(&format!("{a}{b}"), &a)?;
            check_order(&any_a, &any_b)?;
            check_order(&format!("{common}{any_a}"), &format!("{common}{any_b}"))?;
        }
    }

    /// Texts that differ only in their last byte, at lengths either side
    /// of the eight-byte words, and by a byte above 0x7f.
    #[test]
    fn ids_differing_in_their_last_byte_order_by_it() {
        for len in [1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 40] {
            let start = "T".repeat(len - 1);
            for (x, y) in [("1", "2"), ("Z", "a"), ("a", "é"), ("/", ".")] {
                check_order(&format!("{start}{x}"), &format!("{start}{y}")).unwrap();
                check_order(&format!("{start}{x}"), &start).unwrap();
            }
        }
    }

    #[test]
    fn owned_ids_have_their_shape() {
        assert!(LoanId::parse("loan_id", "TB-0001/L1").is_ok());
        assert!(LoanId::parse("loan_id", "TB-0001/C1").is_err());
        assert!(LoanId::parse("loan_id", "TB-0001").is_err());
        assert!(SavingsAccountId::parse("account_id", "TB-0001/C1").is_ok());
        assert!(SavingsAccountId::parse("account_id", "TB-0001/V12").is_ok());
        assert!(SavingsAccountId::parse("account_id", "TB-0001/V").is_err());
    }

    #[test]
    fn names_keep_vietnamese_text() {
        let name = Name::parse("full_name", "  Nguyễn Thị Hoa ").unwrap();
        assert_eq!(name.as_str(), "Nguyễn Thị Hoa");
        assert!(Name::parse("full_name", "a\u{0}b").is_err());
    }
}
