//! Signed checkpoints of the journal's Merkle tree, in the C2SP formats
//! that transparency-log tooling reads: signed notes
//! (<https://c2sp.org/signed-note>), tlog checkpoints
//! (<https://c2sp.org/tlog-checkpoint>) and Ed25519 `cosignature/v1`
//! witness cosignatures (<https://c2sp.org/tlog-cosignature>).
//!
//! Main types: [`Checkpoint`] (origin, tree size, root hash), [`Signer`] and
//! [`Verifier`] (keys and their texts), [`Note`] (a signed note, parsed but
//! not trusted until [`Note::verify`]); `keys` keeps key files.
//!
//! Architecture invariant: this module never touches the network or the
//! ledger. It formats, parses, signs and checks texts; only `keys` does
//! I/O, and only on the key files it is given.

pub mod keys;
pub mod note;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use note::{KeyKind, Note, NoteError, SignatureLine, Signer, Verified, Verifier};

/// A Merkle tree hash (SHA-256).
pub type Hash = crate::domain::entry::Hash;

/// Extension lines a checkpoint may carry (the spec does not recommend
/// any; this ledger writes one, the access log's anchor:
/// `ledger::access_log_anchor`).
pub const EXTENSIONS_MAX: usize = 16;

/// A tree head: the tree of the first `size` entries of the log `origin`
/// has root `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity; the log's key has this name.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of that tree.
    pub root: Hash,
    /// Opaque, non-empty lines after the root (from this ledger, the access
    /// log's anchor).
    pub extensions: Vec<String>,
}

fn malformed(what: impl Into<String>) -> NoteError {
    NoteError::MalformedCheckpoint(what.into())
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then one line
    /// per extension.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Reads a note text strictly: a non-empty origin, the size in decimal
    /// with no leading zero, the base64 of a 32-byte root, then non-empty
    /// extension lines; every line ends in a newline.
    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the text does not end in a newline"));
        };
        if let Some(c) = body.chars().find(|&c| c < ' ' && c != '\n') {
            return Err(malformed(format!("control character U+{:04X}", c as u32)));
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(malformed(
                "fewer than three lines (origin, tree size, root hash)",
            ));
        };
        if origin.is_empty() {
            return Err(malformed("the origin line is empty"));
        }
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: lines.map(str::to_owned).collect(),
        };
        if checkpoint.extensions.iter().any(String::is_empty) {
            return Err(malformed("an empty extension line"));
        }
        if checkpoint.extensions.len() > EXTENSIONS_MAX {
            return Err(malformed(format!(
                "more than {EXTENSIONS_MAX} extension lines"
            )));
        }
        Ok(checkpoint)
    }

    /// The signed note: the body, a blank line and `signer`'s line. The
    /// signer is the log's Ed25519 key (its name should be the origin).
    pub fn sign(&self, signer: &Signer) -> String {
        let body = self.body();
        let line = signer.signature_line(&body);
        format!("{body}\n{line}")
    }

    /// Parses a signed note, checks it carries a valid signature by `log`
    /// and that its text is a checkpoint whose origin is `log`'s name;
    /// returns it and the parsed note (with every other line, kept).
    pub fn open(note: &str, log: &Verifier) -> Result<(Checkpoint, Note), NoteError> {
        let parsed = Note::parse(note)?;
        if parsed.verify(log)?.is_none() {
            return Err(NoteError::Unsigned {
                name: log.name().to_owned(),
            });
        }
        let checkpoint = Checkpoint::parse_body(&parsed.text)?;
        if checkpoint.origin != log.name() {
            return Err(NoteError::WrongOrigin {
                origin: checkpoint.origin,
                log: log.name().to_owned(),
            });
        }
        Ok((checkpoint, parsed))
    }
}

fn parse_size(line: &str) -> Result<u64, NoteError> {
    let digits_only = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (line.len() > 1 && line.starts_with('0')) {
        return Err(malformed(format!(
            "tree size {line:?} is not a decimal number without leading zeros"
        )));
    }
    line.parse()
        .map_err(|_| malformed(format!("tree size {line:?} does not fit 64 bits")))
}

