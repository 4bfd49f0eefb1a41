//! `ProofService`: the journal's signed checkpoints, inclusion and
//! consistency proofs, the log's verifier key, and witnesses'
//! cosignatures. The ledger works them out (`ledger::proofs`); this module
//! converts them and names the field at fault in a refusal.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::checkpoint::Verifier;
use crate::domain::access::Action;
use crate::ledger::{Ledger, ProofError, ServedCheckpoint};
use crate::pb;
use crate::pb::proof_service_server::ProofService;

use super::access;
use super::status;

/// Longest note `AddCosignature` takes, in bytes.
pub const NOTE_BYTES_MAX: usize = 16 * 1024;

/// The proof service over a running ledger.
pub struct ProofApi {
    ledger: Arc<Ledger>,
}

impl ProofApi {
    /// Serves the proofs of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> ProofApi {
        ProofApi { ledger }
    }
}

fn refuse(error: ProofError) -> Status {
    match error {
        ProofError::OutOfRange(why) | ProofError::Invalid(why) => Status::invalid_argument(why),
        ProofError::NotFound(why) => Status::not_found(why),
        ProofError::Unavailable(why) => Status::failed_precondition(why),
        ProofError::Store(error) => status::from_store(error),
    }
}

fn checkpoint_out(served: ServedCheckpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        note: served.note,
        origin: served.checkpoint.origin,
        tree_size: served.checkpoint.size,
        root_hash: served.checkpoint.root.to_vec(),
    }
}

#[tonic::async_trait]
impl ProofService for ProofApi {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        access::read_subject(
            &request,
            format!("checkpoint:{}", request.get_ref().tree_size),
        );
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let served = self
            .ledger
            .checkpoint(request.get_ref().tree_size)
            .map_err(refuse)?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: Some(checkpoint_out(served)),
        }))
    }

    async fn create_checkpoint(
        &self,
        request: Request<pb::CreateCheckpointRequest>,
    ) -> Result<Response<pb::CreateCheckpointResponse>, Status> {
        access::read_subject(&request, "checkpoint:new");
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let served = self.ledger.create_checkpoint().await.map_err(refuse)?;
        Ok(Response::new(pb::CreateCheckpointResponse {
            checkpoint: Some(checkpoint_out(served)),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let r = *request.get_ref();
        access::read_subject(&request, format!("journal:{}", r.sequence));
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let proof = self
            .ledger
            .inclusion_proof(r.sequence, r.tree_size)
            .await
            .map_err(refuse)?;
        Ok(Response::new(pb::GetInclusionProofResponse {
            sequence: proof.sequence,
            tree_size: proof.tree_size,
            leaf_hash: proof.leaf.to_vec(),
            hashes: proof.hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let r = *request.get_ref();
        access::read_subject(
            &request,
            format!("consistency:{}-{}", r.first_size, r.second_size),
        );
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let hashes = self
            .ledger
            .consistency_proof(r.first_size, r.second_size)
            .await
            .map_err(refuse)?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            first_size: r.first_size,
            second_size: r.second_size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_verifier_key(
        &self,
        request: Request<pb::GetVerifierKeyRequest>,
    ) -> Result<Response<pb::GetVerifierKeyResponse>, Status> {
        access::caller(&request)?;
        let verifier = self.ledger.log_verifier().ok_or_else(|| {
            Status::failed_precondition("this ledger signs no checkpoints (it has no log key)")
        })?;
        Ok(Response::new(pb::GetVerifierKeyResponse {
            verifier_key: verifier.to_text(),
        }))
    }

    async fn add_cosignature(
        &self,
        request: Request<pb::AddCosignatureRequest>,
    ) -> Result<Response<pb::AddCosignatureResponse>, Status> {
        access::read_subject(&request, "cosignature");
        access::caller(&request)?.authorize(Action::ReadJournal, None)?;
        let r = request.into_inner();
        if r.note.len() > NOTE_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "note: {} bytes, over the {NOTE_BYTES_MAX} a checkpoint note may have",
                r.note.len()
            )));
        }
        let witness = Verifier::parse(r.witness_key.trim())
            .map_err(|e| Status::invalid_argument(format!("witness_key: {e}")))?;
        let served = self
            .ledger
            .add_cosignature(&r.note, &witness)
            .map_err(refuse)?;
        tracing::info!(
            witness = witness.name(),
            tree_size = served.checkpoint.size,
            "cosignature kept"
        );
        Ok(Response::new(pb::AddCosignatureResponse {
            checkpoint: Some(checkpoint_out(served)),
        }))
    }
}
