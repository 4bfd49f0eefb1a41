//! The domain's one error type: why the ledger refused a command or a query.
//!
//! Each variant maps to exactly one gRPC status in `api::status` (the only
//! place that knows gRPC). Messages name the field or object and the problem.
//!
//! A message repeats a client's value only through [`echo`], which cuts it
//! short: a refusal stays small whatever the client sent (a gRPC client
//! refuses a status message larger than its metadata limit).

/// Most characters of a client's value a message repeats.
pub const ECHO_CHARS_MAX: usize = 64;

/// Longest message or field name an error keeps, in bytes: a safety net
/// under [`echo`], so that no refusal outgrows what a gRPC client accepts.
pub const MESSAGE_BYTES_MAX: usize = 1024;

/// A client's value as a message shows it: quoted, and when longer than
/// [`ECHO_CHARS_MAX`] characters, its first ones followed by `…(N bytes)`.
///
/// ```
/// use mfi_ledger_domain::error::echo;
///
/// assert_eq!(echo("12a"), "\"12a\"");
/// let long = "9".repeat(10_000);
/// assert_eq!(echo(&long), format!("\"{}\"…(10000 bytes)", "9".repeat(64)));
/// ```
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS_MAX) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}…({} bytes)", &text[..cut], text.len()),
    }
}

/// `text` cut to at most [`MESSAGE_BYTES_MAX`] bytes, on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MESSAGE_BYTES_MAX {
        let mut cut = MESSAGE_BYTES_MAX - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Why the ledger refused a command or a query. A refused command writes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed input: bad decimal, missing field, unknown enum, too long.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An object named by the command does not exist.
    #[error("{field}: {kind} {} not found", echo(id))]
    NotFound {
        field: String,
        kind: &'static str,
        id: String,
    },
    /// An object the command would create already exists.
    #[error("{field}: {kind} {} already exists", echo(id))]
    AlreadyExists {
        field: String,
        kind: &'static str,
        id: String,
    },
    /// Valid input that the ledger's current state forbids.
    #[error("{field}: {message}")]
    Precondition { field: String, message: String },
    /// The request id was used before for a different request.
    #[error(
        "request_id: {} was already used for a different request (entry {sequence}); use a new request id",
        echo(request_id)
    )]
    RequestIdReused { request_id: String, sequence: u64 },
    /// A sum or product does not fit in a decimal.
    #[error("arithmetic overflow: the amounts involved are too large")]
    Overflow,
    /// The principal holds no role that allows the command or the read.
    /// The message names what was refused and which roles allow it, never
    /// anything about the object asked for.
    #[error("permission denied: {message}")]
    PermissionDenied { message: String },
    /// What the ledger keeps cannot answer: damaged, a fault of the
    /// ledger's and not of the request (which changed nothing).
    #[error("{message}")]
    Damaged { message: String },
    /// What the ledger keeps could not be read just now (its store failed
    /// to): the request changed nothing and may be sent again.
    #[error("{message}")]
    Unavailable { message: String },
}

impl DomainError {
    /// Malformed input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> DomainError {
        DomainError::Invalid {
            field: bounded(field.to_owned()),
            message: bounded(message.into()),
        }
    }

    /// Valid input in `field` that the ledger's state forbids.
    pub fn precondition(field: &str, message: impl Into<String>) -> DomainError {
        DomainError::Precondition {
            field: bounded(field.to_owned()),
            message: bounded(message.into()),
        }
    }

    /// `id`, given in `field`, names no `kind`.
    pub fn not_found(field: &str, kind: &'static str, id: impl Into<String>) -> DomainError {
        DomainError::NotFound {
            field: bounded(field.to_owned()),
            kind,
            id: id.into(),
        }
    }

    /// `id`, given in `field`, already names a `kind`.
    pub fn already_exists(field: &str, kind: &'static str, id: impl Into<String>) -> DomainError {
        DomainError::AlreadyExists {
            field: bounded(field.to_owned()),
            kind,
            id: id.into(),
        }
    }
}

impl DomainError {
    /// The same error with its field changed by `change`.
    fn map_field(self, change: impl FnOnce(String) -> String) -> DomainError {
        match self {
            DomainError::Invalid { field, message } => DomainError::Invalid {
                field: change(field),
                message,
            },
            DomainError::NotFound { field, kind, id } => DomainError::NotFound {
                field: change(field),
                kind,
                id,
            },
            DomainError::AlreadyExists { field, kind, id } => DomainError::AlreadyExists {
                field: change(field),
                kind,
                id,
            },
            DomainError::Precondition { field, message } => DomainError::Precondition {
                field: change(field),
                message,
            },
            other => other,
        }
    }

    /// The same error with the leading field component `from` renamed `to`
    /// (e.g. a command's `amount` is a collection line's `repayment`).
    pub fn renamed(self, from: &str, to: &str) -> DomainError {
        self.map_field(|field| match field.strip_prefix(from) {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("{to}{rest}"),
            _ => field,
        })
    }

    /// The same error with its field placed under `prefix` (e.g. a line of a
    /// collection sheet: `lines[3]` + `amount` = `lines[3].amount`).
    pub fn within(self, prefix: &str) -> DomainError {
        self.map_field(|field| {
            if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        })
    }
}
