//! The access log: one record per read of the books (who, which RPC, which
//! member, loan, account or branch, when, and with what outcome), appended
//! to `access.log` in the data directory, hash-chained like the journal.
//!
//! Member data is personal data; the log is what lets the institution show
//! who looked at it. Recording a read costs the read a channel send: a
//! writer thread appends the records in order and makes them durable with
//! one `fdatasync` per [`SYNC_INTERVAL`] (group commit), so no read waits on
//! a disk barrier. The price is that a crash can lose the records of the
//! last interval; [`AccessLog::flush`] makes every record sent so far
//! durable (what a query of the log does first). The file holds whole,
//! durable records only: a write or a barrier that fails is cut off and its
//! records are written again at the next sync (while the disk refuses,
//! records wait in memory, up to `PENDING_BYTES_MAX` bytes of them).
//!
//! A record is one line of tab-separated fields:
//! `sequence, recorded at (µs since the epoch), principal, method, subject,
//! outcome (gRPC code name), previous hash, hash`, where the hash is
//! SHA-256 of the previous hash and the line's first six fields joined by
//! tabs. Fields never hold tabs or newlines (they come from checked ids and
//! fixed names). `verify` checks the numbering and the chain: a changed or
//! removed record breaks them. Records cut from the end would leave a
//! shorter valid chain: each signed checkpoint of the journal anchors the
//! log's durable head (`access-log <records> <hash>`, an extension line), and
//! `verify` checks every anchor.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::StoreError;

/// Name of the access log in the data directory.
pub const ACCESS_LOG_FILE: &str = "access.log";

/// Most characters of a field a record keeps.
pub const FIELD_CHARS_MAX: usize = 100;

/// Longest time a record waits before it is made durable.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// A read, as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Microseconds since the Unix epoch, UTC.
    pub at_micros: i64,
    /// The authenticated principal; empty when the caller was not authenticated.
    pub principal: String,
    /// The RPC, e.g. `AuditService/GetMember`.
    pub method: String,
    /// What was read, e.g. `member:TB-0001`; empty when the call named nothing.
    pub subject: String,
    /// The gRPC status code name, e.g. `Ok`, `PermissionDenied`.
    pub outcome: String,
}

/// A record of the log: a read, its number and its hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Gap-free, from 1.
    pub sequence: u64,
    pub access: Access,
    pub previous: [u8; 32],
    pub hash: [u8; 32],
}

impl Record {
    fn fields(sequence: u64, access: &Access) -> String {
        format!(
            "{sequence}\t{}\t{}\t{}\t{}\t{}",
            access.at_micros, access.principal, access.method, access.subject, access.outcome
        )
    }

    fn chain(previous: &[u8; 32], fields: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(fields.as_bytes());
        hasher.finalize().into()
    }

    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\n",
            Record::fields(self.sequence, &self.access),
            hex::encode(self.previous),
            hex::encode(self.hash)
        )
    }

    /// Parses and checks one line (its own hash; the chain is the caller's).
    fn parse(line: &str) -> Result<Record, String> {
        let parts: Vec<&str> = line.split('\t').collect();
        let [
            sequence,
            at,
            principal,
            method,
            subject,
            outcome,
            previous,
            hash,
        ] = parts[..]
        else {
            return Err(format!("{} fields, not 8", parts.len()));
        };
        let hex32 = |text: &str| -> Result<[u8; 32], String> {
            let bytes = hex::decode(text).map_err(|e| format!("hash {text:?}: {e}"))?;
            bytes
                .try_into()
                .map_err(|_| format!("hash {text:?} is not 32 bytes"))
        };
        let record = Record {
            sequence: sequence
                .parse()
                .map_err(|_| format!("sequence {sequence:?}"))?,
            access: Access {
                at_micros: at.parse().map_err(|_| format!("time {at:?}"))?,
                principal: principal.to_owned(),
                method: method.to_owned(),
                subject: subject.to_owned(),
                outcome: outcome.to_owned(),
            },
            previous: hex32(previous)?,
            hash: hex32(hash)?,
        };
        let fields = Record::fields(record.sequence, &record.access);
        if Record::chain(&record.previous, &fields) != record.hash {
            return Err("its hash does not match its fields".into());
        }
        Ok(record)
    }
}