fn parse_root(line: &str) -> Result<Hash, NoteError> {
    let bytes = BASE64
        .decode(line)
        .map_err(|e| malformed(format!("root hash {line:?} is not base64: {e}")))?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| malformed(format!("root hash has {} bytes, not 32", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "example.org/books".to_owned(),
            size: 20852163,
            root: [0x0a; 32],
            extensions: Vec::new(),
        }
    }

    fn log_key() -> Signer {
        Signer::from_seed("example.org/books", KeyKind::Ed25519, [1; 32]).unwrap()
    }

    #[test]
    fn the_c2sp_example_body_round_trips() {
        // https://github.com/C2SP/C2SP/blob/main/tlog-checkpoint.md
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let parsed = Checkpoint::parse_body(text).unwrap();
        assert_eq!(parsed.origin, "example.com/behind-the-sofa");
        assert_eq!(parsed.size, 20852163);
        assert_eq!(parsed.body(), text);
    }

    #[test]
    fn bodies_with_extensions_and_the_empty_tree_round_trip() {
        for checkpoint in [
            checkpoint(),
            Checkpoint {
                size: 0,
                extensions: vec!["ext one".to_owned(), "two".to_owned()],
                ..checkpoint()
            },
        ] {
            assert_eq!(Checkpoint::parse_body(&checkpoint.body()), Ok(checkpoint));
        }
    }

    #[test]
    fn bodies_that_are_not_checkpoints_are_refused_saying_why() {
        let root = BASE64.encode([0u8; 32]);
        let cases = [
            (format!("o\n1\n{root}"), "newline"),
            ("o\n1\n".to_owned(), "fewer than three lines"),
            (format!("\n1\n{root}\n"), "origin line is empty"),
            (format!("o\n01\n{root}\n"), "leading zeros"),
            (format!("o\n+1\n{root}\n"), "leading zeros"),
            (format!("o\n\n{root}\n"), "leading zeros"),
            (format!("o\n18446744073709551616\n{root}\n"), "64 bits"),
            ("o\n1\nAAAA\n".to_owned(), "3 bytes, not 32"),
            ("o\n1\nnot base64!\n".to_owned(), "not base64"),
            (format!("o\n1\n{root}\n\n"), "empty extension line"),
            (format!("o\n1\n{root}\nx\ty\n"), "control character"),
        ];
        for (text, expected) in cases {
            let error = Checkpoint::parse_body(&text).unwrap_err().to_string();
            assert!(
                error.starts_with("malformed checkpoint"),
                "{text:?}: {error}"
            );
            assert!(
                error.contains(expected),
                "{text:?}: {error}, want {expected}"
            );
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_log_key() {
        let key = log_key();
        let note = checkpoint().sign(&key);
        let (opened, parsed) = Checkpoint::open(&note, &key.verifier()).unwrap();
        assert_eq!(opened, checkpoint());
        assert_eq!(parsed.to_text(), note);
    }

    #[test]
    fn open_refuses_another_key_a_changed_byte_and_another_origin() {
        let key = log_key();
        let note = checkpoint().sign(&key);
        let other = Signer::from_seed("example.org/books", KeyKind::Ed25519, [2; 32]).unwrap();
        assert_eq!(
            Checkpoint::open(&note, &other.verifier())
                .unwrap_err()
                .to_string(),
            "note has no signature by example.org/books"
        );
        let changed = note.replace("20852163", "20852164");
        assert_eq!(
            Checkpoint::open(&changed, &key.verifier())
                .unwrap_err()
                .to_string(),
            "signature by example.org/books does not verify"
        );
        let elsewhere = Signer::from_seed("example.org/other", KeyKind::Ed25519, [1; 32]).unwrap();
        let note = checkpoint().sign(&elsewhere);
        assert!(matches!(
            Checkpoint::open(&note, &elsewhere.verifier()),
            Err(NoteError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn a_cosigned_checkpoint_keeps_both_lines() {
        let key = log_key();
        let witness =
            Signer::from_seed("witness.example/w", KeyKind::Cosignature, [3; 32]).unwrap();
        let note = checkpoint().sign(&key);
        let (_, mut parsed) = Checkpoint::open(&note, &key.verifier()).unwrap();
        let line = witness.cosignature_line(&parsed.text, 1_679_315_147);
        parsed.add_signature_line(&line).unwrap();
        let (_, reopened) = Checkpoint::open(&parsed.to_text(), &key.verifier()).unwrap();
        assert_eq!(
            reopened
                .verify(&witness.verifier())
                .unwrap()
                .unwrap()
                .timestamp,
            Some(1_679_315_147)
        );
        assert_eq!(reopened.signature_lines_by(&witness.verifier()), vec![line]);
    }
}
