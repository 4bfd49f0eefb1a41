//! `export`: the books as the auditor's spreadsheet input (`ExportBooks`),
//! written to a file or standard output as it arrives, with a progress bar
//! on a terminal's stderr. Before it says the export is whole, it checks
//! the trailer against what it wrote: the SHA-256 of every byte and the
//! rows, counted in the data itself. A file is written beside its name and
//! renamed into place only then, so a failed export leaves no file that
//! looks whole.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::super::connect::read_error;
use super::super::output::{Report, fields, grouped};
use crate::pb;
use crate::pb::export_books_response::Part;

/// What to export.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// One row per journal entry dated in the period (needs the auditor's
    /// role in the institution).
    Journal,
    /// One row per posting of the entries dated in the period, with the
    /// account's general-ledger line and code.
    Postings,
    /// One row per general-ledger line at the end of --to.
    TrialBalance,
    /// The balance sheet at the end of --to, beside a year earlier.
    BalanceSheet,
    /// The income statement of --from..--to, beside the year before.
    IncomeStatement,
}

impl ExportKind {
    fn to_pb(self) -> pb::ExportKind {
        match self {
            ExportKind::Journal => pb::ExportKind::Journal,
            ExportKind::Postings => pb::ExportKind::Postings,
            ExportKind::TrialBalance => pb::ExportKind::TrialBalance,
            ExportKind::BalanceSheet => pb::ExportKind::BalanceSheet,
            ExportKind::IncomeStatement => pb::ExportKind::IncomeStatement,
        }
    }
}

/// How to write the rows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    #[value(alias = "jsonl")]
    JsonLines,
}

/// Arguments of `export`.
#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// What to export.
    #[arg(value_enum)]
    pub kind: ExportKind,
    /// The branch [default: the institution, every branch].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// First effective date, YYYY-MM-DD, of the journal, postings or income
    /// statement [default: the first entry; 1 January of --to's year for the
    /// income statement].
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last effective date, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// How to write the rows.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// The file to write; "-" for standard output [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Where the data goes.
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    /// A temporary file beside the one asked for, renamed into place once
    /// the export checks out.
    File {
        file: std::io::BufWriter<tempfile::NamedTempFile>,
        path: PathBuf,
    },
}

impl Sink {
    fn open(out: Option<&Path>) -> anyhow::Result<Sink> {
        match out {
            None => Ok(Sink::Stdout(std::io::BufWriter::new(std::io::stdout()))),
            Some(path) if path == Path::new("-") => {
                Ok(Sink::Stdout(std::io::BufWriter::new(std::io::stdout())))
            }
            Some(path) => {
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                let file = tempfile::Builder::new()
                    .prefix(".export-")
                    .tempfile_in(dir)
                    .with_context(|| format!("creating a file in {}", dir.display()))?;
                Ok(Sink::File {
                    file: std::io::BufWriter::new(file),
                    path: path.to_owned(),
                })
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(data).context("writing to standard output"),
            Sink::File { file, path } => file
                .write_all(data)
                .with_context(|| format!("writing {}", path.display())),
        }
    }

    /// Flushes, and puts a file in place; the path written, if a file.
    fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        match self {
            Sink::Stdout(mut out) => match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
                result => result.context("writing to standard output").map(|()| None),
            },
            Sink::File { file, path } => {
                let file = file
                    .into_inner()
                    .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error()))?;
                file.as_file()
                    .sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                file.persist(&path)
                    .with_context(|| format!("putting {} in place", path.display()))?;
                Ok(Some(path))
            }
        }
    }
}

/// Counts the rows in the data as it passes: line ends, outside quotes in
/// CSV (a field with a line end in it is quoted, and quotes inside it are
/// doubled, so each quote flips whether we are inside one), less the CSV
/// header row.
struct RowCounter {
    csv: bool,
    in_quotes: bool,
    line_ends: u64,
}

