//! `ExportBooks`: the books as an auditor's spreadsheet input (the
//! journal, its postings, the trial balance, the balance sheet, the income
//! statement), as CSV or JSON lines, streamed in bounded chunks.
//!
//! The handler parses the request ([`ExportRequest`]) and checks access;
//! [`plan`] then reads the latest signed checkpoint and, in one hold of
//! the read lock, the journal's head H (sequence and hash) and, for the
//! trial balance and the statements, their rows: the replies the unary
//! RPCs give at H, flattened. The checkpoint is read first, so its tree
//! size is at most H. A producer on a read thread ([`Holds::Briefly`])
//! sends the header, then the rows: for the journal and its postings it
//! reads the journal [`ENTRIES_PER_READ`] entries at a time up to H (taking
//! the lock only to look up the accounts' lines of a page's postings),
//! keeps the entries of the branch and period, writes them as CSV or JSON
//! lines ([`Format`]) and cuts the data into chunks of at most
//! [`CHUNK_BYTES_MAX`] bytes ([`Chunker`]), sent through a channel of
//! [`MESSAGES_QUEUED_MAX`] messages; the trailer ends the stream with the
//! row count and the data's SHA-256. So an export holds about a page of
//! entries and a few chunks whatever its size, and no message has a size
//! ceiling to pass.
//!
//! The producer stops when the client goes away (the stream is dropped),
//! or takes nothing for [`CLIENT_STALL_MAX`]. At most
//! [`EXPORTS_AT_ONCE_MAX`] exports run at once on a server (each holds a
//! read thread for its life); another is refused with RESOURCE_EXHAUSTED.
//!
//! Never: writes anything, holds the read lock while it reads the journal
//! or waits for the client, or formats an amount other than exactly.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::ser::{Serialize, SerializeMap, Serializer};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::domain::DomainError;
use crate::domain::books::{AsOf, Chart, Line};
use crate::domain::entry::{Entry, Posting, Side};
use crate::domain::ids::BranchId;
use crate::domain::money::Currency;
use crate::domain::state::LedgerState;
use crate::domain::totals::sum;
use crate::ledger::{Holds, Ledger, ProofError};
use crate::pb;
use crate::pb::export_books_response::Part;

use super::super::access::Caller;
use super::super::audit::{may_read, read_failed};
use super::super::convert::{self, money_out, stored_figure};
use super::super::status;

/// Most bytes of data in one chunk.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Messages queued between the producer and the client: with the chunk
/// bound, at most half a MiB of an export waits for the client.
pub const MESSAGES_QUEUED_MAX: usize = 8;
/// Entries read from the journal at a time. An entry is at most
/// `ENTRY_BYTES_MAX` (960 KiB) and almost always under one, so a page holds
/// a few dozen KiB and at worst 60 MiB.
pub const ENTRIES_PER_READ: usize = 64;
/// Exports running at once on one server.
pub const EXPORTS_AT_ONCE_MAX: usize = 2;
/// Longest the producer waits for the client to take a message before it
/// gives the export up (and its read thread back).
pub const CLIENT_STALL_MAX: Duration = Duration::from_secs(60);

/// The stream of an export's messages.
pub type ExportStream = ReceiverStream<Result<pb::ExportBooksResponse, Status>>;

/// What an export holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Journal,
    Postings,
    TrialBalance,
    BalanceSheet,
    IncomeStatement,
}

impl Kind {
    fn parse(value: i32) -> Result<Kind, DomainError> {
        Ok(match pb::ExportKind::try_from(value) {
            Ok(pb::ExportKind::Journal) => Kind::Journal,
            Ok(pb::ExportKind::Postings) => Kind::Postings,
            Ok(pb::ExportKind::TrialBalance) => Kind::TrialBalance,
            Ok(pb::ExportKind::BalanceSheet) => Kind::BalanceSheet,
            Ok(pb::ExportKind::IncomeStatement) => Kind::IncomeStatement,
            Ok(pb::ExportKind::Unspecified) => {
                return Err(DomainError::invalid(
                    "kind",
                    "is required: journal, postings, trial balance, balance sheet or income statement",
                ));
            }
            Err(_) => {
                return Err(DomainError::invalid(
                    "kind",
                    format!("{value} is not a known value"),
                ));
            }
        })
    }

    fn out(self) -> pb::ExportKind {
        match self {
            Kind::Journal => pb::ExportKind::Journal,
            Kind::Postings => pb::ExportKind::Postings,
            Kind::TrialBalance => pb::ExportKind::TrialBalance,
            Kind::BalanceSheet => pb::ExportKind::BalanceSheet,
            Kind::IncomeStatement => pb::ExportKind::IncomeStatement,
        }
    }