/// Why the access log does not check out.
#[derive(Debug, thiserror::Error)]
#[error("access log line {line}: {message}")]
pub struct AccessLogError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Reads and checks every record of the log at `path` (none when there is
/// no file): numbering from 1 without gaps, each record's hash, and the
/// chain. A last line without its newline (a write cut by a crash) is left
/// out.
pub fn read_all(path: &Path) -> Result<Vec<Record>, AccessLogError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AccessLogError {
                line: 0,
                message: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut previous = [0u8; 32];
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| AccessLogError {
            line: number,
            message: e.to_string(),
        })?;
        if read == 0 || !line.ends_with('\n') {
            break;
        }
        let fail = |message: String| AccessLogError {
            line: number,
            message,
        };
        let record = Record::parse(line.trim_end_matches('\n')).map_err(fail)?;
        if record.sequence != number as u64 {
            return Err(fail(format!(
                "record {} where record {number} belongs: a record was removed or moved",
                record.sequence
            )));
        }
        if record.previous != previous {
            return Err(fail(
                "does not chain to the record before it: a record was changed or removed".into(),
            ));
        }
        previous = record.hash;
        records.push(record);
    }
    Ok(records)
}

enum Message {
    Record(Access),
    /// Make everything sent so far durable, then answer.
    Flush(mpsc::Sender<()>),
    /// Makes every record durable, then answers the last one's number and hash.
    Head(mpsc::Sender<(u64, [u8; 32])>),
    /// Makes every record durable, then answers the file's length in bytes.
    Length(mpsc::Sender<u64>),
}

/// The access log of a data directory: records are sent to a writer
/// thread, which appends and syncs them.
pub struct AccessLog {
    sender: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl AccessLog {
    /// Opens (or creates, mode 0600) `dir/access.log`, checks it, cuts a
    /// torn last line, and starts the writer after its last record.
    pub fn open(dir: &Path) -> Result<AccessLog, StoreError> {
        let path = dir.join(ACCESS_LOG_FILE);
        let records = read_all(&path)
            .map_err(|e| StoreError::AccessLog(format!("{}: {e}", path.display())))?;
        let (sequence, previous) = records
            .last()
            .map_or((0, [0u8; 32]), |r| (r.sequence, r.hash));
        let valid: u64 = records.iter().map(|r| r.line().len() as u64).sum();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .mode(super::disk::DATA_FILE_MODE)
            .open(&path)
            .map_err(StoreError::io("opening the access log"))?;
        // A line cut by a crash was never made durable whole: drop it.
        file.set_len(valid)
            .map_err(StoreError::io("cutting the access log's torn line"))?;
        let mut writer = LogWriter::new(
            file,
            Durable {
                sequence,
                hash: previous,
                len: valid,
            },
        );
        let (sender, receiver) = mpsc::channel::<Message>();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                loop {
                    let message = if writer.pending.is_empty() {
                        match receiver.recv() {
                            Ok(message) => Some(message),
                            Err(_) => break,
                        }
                    } else {
                        match receiver.recv_timeout(SYNC_INTERVAL) {
                            Ok(message) => Some(message),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    };
                    match message {
                        Some(Message::Record(access)) => writer.record(access),
                        Some(Message::Flush(done)) => {
                            writer.sync();
                            let _ = done.send(());
                        }
                        Some(Message::Head(answer)) => {
                            writer.sync();
                            let _ = answer.send((writer.durable.sequence, writer.durable.hash));
                        }
                        Some(Message::Length(answer)) => {
                            writer.sync();
                            let _ = answer.send(writer.durable.len);
                        }
                        None => writer.sync(),
                    }
                }
                writer.sync();
            })
            .map_err(StoreError::io("starting the access log's writer"))?;
        Ok(AccessLog {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            path,
        })
    }

    /// Records a read. Never waits on the disk. Fields are kept to
    /// [`FIELD_CHARS_MAX`] characters, control characters (tabs, newlines)
    /// shown as `?`: a client's text cannot break a record's line.
    pub fn record(&self, mut access: Access) {
        for field in [
            &mut access.principal,
            &mut access.method,
            &mut access.subject,
            &mut access.outcome,
        ] {
            if field.len() > FIELD_CHARS_MAX || field.chars().any(char::is_control) {
                *field = field
                    .chars()
                    .take(FIELD_CHARS_MAX)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
            }
        }
        if let Some(sender) = &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = sender.send(Message::Record(access));
        }
    }

    /// Returns once every record sent before the call is durable.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        let sent = match &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(sender) => sender.send(Message::Flush(done)).is_ok(),
            None => false,
        };
        if sent {
            let _ = wait.recv();
        }
    }

    /// The number and hash of the last record, once every record sent so far
    /// is durable (what a checkpoint of the journal anchors); `None` when the
    /// writer has stopped.
    pub fn durable_head(&self) -> Option<(u64, [u8; 32])> {
        let (answer, wait) = mpsc::channel();
        let sent = match &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(sender) => sender.send(Message::Head(answer)).is_ok(),
            None => false,
        };
        if sent { wait.recv().ok() } else { None }
    }

    /// The file's length in bytes once every record sent so far is durable
    /// (whole records only); `None` when the writer has stopped.
    pub fn durable_len(&self) -> Option<u64> {
        let (answer, wait) = mpsc::channel();
        let sent = match &*self.sender.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(sender) => sender.send(Message::Length(answer)).is_ok(),
            None => false,
        };
        if sent { wait.recv().ok() } else { None }
    }

    /// Every record, after making the ones sent so far durable.
    pub fn records(&self) -> Result<Vec<Record>, AccessLogError> {
        self.flush();
        read_all(&self.path)
    }

    /// Makes every record durable and stops the writer.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Most bytes of records kept waiting while the log cannot be written;
