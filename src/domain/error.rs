//! The domain's one error type: why the ledger refused a command or a query.
//!
//! Each variant maps to exactly one gRPC status in `api::status` (the only
//! place that knows gRPC). Messages name the field or object and the problem.

/// Why the ledger refused a command or a query. A refused command writes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed input: bad decimal, missing field, unknown enum, too long.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An object named by the command does not exist.
    #[error("{field}: {kind} {id:?} not found")]
    NotFound {
        field: String,
        kind: &'static str,
        id: String,
    },
    /// An object the command would create already exists.
    #[error("{field}: {kind} {id:?} already exists")]
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
        "request_id: {request_id:?} was already used for a different request (entry {sequence}); use a new request id"
    )]
    RequestIdReused { request_id: String, sequence: u64 },
    /// A sum or product does not fit in a decimal.
    #[error("arithmetic overflow: the amounts involved are too large")]
    Overflow,
}

impl DomainError {
    /// Malformed input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> DomainError {
        DomainError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Valid input in `field` that the ledger's state forbids.
    pub fn precondition(field: &str, message: impl Into<String>) -> DomainError {
        DomainError::Precondition {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// `id`, given in `field`, names no `kind`.
    pub fn not_found(field: &str, kind: &'static str, id: impl Into<String>) -> DomainError {
        DomainError::NotFound {
            field: field.to_owned(),
            kind,
            id: id.into(),
        }
    }

    /// `id`, given in `field`, already names a `kind`.
    pub fn already_exists(field: &str, kind: &'static str, id: impl Into<String>) -> DomainError {
        DomainError::AlreadyExists {
            field: field.to_owned(),
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