    /// The columns of its rows, in order (CSV header and JSON keys alike).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Journal => &[
                "sequence",
                "effective_date",
                "recorded_at",
                "branch_id",
                "command",
                "request_id",
                "principal",
                "description",
                "debits_total",
                "currency",
                "hash",
            ],
            Kind::Postings => &[
                "sequence",
                "effective_date",
                "branch_id",
                "account",
                "line",
                "gl_code",
                "gl_name",
                "side",
                "amount",
                "currency",
            ],
            Kind::TrialBalance => &[
                "gl_code",
                "gl_name",
                "line",
                "kind",
                "debits",
                "credits",
                "debit_balance",
                "credit_balance",
                "currency",
            ],
            Kind::BalanceSheet | Kind::IncomeStatement => &[
                "section",
                "gl_code",
                "gl_name",
                "line",
                "amount",
                "previous_amount",
                "currency",
            ],
        }
    }
}

/// How an export writes its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CSV (the `csv` crate's quoting), a row of column names first.
    Csv,
    /// One JSON object per line, keys in column order.
    JsonLines,
}

impl Format {
    fn parse(value: i32) -> Result<Format, DomainError> {
        match pb::ExportFormat::try_from(value) {
            Ok(pb::ExportFormat::Csv) => Ok(Format::Csv),
            Ok(pb::ExportFormat::JsonLines) => Ok(Format::JsonLines),
            Ok(pb::ExportFormat::Unspecified) => Err(DomainError::invalid(
                "format",
                "is required: CSV or JSON lines",
            )),
            Err(_) => Err(DomainError::invalid(
                "format",
                format!("{value} is not a known value"),
            )),
        }
    }

    fn out(self) -> pb::ExportFormat {
        match self {
            Format::Csv => pb::ExportFormat::Csv,
            Format::JsonLines => pb::ExportFormat::JsonLines,
        }
    }

    /// A writer of rows with `columns` in this format.
    fn writer(self, columns: &[&'static str]) -> RowWriter {
        let buffer = Buffer::default();
        RowWriter {
            format: self,
            columns: columns.to_vec(),
            csv: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(buffer.clone()),
            buffer,
        }
    }
}

/// Bytes a CSV writer writes into, taken out after each row.
#[derive(Clone, Default)]
struct Buffer(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes rows in a format, one writer and its buffers for the whole export.
struct RowWriter {
    format: Format,
    columns: Vec<&'static str>,
    /// Writes into `buffer` (CSV only).
    csv: csv::Writer<Buffer>,
    buffer: Buffer,
}

impl RowWriter {
    /// What comes before the rows (the CSV row of column names), into `out`.
    fn preamble(&mut self, out: &mut Vec<u8>) -> Result<(), Status> {
        match self.format {
            Format::Csv => {
                let columns = self.columns.clone();
                self.csv_record(columns.iter().map(|c| c.as_bytes()), out)
            }
            Format::JsonLines => Ok(()),
        }
    }

    /// One row with its line end, into `out`.
    fn row(&mut self, row: &[Cell], out: &mut Vec<u8>) -> Result<(), Status> {
        if row.len() != self.columns.len() {
            return Err(Status::internal(format!(
                "an export row has {} cells for {} columns",
                row.len(),
                self.columns.len()
            )));
        }
        match self.format {
            Format::Csv => self.csv_record(row.iter().map(Cell::text), out),
            Format::JsonLines => {
                let columns = &self.columns;
                serde_json::to_writer(&mut *out, &JsonRow { columns, row })
                    .map_err(|e| Status::internal(format!("writing a JSON row: {e}")))?;
                out.push(b'\n');
                Ok(())
            }
        }
    }

    fn csv_record<T: AsRef<[u8]>>(
        &mut self,
        fields: impl IntoIterator<Item = T>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let failed =
            |e: &dyn std::fmt::Display| Status::internal(format!("writing a CSV row: {e}"));
        self.csv.write_record(fields).map_err(|e| failed(&e))?;
        self.csv.flush().map_err(|e| failed(&e))?;
        let mut written = self.buffer.0.borrow_mut();
        out.extend_from_slice(&written);
        written.clear();
        Ok(())
    }
}

/// One cell of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Text, amounts and dates included (a JSON string).
    Text(String),
    /// A sequence number (a JSON number).
    Count(u64),
}

impl Cell {
    fn text(&self) -> Cow<'_, [u8]> {
        match self {
            Cell::Text(text) => Cow::Borrowed(text.as_bytes()),
            Cell::Count(count) => Cow::Owned(count.to_string().into_bytes()),
        }
    }
}

