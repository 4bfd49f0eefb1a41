//! C2SP signed notes (<https://c2sp.org/signed-note>): a text, a blank line,
//! and signature lines `— <key name> base64(key ID ‖ signature)`.
//!
//! Two kinds of key: Ed25519 note signatures (type 0x01, what the log signs
//! its checkpoints with) and Ed25519 `cosignature/v1` (type 0x04, what a
//! witness adds, <https://c2sp.org/tlog-cosignature>). Keys travel as the
//! texts of Go's `golang.org/x/mod/sumdb/note`: the verifier key
//! `<name>+<hex key ID>+base64(type ‖ public key)` and the private key
//! `PRIVATE+KEY+<name>+<hex key ID>+base64(type ‖ seed)`.
//!
//! Signature lines by keys a reader does not know are kept, in order, and
//! ignored, as the spec requires. Nothing here reads a file or a clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// A note longer than this is refused (the spec asks for a limit; a
/// checkpoint with a hundred cosignatures is about 12 KiB).
pub const NOTE_BYTES_MAX: usize = 1 << 20;

/// Signature lines a note may carry (the spec asks for at least 16; Go's
/// implementation allows 100).
pub const SIGNATURES_MAX: usize = 100;

/// The separator before every signature line: U+2014 EM DASH, a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The first line of the message a `cosignature/v1` signs.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// Bytes of an Ed25519 seed, public key and signature.
const SEED_BYTES: usize = 32;
const PUBLIC_KEY_BYTES: usize = 32;
const ED25519_SIGNATURE_BYTES: usize = 64;
/// A cosignature: the 8-byte big-endian timestamp, then the signature.
const COSIGNATURE_BYTES: usize = 8 + ED25519_SIGNATURE_BYTES;

/// What is wrong with a note, a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not have the signed-note form.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// The text of the note is not a tlog checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A verifier or private key text that cannot be read.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The note carries no line by the key asked for.
    #[error("note has no signature by {name}")]
    Unsigned { name: String },
    /// A line by the key asked for does not verify.
    #[error("signature by {name} does not verify")]
    BadSignature { name: String },
    /// A checkpoint of another log.
    #[error("checkpoint origin {origin:?} is not the log {log:?}")]
    WrongOrigin { origin: String, log: String },
    /// The operating system gave no random bytes for a new key.
    #[error("no random bytes for a new key: {0}")]
    Random(String),
}

fn malformed(what: impl Into<String>) -> NoteError {
    NoteError::Malformed(what.into())
}

fn malformed_key(what: impl Into<String>) -> NoteError {
    NoteError::MalformedKey(what.into())
}

/// The algorithm of a key, and so its type byte in key IDs and key texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Ed25519 over the note text (type 0x01): the log's key.
    Ed25519,
    /// Ed25519 `cosignature/v1` over a header, a time line and the note
    /// text (type 0x04): a witness's key.
    Cosignature,
}

impl KeyKind {
    /// The signature type byte the signed-note spec assigns.
    pub fn type_byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => 0x01,
            KeyKind::Cosignature => 0x04,
        }
    }

    fn from_type_byte(byte: u8) -> Result<KeyKind, NoteError> {
        match byte {
            0x01 => Ok(KeyKind::Ed25519),
            0x04 => Ok(KeyKind::Cosignature),
            other => Err(malformed_key(format!(
                "unknown signature type 0x{other:02x} (known: 0x01 Ed25519, 0x04 cosignature/v1)"
            ))),
        }
    }
}

/// The fields of a key's text form after its name: the key ID, and the
/// type byte and the 32 key bytes (a seed or a public key) in base64.
fn key_fields(
    name: &str,
    hash_hex: &str,
    key_base64: &str,
    what: &str,
    bytes_are: &str,
) -> Result<([u8; 4], KeyKind, [u8; 32]), NoteError> {
    check_name(name)?;
    let hash = parse_key_hash(hash_hex)?;
    let key = BASE64
        .decode(key_base64)
        .map_err(|e| malformed_key(format!("{what} is not base64: {e}")))?;
    let Some((&type_byte, bytes)) = key.split_first() else {
        return Err(malformed_key(format!("{what} is empty")));
    };
    let kind = KeyKind::from_type_byte(type_byte)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        malformed_key(format!(
            "{what} of {name} has {} bytes, not a 32{bytes_are}",
            bytes.len()
        ))
    })?;
    Ok((hash, kind, bytes))
}

