//! What an operator runs beside the books: a consistent online backup.
//!
//! The store names each file of the data directory and how much of it a
//! copy at one durable head holds ([`crate::store::Store::backup_plan`]);
//! this streams those prefixes while writes go on. Files only grow at
//! their ends, so a prefix read later is still the prefix planned.

use std::io::Read as _;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::checkpoint::keys::{LOG_KEY_FILE, LOG_VERIFIER_FILE};
use crate::domain::access::Action;
use crate::domain::entry::GENESIS_HASH;
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::operations_service_server::OperationsService;
use crate::store::BackupPlan;

use super::access;
use super::status;

/// Bytes of a file in one message.
pub const BACKUP_CHUNK_BYTES: usize = 1 << 20;

/// Messages queued for a slow client before the reader waits for it.
const CHUNKS_QUEUED_MAX: usize = 8;

/// How long a client may take no message before the backup stops.
const CLIENT_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The operations service over a running ledger.
pub struct OperationsApi {
    ledger: Arc<Ledger>,
    /// One backup at a time: each reads the whole journal.
    backups: Arc<Semaphore>,
}

impl OperationsApi {
    /// Serves `ledger`'s operations.
    pub fn new(ledger: Arc<Ledger>) -> OperationsApi {
        OperationsApi {
            ledger,
            backups: Arc::new(Semaphore::new(1)),
        }
    }
}

/// The stream of a backup's messages.
pub type BackupStream = ReceiverStream<Result<pb::BackupResponse, Status>>;

#[tonic::async_trait]
impl OperationsService for OperationsApi {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        access::read_subject(&request, "data-directory");
        access::caller(&request)?.authorize(Action::Administer, None)?;
        let turn = self.backups.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("a backup is running on this server; try again when it ends")
        })?;
        let ledger = self.ledger.clone();
        let (plan, head_hash) = tokio::task::spawn_blocking(move || plan(&ledger))
            .await
            .map_err(|_| Status::internal("the backup's planning stopped"))??;
        tracing::info!(head = plan.head, "backup started");
        let (sender, receiver) = mpsc::channel(CHUNKS_QUEUED_MAX);
        let manifest = pb::BackupResponse {
            part: Some(pb::backup_response::Part::Manifest(pb::BackupManifest {
                head_sequence: plan.head,
                head_hash,
                files: plan
                    .files
                    .iter()
                    .map(|(name, _, bytes)| pb::BackupFile {
                        name: name.clone(),
                        bytes: *bytes,
                    })
                    .collect(),
            })),
        };
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // A client that takes nothing for a while is gone: stop, rather
            // than hold the backup's turn and a thread.
            let send = |message: Result<pb::BackupResponse, Status>| {
                runtime
                    .block_on(sender.send_timeout(message, CLIENT_STALL_MAX))
                    .is_ok()
            };
            if !send(Ok(manifest)) {
                return;
            }
            match stream_files(&plan, &send) {
                Ok(true) => tracing::info!(head = plan.head, "backup sent"),
                Ok(false) => tracing::warn!(
                    head = plan.head,
                    "backup stopped: the client went away or took nothing for 60 s"
                ),
                Err(error) => {
                    tracing::error!(%error, "backup failed reading the data directory");
                    send(Err(Status::internal(
                        "internal error reading the data directory; the cause is in the server's log",
                    )));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// The store's plan, with the hex hash of the head entry.
fn plan(ledger: &Ledger) -> Result<(BackupPlan, String), Status> {
    let plan = ledger
        .store()
        .backup_plan(&[LOG_VERIFIER_FILE, LOG_KEY_FILE])
        .ok_or_else(|| {
            Status::unimplemented(
                "this server's journal is in a database: back it up with the database's own \
                 tools, or copy it into a data directory with `mfi-ledger migrate`",
            )
        })?
        .map_err(status::from_store)?;
    let hash = match plan.head {
        0 => GENESIS_HASH,
        head => {
            // From the store: the read side may not have applied the
            // journal's last durable entries yet.
            let entries = ledger
                .store()
                .read_entries(head, 1)
                .map_err(status::from_store)?;
            let entry = entries
                .first()
                .ok_or_else(|| Status::internal(format!("entry {head} is not in the journal")))?;
            entry.hash
        }
    };
    Ok((plan, hex::encode(hash)))
}

/// Sends each file's planned prefix; false when the client went away.
fn stream_files(
    plan: &BackupPlan,
    send: &dyn Fn(Result<pb::BackupResponse, Status>) -> bool,
) -> std::io::Result<bool> {
    for (name, path, bytes) in &plan.files {
        let mut file = std::fs::File::open(path)?.take(*bytes);
        let mut offset = 0u64;
        loop {
            let mut data = Vec::with_capacity(BACKUP_CHUNK_BYTES.min(*bytes as usize));
            (&mut file)
                .take(BACKUP_CHUNK_BYTES as u64)
                .read_to_end(&mut data)?;
            if data.is_empty() {
                break;
            }
            let length = data.len() as u64;
            let chunk = pb::BackupResponse {
                part: Some(pb::backup_response::Part::Chunk(pb::BackupChunk {
                    name: name.clone(),
                    offset,
                    data,
                })),
            };
            if !send(Ok(chunk)) {
                return Ok(false);
            }
            offset += length;
        }
        if offset != *bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} is {offset} bytes, not the {bytes} planned",
                    path.display()
                ),
            ));
        }
    }
    Ok(true)
}