/// A row of cells.
pub type Row = Vec<Cell>;

fn text(value: impl Into<String>) -> Cell {
    Cell::Text(value.into())
}

/// The exact amount of a figure the books service formatted.
fn amount(money: &Option<pb::Money>) -> Cell {
    text(money.as_ref().map(|m| m.amount.clone()).unwrap_or_default())
}

/// A row as a JSON object whose keys keep the columns' order.
struct JsonRow<'a> {
    columns: &'a [&'static str],
    row: &'a [Cell],
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (column, cell) in self.columns.iter().zip(self.row) {
            match cell {
                Cell::Text(text) => map.serialize_entry(column, text)?,
                Cell::Count(count) => map.serialize_entry(column, count)?,
            }
        }
        map.end()
    }
}

/// An export request, parsed.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub kind: Kind,
    format: Format,
    branch: Option<BranchId>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

impl ExportRequest {
    /// Parses `request`, naming the field at fault.
    pub fn parse(request: &pb::ExportBooksRequest) -> Result<ExportRequest, DomainError> {
        let kind = Kind::parse(request.kind)?;
        let format = Format::parse(request.format)?;
        let branch = super::branch_in("branch_id", &request.branch_id)?;
        let from = convert::optional_date("from", &request.from)?;
        let to = convert::optional_date("to", &request.to)?;
        if from.is_some() && matches!(kind, Kind::TrialBalance | Kind::BalanceSheet) {
            return Err(DomainError::invalid(
                "from",
                "the trial balance and the balance sheet are as of a date (to); from is for the \
                 journal, postings and the income statement",
            ));
        }
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(DomainError::invalid(
                "from",
                format!("{from} is after to ({to})"),
            ));
        }
        Ok(ExportRequest {
            kind,
            format,
            branch,
            from,
            to,
        })
    }
}

/// What the access log names an export: `export:KIND:BRANCH`.
pub fn subject(request: &pb::ExportBooksRequest) -> String {
    let kind = pb::ExportKind::try_from(request.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EXPORT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| request.kind.to_string());
    format!("export:{kind}:{}", request.branch_id)
}

/// Where the rows come from after the header.
enum Rows {
    /// Worked out with the header (the trial balance, the statements).
    Ready(Vec<Row>),
    /// The journal's entries up to the head, kept by [`EntryFilter`].
    Entries(EntryFilter),
}

/// Which entries a journal or postings export keeps.
#[derive(Clone, Debug)]
struct EntryFilter {
    kind: Kind,
    branch: Option<BranchId>,
    from: Option<NaiveDate>,
    to: NaiveDate,
    /// The journal's head when the export was taken: no entry after it.
    head: u64,
}

impl EntryFilter {
    fn keeps(&self, entry: &Entry) -> bool {
        let date = entry.body.effective_date;
        self.branch
            .as_ref()
            .is_none_or(|branch| entry.body.branch.as_ref() == Some(branch))
            && self.from.is_none_or(|from| date >= from)
            && date <= self.to
    }
}

/// An export ready to stream: its header and where its rows come from.
pub struct Plan {
    header: pb::ExportHeader,
    format: Format,
    kind: Kind,
    rows: Rows,
    chart: Arc<Chart>,
}

/// The export `request` asks for, as `caller` may read it: the latest
/// checkpoint, then in one hold of the read lock the head, the period and
/// (for the trial balance and the statements) the rows. Runs on a read
/// thread.
pub fn plan(ledger: &Ledger, caller: &Caller, request: ExportRequest) -> Result<Plan, Status> {
    // Before the head, so that the checkpoint's size is at most the head.
    let checkpoint = match ledger.checkpoint(0) {
        Ok(served) => Some(served),
        Err(ProofError::NotFound(_) | ProofError::Unavailable(_)) => None,
        Err(ProofError::Store(error)) => return Err(status::from_store(error)),
        Err(error) => return Err(Status::internal(error.to_string())),
    };
    let chart = ledger.chart().clone();
    let now = ledger.now();
    let (mut header, rows) = ledger
        .read(|state| at_head(state, caller, &request, &chart, now))
        .map_err(|e| status::from_domain(&e))?;
    if let Some(served) = checkpoint {
        header.checkpoint_note = served.note;
        header.checkpoint_size = served.checkpoint.size;
    }
    Ok(Plan {
        header,
        format: request.format,
        kind: request.kind,
        rows,
        chart,
    })
}