/// reads past it go unrecorded (counted in the warning logged when the log
/// is written again).
const PENDING_BYTES_MAX: usize = 64 << 20;

/// What the writer needs of the log's file (tests fail it on demand).
trait LogFile: Send + 'static {
    /// Writes `bytes` at `offset` and makes them durable.
    fn write_durably(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
}

impl LogFile for File {
    fn write_durably(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.write_all_at(bytes, offset)?;
        self.sync_data()
    }

    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// The last record made durable, and the file's length with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Durable {
    sequence: u64,
    hash: [u8; 32],
    len: u64,
}

/// Numbers, chains and writes records. The file holds whole, durable
/// records only: a write or a barrier that fails is cut off the file and
/// its records are written again at the next sync, so the chain on disk
/// never skips a record, whatever the disk did.
struct LogWriter<F> {
    file: F,
    durable: Durable,
    /// Records made since the last sync, as lines.
    pending: Vec<u8>,
    /// The last record made, durable or pending: its number and hash.
    head: (u64, [u8; 32]),
    /// Most bytes of records kept pending ([`PENDING_BYTES_MAX`]).
    pending_max: usize,
    /// Reads left unrecorded since the log last could be written.
    dropped: u64,
    /// The last sync failed (said once, and once when it works again).
    failing: bool,
    /// Cutting a failed write off failed too: the file may hold bytes past
    /// the durable records, to cut once writing works again.
    cut_owed: bool,
}

impl<F: LogFile> LogWriter<F> {
    fn new(file: F, durable: Durable) -> LogWriter<F> {
        LogWriter {
            file,
            durable,
            pending: Vec::new(),
            head: (durable.sequence, durable.hash),
            pending_max: PENDING_BYTES_MAX,
            dropped: 0,
            failing: false,
            cut_owed: false,
        }
    }

    fn record(&mut self, access: Access) {
        if self.pending.len() >= self.pending_max {
            self.dropped += 1;
            return;
        }
        let (previous_sequence, previous) = self.head;
        let sequence = previous_sequence + 1;
        let fields = Record::fields(sequence, &access);
        let hash = Record::chain(&previous, &fields);
        let record = Record {
            sequence,
            access,
            previous,
            hash,
        };
        self.pending.extend_from_slice(record.line().as_bytes());
        self.head = (sequence, hash);
    }

    /// Writes the pending records and makes them durable; on a failure,
    /// cuts what was written and keeps them pending.
    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.file.write_durably(self.durable.len, &self.pending) {
            Ok(()) => {
                self.durable = Durable {
                    sequence: self.head.0,
                    hash: self.head.1,
                    len: self.durable.len + self.pending.len() as u64,
                };
                self.pending.clear();
                if self.cut_owed {
                    self.cut_owed = self.file.cut(self.durable.len).is_err();
                }
                if self.failing {
                    tracing::warn!(unrecorded = self.dropped, "the access log is written again");
                    self.failing = false;
                    self.dropped = 0;
                }
            }
            Err(error) => {
                let cut = self.file.cut(self.durable.len);
                if !self.failing {
                    tracing::error!(
                        %error,
                        "cannot write the access log; its records are kept and written again at the next sync"
                    );
                    self.failing = true;
                }
                if let Err(error) = &cut {
                    tracing::error!(%error, "cannot cut a failed write off the access log");
                }
                self.cut_owed |= cut.is_err();
            }
        }
    }
}