impl RowCounter {
    fn new(format: ExportFormat) -> RowCounter {
        RowCounter {
            csv: format == ExportFormat::Csv,
            in_quotes: false,
            line_ends: 0,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        for byte in data {
            match byte {
                b'"' if self.csv => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.line_ends += 1,
                _ => {}
            }
        }
    }

    fn rows(&self) -> u64 {
        if self.csv {
            self.line_ends.saturating_sub(1)
        } else {
            self.line_ends
        }
    }
}

fn progress_bar(rows_total: Option<u64>) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(rows_total, target);
    let template = if rows_total.is_some() {
        "export [{elapsed_precise}] {bar:30} {pos}/{len} rows  {msg}"
    } else {
        "export [{elapsed_precise}] {spinner} {pos} rows  {msg}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar
}

/// Runs `export`.
pub async fn export(server: &str, args: ExportArgs) -> anyhow::Result<Report> {
    let mut stream = super::client(server)
        .await?
        .export_books(pb::ExportBooksRequest {
            kind: args.kind.to_pb() as i32,
            format: match args.format {
                ExportFormat::Csv => pb::ExportFormat::Csv,
                ExportFormat::JsonLines => pb::ExportFormat::JsonLines,
            } as i32,
            branch_id: args.branch.clone().unwrap_or_default(),
            from: args.from.clone().unwrap_or_default(),
            to: args.to.clone().unwrap_or_default(),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let header = match stream.message().await.map_err(read_error)? {
        Some(pb::ExportBooksResponse {
            part: Some(Part::Header(header)),
        }) => header,
        _ => bail!("the server's export did not start with its header"),
    };
    let mut sink = Sink::open(args.out.as_deref())?;
    let bar = progress_bar(header.rows_total);
    let mut digest = Sha256::new();
    let mut counter = RowCounter::new(args.format);
    let mut bytes = 0u64;
    let mut rows_done = 0;
    let trailer = loop {
        let message = stream.message().await.map_err(|status| {
            bar.abandon();
            read_error(status)
        })?;
        match message.and_then(|m| m.part) {
            Some(Part::Chunk(chunk)) => {
                sink.write(&chunk.data)?;
                digest.update(&chunk.data);
                counter.feed(&chunk.data);
                bytes += chunk.data.len() as u64;
                rows_done = chunk.rows_done;
                bar.set_position(rows_done);
                bar.set_message(format!("{} bytes", grouped(&bytes.to_string())));
            }
            Some(Part::Trailer(trailer)) => break trailer,
            Some(Part::Header(_)) => bail!("the server's export sent a second header"),
            None => {
                bar.abandon();
                bail!(
                    "the export ended after {rows_done} rows without its trailer: it is incomplete"
                );
            }
        }
    };
    bar.finish_and_clear();
    let sha256 = hex::encode(digest.finalize());
    if trailer.sha256 != sha256 {
        bail!(
            "the export's data does not check out: SHA-256 {sha256} written, {} sent",
            trailer.sha256
        );
    }
    if trailer.rows != counter.rows() || trailer.rows != rows_done || trailer.bytes != bytes {
        bail!(
            "the export's data does not check out: {} rows in {bytes} bytes written, {} rows in {} \
             bytes sent",
            counter.rows(),
            trailer.rows,
            trailer.bytes
        );
    }
    let written = sink.finish()?;
    let summary = summary(&header, &trailer, written.as_deref());
    match written {
        Some(_) => Ok(summary),
        None => {
            // The data went to standard output; the summary goes to stderr.
            eprintln!("{}", summary.text.trim_end());
            Ok(Report {
                text: String::new(),
                json: serde_json::Value::Null,
            })
        }
    }
}

fn summary(header: &pb::ExportHeader, trailer: &pb::ExportTrailer, path: Option<&Path>) -> Report {
    let period = match (header.from.as_str(), header.to.as_str()) {
        ("", to) => format!("to {to}"),
        (from, to) => format!("{from} to {to}"),
    };
    let whose = if header.branch_id.is_empty() {
        "the institution".to_owned()
    } else {
        format!("branch {}", header.branch_id)
    };
    let what = pb::ExportKind::try_from(header.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EXPORT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let mut lines = vec![
        ("export", format!("{what} of {whose}, {period}")),
        ("rows", grouped(&trailer.rows.to_string())),
        ("bytes", grouped(&trailer.bytes.to_string())),
        ("sha256", trailer.sha256.clone()),
        ("head sequence", header.head_sequence.to_string()),
        ("head hash", header.head_hash.clone()),
        ("checkpoint size", header.checkpoint_size.to_string()),
    ];
    if let Some(path) = path {
        lines.push(("written to", path.display().to_string()));
    }
    Report {
        text: fields(&lines),
        json: json!({
            "kind": what,
            "branch_id": header.branch_id,
            "from": header.from,
            "to": header.to,
            "previous_from": header.previous_from,
            "previous_to": header.previous_to,
            "rows": trailer.rows,
            "bytes": trailer.bytes,
            "sha256": trailer.sha256,
            "first_date": trailer.first_date,
            "last_date": trailer.last_date,
            "head_sequence": header.head_sequence,
            "head_hash": header.head_hash,
            "checkpoint_size": header.checkpoint_size,
            "checkpoint_note": header.checkpoint_note,
            "out": path.map(|p| p.display().to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_in_the_data_whatever_its_quotes_and_chunks() {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(["sequence", "description"]).unwrap();
        csv.write_record(["1", "a \"quoted\"\nline, and more"])
            .unwrap();
        csv.write_record(["2", "plain"]).unwrap();
        csv.write_record(["3", "\"\n\""]).unwrap();
        let data = csv.into_inner().unwrap();
        for split in 0..data.len() {
            let mut counter = RowCounter::new(ExportFormat::Csv);
            counter.feed(&data[..split]);
            counter.feed(&data[split..]);
            assert_eq!(counter.rows(), 3, "split at {split}");
        }
        let mut jsonl = RowCounter::new(ExportFormat::JsonLines);
        jsonl.feed(b"{\"a\":\"x\\n\\\"y\"}\n{\"a\":\"\"}\n");
        assert_eq!(jsonl.rows(), 2);
    }
}