/// The header and the rows (or which entries to read) at the state's head.
fn at_head(
    state: &LedgerState,
    caller: &Caller,
    request: &ExportRequest,
    chart: &Chart,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(pb::ExportHeader, Rows), DomainError> {
    let branch = request.branch.as_ref();
    // The journal's action (ReadJournal) was checked by the handler.
    if request.kind != Kind::Journal {
        may_read(caller, branch)?;
    }
    if let Some(branch) = branch
        && state.branch(branch).is_none()
    {
        return Err(DomainError::not_found(
            "branch_id",
            "branch",
            branch.as_str(),
        ));
    }
    let head = state.last_sequence();
    let to = request.to.unwrap_or_else(|| state.today_for(branch, now));
    if let Some(from) = request.from
        && from > to
    {
        return Err(DomainError::invalid(
            "from",
            format!("{from} is after to ({to}, today)"),
        ));
    }
    let mut header = pb::ExportHeader {
        kind: request.kind.out() as i32,
        format: request.format.out() as i32,
        branch_id: branch.map(ToString::to_string).unwrap_or_default(),
        from: request.from.map(|d| d.to_string()).unwrap_or_default(),
        to: to.to_string(),
        head_sequence: head,
        head_hash: hex::encode(state.last_hash()),
        ..Default::default()
    };
    let books = state.books();
    let rows = match request.kind {
        Kind::Journal | Kind::Postings => {
            return Ok((
                header,
                Rows::Entries(EntryFilter {
                    kind: request.kind,
                    branch: request.branch.clone(),
                    from: request.from,
                    to,
                    head,
                }),
            ));
        }
        Kind::TrialBalance => {
            let currency = state.books_currency(branch)?;
            let as_of = AsOf::Date(to);
            let trial = books.trial_balance(branch, as_of);
            let reply = super::trial_balance_out(chart, branch, &trial, currency, as_of, head);
            trial_balance_rows(&reply, currency)
        }
        Kind::BalanceSheet => {
            let currency = state.books_currency(branch)?;
            let previous = super::months_before(to, 12);
            header.previous_to = previous.to_string();
            let sheet = books.balance_sheet(branch, to);
            let before = books.balance_sheet(branch, previous);
            let reply = super::balance_sheet_out(chart, branch, (&sheet, &before), currency, head);
            balance_sheet_rows(&reply, currency)
        }
        Kind::IncomeStatement => {
            let currency = state.books_currency(branch)?;
            let (from, to) = super::statement_period(request.from, to)?;
            let (previous_from, previous_to) =
                (super::months_before(from, 12), super::months_before(to, 12));
            header.from = from.to_string();
            header.previous_from = previous_from.to_string();
            header.previous_to = previous_to.to_string();
            let statement = books.income_statement(branch, from, to);
            let before = books.income_statement(branch, previous_from, previous_to);
            let reply =
                super::income_statement_out(chart, branch, (&statement, &before), currency, head);
            income_statement_rows(&reply, currency)
        }
    };
    header.rows_total = Some(rows.len() as u64);
    Ok((header, Rows::Ready(rows)))
}

/// A trial balance's rows, as `GetTrialBalance` gives them.
fn trial_balance_rows(reply: &pb::GetTrialBalanceResponse, currency: Currency) -> Vec<Row> {
    reply
        .rows
        .iter()
        .map(|row| {
            let kind = pb::AccountKind::try_from(row.kind)
                .map(|k| {
                    k.as_str_name()
                        .trim_start_matches("ACCOUNT_KIND_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            vec![
                text(&row.gl_code),
                text(&row.gl_name),
                text(&row.line),
                text(kind),
                amount(&row.debits),
                amount(&row.credits),
                amount(&row.debit_balance),
                amount(&row.credit_balance),
                text(currency.code()),
            ]
        })
        .collect()
}

/// A statement's lines of one section.
fn statement_rows<'a>(
    section: &'a str,
    lines: impl IntoIterator<Item = &'a pb::StatementLine> + 'a,
    currency: Currency,
) -> impl Iterator<Item = Row> + 'a {
    lines.into_iter().map(move |line| {
        vec![
            text(section),
            text(&line.gl_code),
            text(&line.gl_name),
            text(&line.line),
            amount(&line.amount),
            amount(&line.previous_amount),
            text(currency.code()),
        ]
    })
}

/// A balance sheet's rows, as `GetBalanceSheet` gives them: assets,
/// liabilities, equity, then the two totals.
fn balance_sheet_rows(reply: &pb::GetBalanceSheetResponse, currency: Currency) -> Vec<Row> {
    statement_rows("assets", &reply.assets, currency)
        .chain(statement_rows("liabilities", &reply.liabilities, currency))
        .chain(statement_rows("equity", &reply.equity, currency))
        .chain(statement_rows(
            "total",
            reply
                .total_assets
                .iter()
                .chain(&reply.total_liabilities_and_equity),
            currency,
        ))
        .collect()
}

/// An income statement's rows, as `GetIncomeStatement` gives them: income,
/// expenses, then the result.
fn income_statement_rows(reply: &pb::GetIncomeStatementResponse, currency: Currency) -> Vec<Row> {
    statement_rows("income", &reply.income, currency)
        .chain(statement_rows("expenses", &reply.expenses, currency))
        .chain(statement_rows("result", &reply.result, currency))
        .collect()
}

/// Starts streaming `plan` on a read thread; the export's turn is given
/// back when the producer ends.
pub fn start(ledger: Arc<Ledger>, plan: Plan, turn: OwnedSemaphorePermit) -> ExportStream {
    let (sender, receiver) = mpsc::channel(MESSAGES_QUEUED_MAX);
    let sink = Sink {
        sender: sender.clone(),
        runtime: tokio::runtime::Handle::current(),
        stall_max: CLIENT_STALL_MAX,
    };
    tokio::spawn(async move {
        let produced = ledger
            .read_off_runtime_holding(Holds::Briefly, move |ledger| {
                let _turn = turn;
                plan.produce(ledger, &sink)
            })
            .await;
        // A producer that panicked said nothing; the client hears why.
        if let Err(error) = produced {
            let _ = sender.try_send(Err(read_failed(error)));
        }
    });
    ReceiverStream::new(receiver)
}

/// Why the producer stopped before the trailer.
#[derive(Debug)]
pub enum Stop {
    /// The client went away, or took nothing for the stall bound.
    Gone(&'static str),
    /// A fault; the client is told.
    Failed(Status),
}

impl From<Status> for Stop {
    fn from(status: Status) -> Stop {
        Stop::Failed(status)
    }
}

/// The producer's end of the channel to the client.
pub struct Sink {
    sender: mpsc::Sender<Result<pb::ExportBooksResponse, Status>>,
    /// The runtime the channel's waits and timers run on.
    runtime: tokio::runtime::Handle,
    stall_max: Duration,
}

impl Sink {
    /// Sends `part`, waiting at most the stall bound for room.
    fn send(&self, part: Part) -> Result<(), Stop> {
        let message = Ok(pb::ExportBooksResponse { part: Some(part) });
        // The timer is made inside the runtime's context.
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(self.stall_max, self.sender.send(message)).await
        });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone("the client went away")),
            Err(_) => Err(Stop::Gone("the client took nothing for too long")),
        }
    }

    /// Tells the client the export failed (when it still listens).
    fn fail(&self, status: Status) {
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(self.stall_max, self.sender.send(Err(status))).await
        });
    }
}