/// The shared handle servers record through.
pub type SharedAccessLog = Arc<AccessLog>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(i: i64) -> Access {
        Access {
            at_micros: i,
            principal: "auditor.hn".into(),
            method: "AuditService/GetMember".into(),
            subject: format!("member:TB-{i:04}"),
            outcome: "Ok".into(),
        }
    }

    #[test]
    fn records_survive_a_reopen_in_order_and_chain_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(dir.path()).unwrap();
        for i in 0..5 {
            log.record(read(i));
        }
        let records = log.records().unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[4].access, read(4));
        drop(log);
        let log = AccessLog::open(dir.path()).unwrap();
        log.record(read(5));
        let records = log.records().unwrap();
        assert_eq!(records.len(), 6);
        assert_eq!(records[5].sequence, 6);
        assert_eq!(records[5].previous, records[4].hash);
    }

    #[test]
    fn a_changed_or_removed_record_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(dir.path()).unwrap();
        for i in 0..4 {
            log.record(read(i));
        }
        log.close();
        let path = dir.path().join(ACCESS_LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = text.replace("member:TB-0002", "member:TB-0009");
        std::fs::write(&path, changed).unwrap();
        let error = read_all(&path).unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let error = read_all(&path).unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("removed"), "{error}");
    }

    #[test]
    fn a_damaged_log_is_not_appended_to_and_the_refusal_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(dir.path()).unwrap();
        log.record(read(0));
        log.record(read(1));
        log.close();
        let path = dir.path().join(ACCESS_LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("auditor.hn", "auditor.tb", 1)).unwrap();
        let refused = AccessLog::open(dir.path()).err().unwrap().to_string();
        assert!(
            refused.contains("access.log")
                && refused.contains("line 1")
                && refused.contains("move it aside"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text.replacen("auditor.hn", "auditor.tb", 1),
            "left as it was"
        );
    }

    /// A file whose next write stores `fail` bytes (all of them: the
    /// barrier fails) and then fails.
    #[derive(Clone, Default)]
    struct FlakyFile {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: Arc<Mutex<Option<usize>>>,
    }

    impl LogFile for FlakyFile {
        fn write_durably(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
            let fail = self.fail.lock().unwrap().take();
            let stored = fail.map_or(bytes.len(), |n| n.min(bytes.len()));
            let mut data = self.bytes.lock().unwrap();
            let offset = offset as usize;
            let len = data.len().max(offset + stored);
            data.resize(len, 0);
            data[offset..offset + stored].copy_from_slice(&bytes[..stored]);
            match fail {
                Some(_) => Err(std::io::Error::other("no space left on device")),
                None => Ok(()),
            }
        }

        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            self.bytes.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    /// A writer starting an empty log in `file`.
    fn empty_log(file: &FlakyFile) -> LogWriter<FlakyFile> {
        LogWriter::new(
            file.clone(),
            Durable {
                sequence: 0,
                hash: [0; 32],
                len: 0,
            },
        )
    }

    /// Reproduces: a record whose write failed still took its number and
    /// moved the chain on, and half a line could stay in the file, so the
    /// log skipped a record and was refused at the next start. Now a failed
    /// write or barrier is cut off and its records are written again at the
    /// next sync: the file holds every record, numbered and chained.
    #[test]
    fn a_failed_write_is_cut_and_its_records_written_at_the_next_sync() {
        let file = FlakyFile::default();
        let mut writer = empty_log(&file);
        writer.record(read(0));
        writer.record(read(1));
        writer.sync();
        let whole = file.bytes.lock().unwrap().clone();
        // A write cut short, then a barrier that fails after a whole write.
        for stored in [40, usize::MAX] {
            *file.fail.lock().unwrap() = Some(stored);
            writer.record(read(2));
            writer.sync();
            assert_eq!(
                *file.bytes.lock().unwrap(),
                whole,
                "cut back to whole records"
            );
            assert_eq!(writer.durable.sequence, 2);
        }
        writer.record(read(3));
        writer.sync();
        assert_eq!(writer.durable.sequence, 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCESS_LOG_FILE);
        std::fs::write(&path, &*file.bytes.lock().unwrap()).unwrap();
        let records = read_all(&path).unwrap();
        let kept: Vec<Access> = records.iter().map(|r| r.access.clone()).collect();
        assert_eq!(kept, [read(0), read(1), read(2), read(2), read(3)]);
        assert_eq!(records[4].hash, writer.durable.hash);
        assert_eq!(writer.durable.len, file.bytes.lock().unwrap().len() as u64);
    }

    /// While the disk refuses, records wait up to the bound; reads past it
    /// go unrecorded (counted) without a gap in the numbering or the chain.
    #[test]
    fn records_past_the_pending_bound_are_counted_and_leave_no_gap() {
        let file = FlakyFile::default();
        let mut writer = empty_log(&file);
        writer.pending_max = 1;
        *file.fail.lock().unwrap() = Some(0);
        writer.record(read(0));
        writer.sync();
        writer.record(read(1));
        writer.record(read(2));
        assert_eq!(writer.dropped, 2);
        writer.sync();
        assert_eq!(writer.dropped, 0, "counted, then reset once written");
        writer.record(read(3));
        writer.sync();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCESS_LOG_FILE);
        std::fs::write(&path, &*file.bytes.lock().unwrap()).unwrap();
        let kept: Vec<Access> = read_all(&path)
            .unwrap()
            .into_iter()
            .map(|r| r.access)
            .collect();
        assert_eq!(kept, [read(0), read(3)]);
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(dir.path()).unwrap();
        log.record(read(0));
        log.close();
        let path = dir.path().join(ACCESS_LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"2\t17\tpartial").unwrap();
        drop(file);
        let log = AccessLog::open(dir.path()).unwrap();
        log.record(read(1));
        let records = log.records().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].access, read(1));
    }
}