/// `<name>+<key hash in hex>+<base64 of the type byte and key>`: the text
/// form of a verifier key, and of a private key after `PRIVATE+KEY+`.
fn key_text(name: &str, key_hash: [u8; 4], kind: KeyKind, key: &[u8]) -> String {
    let mut typed = Vec::with_capacity(1 + key.len());
    typed.push(kind.type_byte());
    typed.extend_from_slice(key);
    format!("{name}+{}+{}", hex::encode(key_hash), BASE64.encode(typed))
}

/// SHA-256(name ‖ "\n" ‖ type ‖ public key)\[:4\]: the key ID every
/// signature line and key text carries.
pub fn key_hash(name: &str, kind: KeyKind, public_key: &[u8; PUBLIC_KEY_BYTES]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([kind.type_byte()]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name: non-empty, no Unicode space, no `+` (as the spec and Go's
/// `isValidName` say).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(malformed_key(format!(
            "key name {name:?} is empty or holds a space or a '+'"
        )))
    }
}

/// Parses the 8 lowercase-or-uppercase hex digits of a key ID.
fn parse_key_hash(hex_text: &str) -> Result<[u8; 4], NoteError> {
    let mut hash = [0u8; 4];
    if hex_text.len() != 8 || hex::decode_to_slice(hex_text, &mut hash).is_err() {
        return Err(malformed_key(format!(
            "key ID {hex_text:?} is not 8 hex digits"
        )));
    }
    Ok(hash)
}

/// The message a `cosignature/v1` signs for `text` at `timestamp`.
fn cosigned_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{text}").into_bytes()
}

/// A private key: signs notes (Ed25519) or cosigns checkpoints.
pub struct Signer {
    name: String,
    kind: KeyKind,
    key_hash: [u8; 4],
    seed: [u8; SEED_BYTES],
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key_hash", &hex::encode(self.key_hash))
            .field("seed", &"<secret>")
            .finish()
    }
}