impl Plan {
    /// Sends the header, the rows in chunks and the trailer.
    fn produce(self, ledger: &Ledger, sink: &Sink) {
        let started = std::time::Instant::now();
        let kind = self.kind;
        let result = match self.rows {
            Rows::Ready(rows) => send_all(
                self.header,
                self.format,
                kind.columns(),
                rows.into_iter().map(Ok),
                sink,
            )
            .map(|trailer| (trailer, None)),
            Rows::Entries(filter) => {
                let mut rows = EntryRows::new(ledger, &self.chart, filter);
                let trailer = send_all(self.header, self.format, kind.columns(), &mut rows, sink);
                trailer.map(|t| (t, rows.dates))
            }
        };
        match result {
            Ok((mut trailer, dates)) => {
                if let Some((first, last)) = dates {
                    trailer.first_date = first.to_string();
                    trailer.last_date = last.to_string();
                }
                tracing::debug!(
                    ?kind,
                    rows = trailer.rows,
                    bytes = trailer.bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "export sent"
                );
                let _ = sink.send(Part::Trailer(trailer));
            }
            Err(Stop::Gone(why)) => tracing::info!(?kind, why, "export given up"),
            Err(Stop::Failed(status)) => {
                tracing::error!(?kind, error = %status.message(), "export failed");
                sink.fail(status);
            }
        }
    }
}

