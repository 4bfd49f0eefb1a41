//! The one place where errors become gRPC statuses (design.md §6).

use tonic::{Code, Status};

use crate::domain::DomainError;
use crate::ledger::SubmitError;
use crate::store::StoreError;

/// The status a client sees for a domain refusal.
pub fn from_domain(error: &DomainError) -> Status {
    let code = match error {
        DomainError::Invalid { .. } | DomainError::Overflow => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::AlreadyExists { .. } | DomainError::RequestIdReused { .. } => {
            Code::AlreadyExists
        }
        DomainError::Precondition { .. } => Code::FailedPrecondition,
        DomainError::PermissionDenied { .. } => Code::PermissionDenied,
        DomainError::Damaged { .. } => {
            tracing::error!(%error, "the ledger's state could not answer");
            Code::DataLoss
        }
        DomainError::Unavailable { .. } => {
            tracing::error!(%error, "the ledger's state could not be read");
            Code::Unavailable
        }
    };
    Status::new(code, error.to_string())
}

/// The status a client sees for a submission that got no entry.
pub fn from_submit(error: SubmitError) -> Status {
    match error {
        SubmitError::Refused(error) => from_domain(&error),
        SubmitError::Overloaded(_) | SubmitError::OverloadedBytes(_) => {
            Status::resource_exhausted(error.to_string())
        }
        SubmitError::Unavailable(_) => Status::unavailable(error.to_string()),
        SubmitError::ReadOnly => Status::failed_precondition(error.to_string()),
        SubmitError::Internal(ref cause) => {
            tracing::error!(%cause, "command failed inside the ledger");
            Status::internal("internal error; the cause is in the server's log")
        }
    }
}

/// The status a client sees for a storage fault while reading.
pub fn from_store(error: StoreError) -> Status {
    tracing::error!(
        error = &error as &dyn std::error::Error,
        "storage fault while reading"
    );
    Status::internal("internal error reading the journal; the cause is in the server's log")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal names what the caller can change; damage inside the ledger
    /// is DATA_LOSS, which a client does not retry as if its input were
    /// wrong, with the message that says where to look.
    #[test]
    fn damage_is_data_loss_and_a_refusal_is_not() {
        let damaged = from_domain(&DomainError::Damaged {
            message: "the ledger's day figures as of entry 3 are damaged".into(),
        });
        assert_eq!(damaged.code(), Code::DataLoss);
        assert_eq!(
            damaged.message(),
            "the ledger's day figures as of entry 3 are damaged"
        );
        let unreadable = from_domain(&DomainError::Unavailable {
            message: "the ledger's day figures as of entry 3 could not be read".into(),
        });
        assert_eq!(unreadable.code(), Code::Unavailable);
        assert_eq!(
            unreadable.message(),
            "the ledger's day figures as of entry 3 could not be read"
        );
        let refused = from_domain(&DomainError::precondition("as_of_sequence", "too late"));
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(refused.message(), "as_of_sequence: too late");
    }
}