impl Signer {
    /// A new key named `name`, from the operating system's random source.
    pub fn generate(name: &str, kind: KeyKind) -> Result<Signer, NoteError> {
        let mut seed = [0u8; SEED_BYTES];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Random(e.to_string()))?;
        Signer::from_seed(name, kind, seed)
    }

    /// The key of `name` and `kind` whose Ed25519 seed is `seed`.
    pub fn from_seed(
        name: &str,
        kind: KeyKind,
        seed: [u8; SEED_BYTES],
    ) -> Result<Signer, NoteError> {
        check_name(name)?;
        let key_pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| malformed_key("not an Ed25519 seed"))?;
        let public_key = public_key_of(&key_pair);
        Ok(Signer {
            name: name.to_owned(),
            kind,
            key_hash: key_hash(name, kind, &public_key),
            seed,
            key_pair,
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<hex key ID>+base64(type ‖ seed)`, the
    /// form of Go's `note.GenerateKey` (type 0x04 for a cosignature key).
    /// The key ID must be the one the key has.
    pub fn from_text(private_key: &str) -> Result<Signer, NoteError> {
        let mut parts = private_key.trim_end_matches('\n').splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hash_hex), Some(key_base64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed_key(
                "a private key reads PRIVATE+KEY+<name>+<key ID>+<key>",
            ));
        };
        let (hash, kind, seed) =
            key_fields(name, hash_hex, key_base64, "private key", "-byte seed")?;
        let signer = Signer::from_seed(name, kind, seed)?;
        if signer.key_hash != hash {
            return Err(malformed_key(format!(
                "private key of {name} says key ID {hash_hex}, but the key's is {}",
                hex::encode(signer.key_hash)
            )));
        }
        Ok(signer)
    }

    /// The private key text (see [`Signer::from_text`]). A secret.
    pub fn to_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            key_text(&self.name, self.key_hash, self.kind, &self.seed)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key ID.
    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The public half.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            kind: self.kind,
            key_hash: self.key_hash,
            public_key: public_key_of(&self.key_pair),
        }
    }

    /// The signature line of an Ed25519 key over the note text `text`
    /// (which ends in a newline): `— <name> base64(key ID ‖ signature)\n`.
    ///
    /// Panics for a cosignature key, whose lines carry a time
    /// ([`Signer::cosignature_line`]): calling this with one is a bug.
    pub fn signature_line(&self, text: &str) -> String {
        assert_eq!(
            self.kind,
            KeyKind::Ed25519,
            "signature_line needs an Ed25519 note key; {} is a cosignature key",
            self.name
        );
        debug_assert!(text.ends_with('\n'), "a note text ends in a newline");
        let signature = self.key_pair.sign(text.as_bytes());
        self.line(signature.as_ref())
    }

    /// The `cosignature/v1` line of a cosignature key over the checkpoint
    /// text `text` at `timestamp` (POSIX seconds, at most 2^63 − 1): it
    /// signs `cosignature/v1\ntime <timestamp>\n` ‖ text, and the line
    /// carries key ID ‖ timestamp (8 bytes, big-endian) ‖ signature.
    ///
    /// Panics for an Ed25519 note key or a timestamp over 2^63 − 1: both
    /// are bugs.
    pub fn cosignature_line(&self, text: &str, timestamp: u64) -> String {
        assert_eq!(
            self.kind,
            KeyKind::Cosignature,
            "cosignature_line needs a cosignature key; {} is an Ed25519 note key",
            self.name
        );
        assert!(
            timestamp <= i64::MAX as u64,
            "a cosignature time fits 63 bits"
        );
        debug_assert!(text.ends_with('\n'), "a note text ends in a newline");
        let signature = self.key_pair.sign(&cosigned_message(text, timestamp));
        let mut bytes = Vec::with_capacity(COSIGNATURE_BYTES);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(signature.as_ref());
        self.line(&bytes)
    }

    fn line(&self, signature: &[u8]) -> String {
        SignatureLine {
            name: self.name.clone(),
            key_hash: self.key_hash,
            signature: signature.to_vec(),
        }
        .to_line()
    }
}

fn public_key_of(key_pair: &Ed25519KeyPair) -> [u8; PUBLIC_KEY_BYTES] {
    key_pair
        .public_key()
        .as_ref()
        .try_into()
        .expect("an Ed25519 public key has 32 bytes")
}

/// A public key: checks the lines of its [`Signer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    kind: KeyKind,
    key_hash: [u8; 4],
    public_key: [u8; PUBLIC_KEY_BYTES],
}

impl Verifier {
    /// Reads a verifier key, `<name>+<hex key ID>+base64(type ‖ public
    /// key)`; the key ID must be the one the name, type and key give.
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let mut parts = text.trim_end_matches('\n').splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_base64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed_key("a verifier key reads <name>+<key ID>+<key>"));
        };
        let (hash, kind, public_key) = key_fields(
            name,
            hash_hex,
            key_base64,
            "verifier key",
            "-byte public key",
        )?;
        let expected = key_hash(name, kind, &public_key);
        if expected != hash {
            return Err(malformed_key(format!(
                "verifier key of {name} says key ID {hash_hex}, but the key's is {}",
                hex::encode(expected)
            )));
        }
        Ok(Verifier {
            name: name.to_owned(),
            kind,
            key_hash: hash,
            public_key,
        })
    }

    /// The verifier key text (see [`Verifier::parse`]).
    pub fn to_text(&self) -> String {
        key_text(&self.name, self.key_hash, self.kind, &self.public_key)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key ID.
    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.public_key
    }

    /// Whether `line` is this key's (same name and key ID).
    fn is_key_of(&self, line: &SignatureLine) -> bool {
        line.name == self.name && line.key_hash == self.key_hash
    }

    /// Checks one of this key's lines over `text`; the cosignature's time.
    fn check(&self, text: &str, line: &SignatureLine) -> Result<Verified, NoteError> {
        let bad = || NoteError::BadSignature {
            name: self.name.clone(),
        };
        let public_key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        match self.kind {
            KeyKind::Ed25519 => {
                public_key
                    .verify(text.as_bytes(), &line.signature)
                    .map_err(|_| bad())?;
                Ok(Verified { timestamp: None })
            }
            KeyKind::Cosignature => {
                if line.signature.len() != COSIGNATURE_BYTES {
                    return Err(bad());
                }
                let (time, signature) = line.signature.split_at(8);
                let timestamp = u64::from_be_bytes(time.try_into().expect("8 bytes"));
                if timestamp > i64::MAX as u64 {
                    return Err(bad());
                }
                public_key
                    .verify(&cosigned_message(text, timestamp), signature)
                    .map_err(|_| bad())?;
                Ok(Verified {
                    timestamp: Some(timestamp),
                })
            }
        }
    }
}

/// What a verified line says beyond "this key signed the text".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// A cosignature's time (POSIX seconds); `None` for a note signature.
    pub timestamp: Option<u64>,
}

/// One signature line, whoever's key it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: String,
    /// The key ID: the first four decoded bytes.
    pub key_hash: [u8; 4],
    /// The rest of the decoded bytes (for a cosignature: the timestamp,
    /// then the signature).
    pub signature: Vec<u8>,
}