/// Sends `header`, then `rows` written in `format` in chunks; the trailer
/// (without dates) when every row went.
pub fn send_all(
    header: pb::ExportHeader,
    format: Format,
    columns: &[&'static str],
    rows: impl Iterator<Item = Result<Row, Status>>,
    sink: &Sink,
) -> Result<pb::ExportTrailer, Stop> {
    sink.send(Part::Header(header))?;
    let mut writer = format.writer(columns);
    let mut chunker = Chunker::default();
    let mut ready = Vec::new();
    let mut bytes = Vec::new();
    writer.preamble(&mut bytes)?;
    chunker.push(&bytes, false, &mut ready);
    for row in rows {
        bytes.clear();
        writer.row(&row?, &mut bytes)?;
        chunker.push(&bytes, true, &mut ready);
        for chunk in ready.drain(..) {
            sink.send(Part::Chunk(chunk))?;
        }
    }
    chunker.finish(&mut ready);
    for chunk in ready.drain(..) {
        sink.send(Part::Chunk(chunk))?;
    }
    Ok(chunker.trailer())
}

/// Cuts the data into chunks of at most [`CHUNK_BYTES_MAX`] bytes, counting
/// rows and hashing every byte.
#[derive(Default)]
pub struct Chunker {
    buffer: Vec<u8>,
    /// Rows pushed whole.
    rows: u64,
    /// Bytes sent in chunks.
    bytes: u64,
    digest: Sha256,
}

impl Chunker {
    /// Adds `bytes` (a whole row when `row`), putting the chunks it fills in `out`.
    pub fn push(&mut self, bytes: &[u8], row: bool, out: &mut Vec<pb::ExportChunk>) {
        if !self.buffer.is_empty() && self.buffer.len() + bytes.len() > CHUNK_BYTES_MAX {
            out.push(self.take(self.buffer.len()));
        }
        self.buffer.extend_from_slice(bytes);
        // A row longer than a chunk goes in pieces; only its last completes it.
        while self.buffer.len() > CHUNK_BYTES_MAX {
            out.push(self.take(CHUNK_BYTES_MAX));
        }
        if row {
            self.rows += 1;
        }
    }

    /// Puts what is left in a last chunk.
    pub fn finish(&mut self, out: &mut Vec<pb::ExportChunk>) {
        if !self.buffer.is_empty() {
            out.push(self.take(self.buffer.len()));
        }
    }

    fn take(&mut self, len: usize) -> pb::ExportChunk {
        let data: Vec<u8> = self.buffer.drain(..len).collect();
        self.digest.update(&data);
        self.bytes += data.len() as u64;
        pb::ExportChunk {
            data,
            rows_done: self.rows,
        }
    }

    /// The trailer of everything sent.
    pub fn trailer(&self) -> pb::ExportTrailer {
        pb::ExportTrailer {
            rows: self.rows,
            sha256: hex::encode(self.digest.clone().finalize()),
            bytes: self.bytes,
            ..Default::default()
        }
    }
}

/// The rows of the journal's entries that `filter` keeps, read a page at a
/// time, in sequence order.
struct EntryRows<'a> {
    ledger: &'a Ledger,
    chart: &'a Chart,
    filter: EntryFilter,
    /// The next entry to read.
    next: u64,
    ready: VecDeque<Row>,
    /// The earliest and latest effective dates of the entries kept.
    dates: Option<(NaiveDate, NaiveDate)>,
    failed: bool,
}

impl<'a> EntryRows<'a> {
    fn new(ledger: &'a Ledger, chart: &'a Chart, filter: EntryFilter) -> EntryRows<'a> {
        EntryRows {
            ledger,
            chart,
            filter,
            next: 1,
            ready: VecDeque::new(),
            dates: None,
            failed: false,
        }
    }

    /// Reads the next page of entries and makes rows of those kept.
    fn read_page(&mut self) -> Result<(), Status> {
        let head = self.filter.head;
        let want = usize::try_from(head - self.next + 1)
            .unwrap_or(usize::MAX)
            .min(ENTRIES_PER_READ);
        let entries = self
            .ledger
            .entries(self.next, want)
            .map_err(status::from_store)?;
        if entries.is_empty() {
            return Err(Status::internal(format!(
                "the journal ends before entry {} (the export's head is {head})",
                self.next
            )));
        }
        for (entry, sequence) in entries.iter().zip(self.next..) {
            if entry.body.sequence != sequence {
                return Err(Status::internal(format!(
                    "the journal gave entry {} where {sequence} was expected",
                    entry.body.sequence
                )));
            }
        }
        self.next += entries.len() as u64;
        let kept: Vec<&Entry> = entries.iter().filter(|e| self.filter.keeps(e)).collect();
        for entry in &kept {
            let date = entry.body.effective_date;
            self.dates = Some(match self.dates {
                None => (date, date),
                Some((first, last)) => (first.min(date), last.max(date)),
            });
        }
        match self.filter.kind {
            Kind::Postings => self.posting_rows(&kept),
            _ => {
                for entry in kept {
                    self.ready.push_back(journal_row(entry)?);
                }
                Ok(())
            }
        }
    }

    /// A row per posting of `entries`; the accounts' lines are looked up
    /// in one short hold of the read lock.
    fn posting_rows(&mut self, entries: &[&Entry]) -> Result<(), Status> {
        let postings = || entries.iter().flat_map(|e| &e.body.postings);
        let lines: Vec<Option<Line>> = self.ledger.read(|state| {
            postings()
                .map(|p| state.books().account_line(&p.account))
                .collect()
        });
        let mut lines = lines.into_iter();
        for entry in entries {
            for posting in &entry.body.postings {
                let line = lines.next().flatten().ok_or_else(|| {
                    Status::internal(format!(
                        "account {} of entry {} is not in the books",
                        posting.account, entry.body.sequence
                    ))
                })?;
                self.ready
                    .push_back(posting_row(entry, posting, &line, self.chart));
            }
        }
        Ok(())
    }
}