impl SignatureLine {
    /// Reads one line, with or without its final newline.
    pub fn parse(line: &str) -> Result<SignatureLine, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.contains('\n') {
            return Err(malformed("a signature line holds a newline"));
        }
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            malformed(format!(
                "signature line {line:?} does not start with an em dash (U+2014) and a space"
            ))
        })?;
        let (name, signature_base64) = rest.split_once(' ').ok_or_else(|| {
            malformed(format!(
                "signature line {line:?} has no space after the key name"
            ))
        })?;
        if !is_valid_name(name) {
            return Err(malformed(format!(
                "signature line {line:?} has an invalid key name"
            )));
        }
        let bytes = BASE64
            .decode(signature_base64)
            .map_err(|e| malformed(format!("signature of {name} is not base64: {e}")))?;
        if bytes.len() < 5 {
            return Err(malformed(format!(
                "signature of {name} is {} bytes, too short for a key ID and a signature",
                bytes.len()
            )));
        }
        Ok(SignatureLine {
            name: name.to_owned(),
            key_hash: [bytes[0], bytes[1], bytes[2], bytes[3]],
            signature: bytes[4..].to_vec(),
        })
    }

    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_hash);
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(bytes))
    }
}

/// A signed note, read but not yet trusted: a text and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline; what the signatures sign.
    pub text: String,
    /// Every signature line, in the note's order, known keys or not.
    pub signatures: Vec<SignatureLine>,
}

impl Note {
    /// A note of `text` with no signature yet. The text must be a note
    /// text: non-empty, ending in a newline, with no control character but
    /// the newline.
    pub fn new(text: &str) -> Result<Note, NoteError> {
        check_characters(text)?;
        if !text.ends_with('\n') {
            return Err(malformed("the text does not end in a newline"));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Reads a signed note, as Go's `note.Open` does: valid UTF-8 with no
    /// control character but the newline, split at the last blank line
    /// into the text (with its final newline) and one or more signature
    /// lines. Checks no signature.
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(malformed(format!(
                "{} bytes, over the {NOTE_BYTES_MAX} a note may have",
                note.len()
            )));
        }
        check_characters(note)?;
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line between the text and the signatures"))?;
        let (text, lines) = (&note[..=split], &note[split + 2..]);
        if lines.is_empty() {
            return Err(malformed("no signature line after the blank line"));
        }
        if !lines.ends_with('\n') {
            return Err(malformed(
                "the last signature line does not end in a newline",
            ));
        }
        let mut parsed = Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        for line in lines.split_inclusive('\n') {
            parsed.add_signature_line(line)?;
        }
        Ok(parsed)
    }

    /// Finds the lines of `verifier` (name and key ID both match) and
    /// checks them: `Ok(None)` when there is none, an error when one does
    /// not verify. For a cosignature key, the latest time of its lines.
    pub fn verify(&self, verifier: &Verifier) -> Result<Option<Verified>, NoteError> {
        let mut verified: Option<Verified> = None;
        for line in self.signatures.iter().filter(|l| verifier.is_key_of(l)) {
            let this = verifier.check(&self.text, line)?;
            verified = Some(match verified {
                Some(before) if before.timestamp >= this.timestamp => before,
                _ => this,
            });
        }
        Ok(verified)
    }

    /// The note: text, blank line, signature lines in order.
    pub fn to_text(&self) -> String {
        let mut note = String::with_capacity(self.text.len() + 1 + 120 * self.signatures.len());
        note.push_str(&self.text);
        note.push('\n');
        for line in &self.signatures {
            note.push_str(&line.to_line());
        }
        note
    }

    /// Adds a signature line (with or without its newline); a line the note
    /// already has is not added twice. Checks its form, not its signature.
    pub fn add_signature_line(&mut self, line: &str) -> Result<(), NoteError> {
        let line = SignatureLine::parse(line)?;
        if self.signatures.contains(&line) {
            return Ok(());
        }
        if self.signatures.len() == SIGNATURES_MAX {
            return Err(malformed(format!(
                "more than {SIGNATURES_MAX} signature lines"
            )));
        }
        self.signatures.push(line);
        Ok(())
    }

    /// The lines of `verifier`'s key, as text with their newlines.
    pub fn signature_lines_by(&self, verifier: &Verifier) -> Vec<String> {
        self.signatures
            .iter()
            .filter(|l| verifier.is_key_of(l))
            .map(SignatureLine::to_line)
            .collect()
    }
}

/// No ASCII control character but the newline (the input is UTF-8 already).
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(malformed("empty"));
    }
    match text.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((at, c)) => Err(malformed(format!(
            "control character U+{:04X} at byte {at}",
            c as u32
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's example key and note, golang.org/x/mod/sumdb/note
    /// (`example_test.go`, `note_test.go`):
    /// <https://github.com/golang/mod/blob/master/sumdb/note/example_test.go>.
    const PETER_PRIVATE: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VERIFIER: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter_note() -> String {
        format!("{PETER_TEXT}\n{PETER_LINE}")
    }

    fn cosigner() -> Signer {
        Signer::from_seed("witness.example/w1", KeyKind::Cosignature, [7; 32]).unwrap()
    }

    #[test]
    fn go_example_key_has_its_published_key_id_and_signs_the_published_line() {
        let signer = Signer::from_text(PETER_PRIVATE).unwrap();
        assert_eq!(signer.key_hash(), [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(signer.verifier().to_text(), PETER_VERIFIER);
        assert_eq!(signer.to_text(), PETER_PRIVATE);
        assert_eq!(signer.signature_line(PETER_TEXT), PETER_LINE);
        let verifier = Verifier::parse(PETER_VERIFIER).unwrap();
        let note = Note::parse(&peter_note()).unwrap();
        assert_eq!(note.text, PETER_TEXT);
        assert_eq!(
            note.verify(&verifier),
            Ok(Some(Verified { timestamp: None }))
        );
        assert_eq!(note.to_text(), peter_note());
    }

    #[test]
    fn key_texts_round_trip_for_both_kinds() {
        for kind in [KeyKind::Ed25519, KeyKind::Cosignature] {
            let signer = Signer::generate("example.org/log", kind).unwrap();
            let again = Signer::from_text(&signer.to_text()).unwrap();
            assert_eq!(again.verifier(), signer.verifier());
            assert_eq!(again.kind(), kind);
            let verifier = Verifier::parse(&signer.verifier().to_text()).unwrap();
            assert_eq!(verifier, signer.verifier());
            assert_eq!(verifier.kind(), kind);
        }
    }

    #[test]
    fn a_note_with_any_one_byte_changed_does_not_verify() {
        let verifier = Verifier::parse(PETER_VERIFIER).unwrap();
        let note = peter_note().into_bytes();
        for at in 0..note.len() {
            let mut changed = note.clone();
            changed[at] ^= 0x01;
            let Ok(changed) = String::from_utf8(changed) else {
                continue;
            };
            let outcome = Note::parse(&changed).and_then(|n| n.verify(&verifier));
            assert!(
                !matches!(outcome, Ok(Some(_))),
                "byte {at} changed and the note still verifies"
            );
        }
    }

    #[test]
    fn a_changed_text_names_the_key_whose_signature_fails() {
        let verifier = Verifier::parse(PETER_VERIFIER).unwrap();
        let changed = peter_note().replace("problem,", "problem;");
        let error = Note::parse(&changed)
            .unwrap()
            .verify(&verifier)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "signature by PeterNeumann does not verify"
        );
    }

    #[test]
    fn malformed_and_truncated_notes_are_refused_saying_why() {
        let note = peter_note();
        let cases: &[(&str, &str)] = &[
            ("", "malformed note: empty"),
            (PETER_TEXT, "no blank line"),
            (&note[..note.len() - 1], "does not end in a newline"),
            (&note[..PETER_TEXT.len() + 1], "no signature line"),
            (&note[..note.len() - 20], "does not end in a newline"),
            (&note.replace('—', "-"), "em dash"),
            (
                &note.replace("Peter", "Pe\tter"),
                "control character U+0009",
            ),
            (&note.replace("x08go", "x08g!"), "not base64"),
            ("text\n\n— name AAAA\n", "too short"),
        ];
        for (input, expected) in cases {
            let error = Note::parse(input).unwrap_err().to_string();
            assert!(error.starts_with("malformed note"), "{input:?}: {error}");
            assert!(
                error.contains(expected),
                "{input:?}: {error}, want {expected}"
            );
        }
    }

    #[test]
    fn unknown_signature_lines_are_kept_in_order_and_ignored() {
        let other = Signer::generate("someone.else/key", KeyKind::Ed25519).unwrap();
        let note = format!("{}{}", peter_note(), other.signature_line(PETER_TEXT));
        let mut parsed = Note::parse(&note).unwrap();
        assert_eq!(parsed.signatures.len(), 2);
        assert_eq!(parsed.to_text(), note);
        let peter = Verifier::parse(PETER_VERIFIER).unwrap();
        assert!(parsed.verify(&peter).unwrap().is_some());
        let stranger = Signer::generate("nobody", KeyKind::Ed25519).unwrap();
        assert_eq!(parsed.verify(&stranger.verifier()), Ok(None));
        // The same name with another key ID is someone else, not a bad line.
        let same_name = Signer::generate("PeterNeumann", KeyKind::Ed25519).unwrap();
        assert_eq!(parsed.verify(&same_name.verifier()), Ok(None));
        assert_eq!(
            parsed.signature_lines_by(&peter),
            vec![PETER_LINE.to_owned()]
        );
        parsed.add_signature_line(PETER_LINE).unwrap();
        assert_eq!(
            parsed.signatures.len(),
            2,
            "a line already there is not added again"
        );
    }

    #[test]
    fn cosignatures_sign_the_header_the_time_and_the_text() {
        let text = "example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let witness = cosigner();
        let line = witness.cosignature_line(text, 1_700_000_000);
        let mut note = Note::new(text).unwrap();
        note.add_signature_line(&line).unwrap();
        let note = Note::parse(&note.to_text()).unwrap();
        assert_eq!(
            note.verify(&witness.verifier()),
            Ok(Some(Verified {
                timestamp: Some(1_700_000_000)
            }))
        );
        let signature = &note.signatures[0].signature;
        assert_eq!(signature.len(), 72);
        assert_eq!(&signature[..8], &1_700_000_000u64.to_be_bytes());
        // The signature is over the message the spec gives, with the time.
        let message = format!("cosignature/v1\ntime 1700000000\n{text}");
        UnparsedPublicKey::new(&ED25519, witness.verifier().public_key())
            .verify(message.as_bytes(), &signature[8..])
            .unwrap();
    }

    #[test]
    fn a_cosignature_with_another_time_does_not_verify() {
        let text = "example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let witness = cosigner();
        let mut line =
            SignatureLine::parse(&witness.cosignature_line(text, 1_700_000_000)).unwrap();
        line.signature[..8].copy_from_slice(&1_700_000_001u64.to_be_bytes());
        let note = Note {
            text: text.to_owned(),
            signatures: vec![line],
        };
        assert_eq!(
            note.verify(&witness.verifier()).unwrap_err().to_string(),
            "signature by witness.example/w1 does not verify"
        );
    }

    #[test]
    fn the_same_seed_under_the_two_kinds_is_two_keys() {
        let log = Signer::from_seed("example.org/k", KeyKind::Ed25519, [7; 32]).unwrap();
        let witness = Signer::from_seed("example.org/k", KeyKind::Cosignature, [7; 32]).unwrap();
        assert_ne!(log.key_hash(), witness.key_hash());
        let text = "hello\n";
        let note = format!("{text}\n{}", log.signature_line(text));
        assert_eq!(
            Note::parse(&note).unwrap().verify(&witness.verifier()),
            Ok(None)
        );
    }

    #[test]
    fn key_texts_that_lie_or_are_broken_are_refused() {
        let cases: &[(&str, &str)] = &[
            (
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "key's is c74f20a3",
            ),
            ("PeterNeumann+c74f20a3", "<name>+<key ID>+<key>"),
            (
                "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "8 hex digits",
            ),
            (
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "key name",
            ),
            (
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "unknown signature type 0x65",
            ),
            (
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                "not base64",
            ),
            (
                "PeterNeumann+5bdbe860+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
                "33 bytes",
            ),
        ];
        for (text, expected) in cases {
            let error = Verifier::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}, want {expected}");
        }
        let wrong_hash = PETER_PRIVATE.replace("c74f20a3", "c74f20a4");
        assert!(Signer::from_text(&wrong_hash).is_err());
        assert!(Signer::from_text(PETER_VERIFIER).is_err());
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let signer = Signer::from_text(PETER_PRIVATE).unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains("AYEKFALVFGyNhPJEMzD1QIDr"), "{shown}");
        assert!(!shown.contains(&hex::encode(signer.seed)), "{shown}");
        assert!(shown.contains("PeterNeumann"));
    }

    #[test]
    fn c2sp_example_note_verifies() {
        // https://github.com/C2SP/C2SP/blob/main/signed-note.md#example
        let verifier = Verifier::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert!(
            Note::parse(note)
                .unwrap()
                .verify(&verifier)
                .unwrap()
                .is_some()
        );
    }
}