impl Iterator for EntryRows<'_> {
    type Item = Result<Row, Status>;

    fn next(&mut self) -> Option<Result<Row, Status>> {
        loop {
            if let Some(row) = self.ready.pop_front() {
                return Some(Ok(row));
            }
            if self.failed || self.next > self.filter.head {
                return None;
            }
            if let Err(status) = self.read_page() {
                self.failed = true;
                return Some(Err(status));
            }
        }
    }
}

/// An entry's branch, empty for the institution's.
fn branch_of(entry: &Entry) -> Cell {
    text(
        entry
            .body
            .branch
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

/// A journal row: what the entry was, who entered it, its debits and hash.
fn journal_row(entry: &Entry) -> Result<Row, Status> {
    let body = &entry.body;
    let currency = convert::entry_currency(body);
    let debits = sum(body
        .postings
        .iter()
        .filter(|p| p.side == Side::Debit)
        .map(|p| p.amount));
    let debits = stored_figure("debits_total", debits)?;
    Ok(vec![
        Cell::Count(body.sequence),
        text(body.effective_date.to_string()),
        text(convert::recorded_at(body)),
        branch_of(entry),
        text(body.command.name()),
        text(body.request_id.to_string()),
        text(
            body.attribution
                .as_ref()
                .map(|a| a.principal.to_string())
                .unwrap_or_default(),
        ),
        text(convert::describe(body, currency)),
        text(money_out(debits, currency).amount),
        text(currency.code()),
        text(hex::encode(entry.hash)),
    ])
}

/// A posting row, with the account's general-ledger line and code.
fn posting_row(entry: &Entry, posting: &Posting, line: &Line, chart: &Chart) -> Row {
    let currency = convert::entry_currency(&entry.body);
    let gl = chart.account(line);
    vec![
        Cell::Count(entry.body.sequence),
        text(entry.body.effective_date.to_string()),
        branch_of(entry),
        text(posting.account.to_string()),
        text(line.key()),
        text(gl.code),
        text(gl.name),
        text(match posting.side {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }),
        text(money_out(posting.amount, currency).amount),
        text(currency.code()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(count: usize, width: usize) -> Vec<Row> {
        (0..count)
            .map(|i| {
                vec![
                    Cell::Count(i as u64),
                    text(format!(
                        "{}\"quoted, with a comma\"\nand a line",
                        "x".repeat(width)
                    )),
                ]
            })
            .collect()
    }

    /// Sends `rows` through a sink of a runtime of the test's, collecting
    /// what arrives.
    fn export(rows: Vec<Row>, format: Format) -> Vec<pb::ExportBooksResponse> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (sender, mut receiver) = mpsc::channel(MESSAGES_QUEUED_MAX);
        let sink = Sink {
            sender,
            runtime: runtime.handle().clone(),
            stall_max: Duration::from_secs(10),
        };
        let producer = std::thread::spawn(move || {
            let trailer = send_all(
                pb::ExportHeader::default(),
                format,
                &["n", "text"],
                rows.into_iter().map(Ok),
                &sink,
            )
            .unwrap();
            sink.send(Part::Trailer(trailer)).unwrap();
        });
        let messages = runtime.block_on(async {
            let mut messages = Vec::new();
            while let Some(message) = receiver.recv().await {
                messages.push(message.unwrap());
            }
            messages
        });
        producer.join().unwrap();
        messages
    }

    #[test]
    fn chunks_are_bounded_count_whole_rows_and_hash_every_byte() {
        // Rows of about 30 KiB, and one of 200 KiB (split in pieces).
        let mut all = rows(10, 30_000);
        all.insert(4, rows(1, 200_000).remove(0));
        for format in [Format::Csv, Format::JsonLines] {
            let messages = export(all.clone(), format);
            let mut data = Vec::new();
            let mut last_rows_done = 0;
            let chunks: Vec<&pb::ExportChunk> = messages
                .iter()
                .filter_map(|m| match &m.part {
                    Some(Part::Chunk(chunk)) => Some(chunk),
                    _ => None,
                })
                .collect();
            for chunk in &chunks {
                assert!(!chunk.data.is_empty() && chunk.data.len() <= CHUNK_BYTES_MAX);
                assert!(chunk.rows_done >= last_rows_done);
                last_rows_done = chunk.rows_done;
                data.extend_from_slice(&chunk.data);
                // Rows done are the rows whose line end has been sent.
                let ends = match format {
                    Format::Csv => csv::ReaderBuilder::new()
                        .from_reader(data.as_slice())
                        .records()
                        .filter(|r| r.is_ok())
                        .count() as u64,
                    Format::JsonLines => data
                        .split(|b| *b == b'\n')
                        .filter(|line| serde_json::from_slice::<serde_json::Value>(line).is_ok())
                        .count() as u64,
                };
                assert!(
                    ends >= chunk.rows_done,
                    "{format:?}: {ends} rows parse, {} said done",
                    chunk.rows_done
                );
            }
            assert!(chunks.len() > 5, "{} chunks", chunks.len());
            assert!(matches!(messages[0].part, Some(Part::Header(_))));
            let Some(Part::Trailer(trailer)) = &messages.last().unwrap().part else {
                panic!("no trailer last");
            };
            assert_eq!(trailer.rows, 11);
            assert_eq!(last_rows_done, 11);
            assert_eq!(trailer.bytes, data.len() as u64);
            assert_eq!(trailer.sha256, hex::encode(Sha256::digest(&data)));
            // The data parses back to the rows.
            let parsed: Vec<(u64, String)> = match format {
                Format::Csv => csv::Reader::from_reader(data.as_slice())
                    .deserialize()
                    .map(Result::unwrap)
                    .collect(),
                Format::JsonLines => data
                    .split(|b| *b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(|line| {
                        let value: serde_json::Value = serde_json::from_slice(line).unwrap();
                        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
                        assert_eq!(keys, ["n", "text"], "keys in column order");
                        (
                            value["n"].as_u64().unwrap(),
                            value["text"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
            };
            let expected: Vec<(u64, String)> = all
                .iter()
                .map(|row| match (&row[0], &row[1]) {
                    (Cell::Count(n), Cell::Text(t)) => (*n, t.clone()),
                    _ => unreachable!(),
                })
                .collect();
            assert_eq!(parsed, expected, "{format:?}");
        }
    }

    #[test]
    fn a_producer_stops_when_the_client_goes_or_stalls() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let run = |keep_receiver: bool| {
            let (sender, receiver) = mpsc::channel(1);
            let sink = Sink {
                sender,
                runtime: runtime.handle().clone(),
                stall_max: Duration::from_millis(50),
            };
            let receiver = keep_receiver.then_some(receiver);
            let started = std::time::Instant::now();
            let result = send_all(
                pb::ExportHeader::default(),
                Format::Csv,
                &["n", "text"],
                rows(1_000, 1_000).into_iter().map(Ok),
                &sink,
            );
            drop(receiver);
            (result, started.elapsed())
        };
        let (gone, _) = run(false);
        assert!(matches!(gone, Err(Stop::Gone(_))), "{gone:?}");
        let (stalled, waited) = run(true);
        assert!(matches!(stalled, Err(Stop::Gone(_))), "{stalled:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn a_request_names_the_field_at_fault() {
        let request = |kind: pb::ExportKind, format: i32, from: &str, to: &str| {
            ExportRequest::parse(&pb::ExportBooksRequest {
                kind: kind as i32,
                format,
                branch_id: String::new(),
                from: from.into(),
                to: to.into(),
            })
            .unwrap_err()
            .to_string()
        };
        let csv = pb::ExportFormat::Csv as i32;
        let cases = [
            (request(pb::ExportKind::Unspecified, csv, "", ""), "kind"),
            (request(pb::ExportKind::Postings, 0, "", ""), "format"),
            (request(pb::ExportKind::Postings, 9, "", ""), "format"),
            (
                request(pb::ExportKind::Postings, csv, "2023-13-01", ""),
                "from",
            ),
            (
                request(pb::ExportKind::Postings, csv, "", "2023-02-30"),
                "to",
            ),
            (
                request(pb::ExportKind::Postings, csv, "2023-12-31", "2023-01-01"),
                "from",
            ),
            (
                request(pb::ExportKind::TrialBalance, csv, "2023-01-01", ""),
                "from",
            ),
        ];
        for (message, field) in cases {
            assert!(message.starts_with(&format!("{field}:")), "{message}");
        }
        let unknown = ExportRequest::parse(&pb::ExportBooksRequest {
            kind: 42,
            format: csv,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(unknown.starts_with("kind:"), "{unknown}");
    }
}
