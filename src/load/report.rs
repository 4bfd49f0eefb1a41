//! The results of a run: a readable summary on stdout and, with
//! `--json-out`, the same figures as JSON.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::check::Verification;
use super::drive::{Outcome, code_name, group_thousands};
use super::reader::ReaderLog;
use super::setup::SetupReport;
use super::workload::Workload;
use super::{LoadArgs, Mode};

/// Everything a run measured and checked.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// "unary" or "batch".
    pub mode: &'static str,
    /// "ledger" or "echo".
    pub target: &'static str,
    /// The server loaded.
    pub server: String,
    /// Client tasks.
    pub clients: u32,
    /// HTTP/2 connections they shared.
    pub connections: u32,
    /// Commands per call (1 in unary mode).
    pub batch_size: u32,
    /// Commands per second offered, when paced.
    pub rate: Option<u64>,
    /// The synthetic branch (empty for the echo target).
    pub branch_id: String,
    /// Loans (members) the commands were spread over.
    pub loans: u32,
    /// Commands sent, acknowledged or not.
    pub commands: u64,
    /// Commands acknowledged.
    pub acknowledged: u64,
    /// Calls made.
    pub calls: u64,
    /// Seconds from the first call to the last reply.
    pub seconds: f64,
    /// Acknowledged commands per second.
    pub commands_per_second: f64,
    /// What one latency sample is: "command" (unary) or "batch call".
    pub latency_of: &'static str,
    /// Latency percentiles and extremes of each call, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest call.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Commands not acknowledged.
    pub errors: u64,
    /// Of those, how many per gRPC code ("RESOURCE_EXHAUSTED": 3).
    pub errors_by_code: Map<String, Value>,
    /// Of those, how many have an unknown outcome (transport failure or
    /// timeout: perhaps applied; the verification finds those that were).
    pub errors_outcome_unknown: u64,
    /// Whether the run stopped at the command cap before its duration.
    pub capped: bool,
    /// Whether the verification passed; null when not run (echo target).
    pub verified: Option<bool>,
    /// The verification's figures; null when not run.
    pub verification: Option<Value>,
    /// The setup's figures; null for the echo target.
    pub setup: Option<Value>,
    /// The reader looping a read beside the writers (`--reader`): its read,
    /// reads done and their latency; null without a reader.
    pub reader: Option<Value>,
    /// The same load run again without the reader
    /// (`--compare-without-reader`): its write figures, and `p99_ratio`, the
    /// p99 with the reader over the p99 without; null when not run.
    pub without_reader: Option<Value>,
}

/// Percentiles and extremes of a latency histogram in microseconds, in
/// milliseconds: p50, p99, p99.9, max, mean (zeros when empty).
fn latency_ms(latency: &hdrhistogram::Histogram<u64>) -> [f64; 5] {
    if latency.is_empty() {
        return [0.0; 5];
    }
    [
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.value_at_quantile(0.999)),
        ms(latency.max()),
        latency.mean() / 1000.0,
    ]
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Summary {
    /// Gathers the figures of a run.
    pub fn new(
        args: &LoadArgs,
        connections: u32,
        workload: &Workload,
        setup: Option<SetupReport>,
        outcome: &Outcome,
        verification: Option<Verification>,
    ) -> Summary {
        let seconds = outcome.elapsed.as_secs_f64();
        let acknowledged = outcome.acks.len() as u64;
        let latency = &outcome.latency;
        let quantile = |q: f64| {
            if latency.is_empty() {
                0.0
            } else {
                ms(latency.value_at_quantile(q))
            }
        };
        Summary {
            mode: args.mode.name(),
            target: args.target.name(),
            server: args.server.clone(),
            clients: args.clients,
            connections,
            batch_size: args.commands_per_call(),
            rate: args.rate,
            branch_id: setup
                .as_ref()
                .map(|_| workload.branch_id().to_owned())
                .unwrap_or_default(),
            loans: workload.members(),
            commands: outcome.commands,
            acknowledged,
            calls: outcome.calls,
            seconds,
            commands_per_second: if seconds > 0.0 {
                acknowledged as f64 / seconds
            } else {
                0.0
            },
            latency_of: match args.mode {
                Mode::Unary => "command",
                Mode::Batch => "batch call",
            },
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if latency.is_empty() {
                0.0
            } else {
                ms(latency.max())
            },
            mean_ms: if latency.is_empty() {
                0.0
            } else {
                latency.mean() / 1000.0
            },
            errors: outcome.error_count(),
            errors_by_code: outcome
                .errors
                .iter()
                .map(|(&code, &count)| (code_name(code), Value::from(count)))
                .collect(),
            errors_outcome_unknown: outcome.unknown,
            capped: outcome.capped,
            verified: verification.as_ref().map(Verification::passed),
            verification: verification.map(|v| {
                serde_json::json!({
                    "acknowledged_checked": v.acknowledged,
                    "entries_read": v.entries_read,
                    "from_sequence": v.range.0,
                    "to_sequence": v.range.1,
                    "mismatches": v.mismatches,
                    "applied_unacknowledged": v.applied_unacknowledged,
                    "balances_checked": v.balances_checked,
                    "balance_mismatches": v.balance_mismatches,
                    "examples": v.examples,
                    "seconds": v.elapsed.as_secs_f64(),
                })
            }),
            setup: setup.map(|s| {
                serde_json::json!({
                    "commands": s.commands,
                    "seconds": s.elapsed.as_secs_f64(),
                    "batched": s.batched,
                })
            }),
            reader: None,
            without_reader: None,
        }
    }

    /// Adds what the reader did and, when the load ran again without it,
    /// that run's write figures beside this one's.
    pub fn add_reader(&mut self, log: &ReaderLog, without_reader: Option<&Outcome>) {
        let [p50, p99, p999, max, mean] = latency_ms(&log.latency);
        let errors: u64 = log.errors.values().sum();
        self.reader = Some(serde_json::json!({
            "read": log.reader.name(),
            "reads": log.reads,
            "calls": log.calls,
            "errors": errors,
            "errors_by_code": log.errors.iter()
                .map(|(&code, &count)| (code_name(code), Value::from(count)))
                .collect::<Map<String, Value>>(),
            "p50_ms": p50,
            "p99_ms": p99,
            "p999_ms": p999,
            "max_ms": max,
            "mean_ms": mean,
        }));
        self.without_reader = without_reader.map(|outcome| {
            let [p50, p99, p999, max, mean] = latency_ms(&outcome.latency);
            let seconds = outcome.elapsed.as_secs_f64();
            let acknowledged = outcome.acks.len() as u64;
            serde_json::json!({
                "commands": outcome.commands,
                "acknowledged": acknowledged,
                "errors": outcome.error_count(),
                "seconds": seconds,
                "commands_per_second": if seconds > 0.0 { acknowledged as f64 / seconds } else { 0.0 },
                "p50_ms": p50,
                "p99_ms": p99,
                "p999_ms": p999,
                "max_ms": max,
                "mean_ms": mean,
                "p99_ratio": if p99 > 0.0 { self.p99_ms / p99 } else { 0.0 },
            })
        });
    }

    /// Records that the verification could not run.
    pub fn verification_failed(&mut self, error: String) {
        self.verified = Some(false);
        self.verification = Some(serde_json::json!({ "error": error }));
    }

    /// Why the run failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if self.verified == Some(false) {
            return Some("verification failed: see the mismatches above".to_owned());
        }
        if self.commands > 0 && self.acknowledged == 0 {
            return Some("no command was acknowledged".to_owned());
        }
        if let Some(reader) = &self.reader
            && reader["errors"].as_u64().unwrap_or_default() > 0
        {
            return Some(format!(
                "the reader's {} failed {} times",
                reader["read"].as_str().unwrap_or_default(),
                reader["errors"]
            ));
        }
        None
    }

    /// Prints the summary on stdout.
    pub fn print(&self) {
        print!("{}", self.text());
    }

    /// The readable summary.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let per_call = match self.batch_size {
            1 => String::new(),
            size => format!(", batches of {size}"),
        };
        text += &format!(
            "load: {} mode{per_call}, {} clients over {} connections, target {} at {}\n",
            self.mode, self.clients, self.connections, self.target, self.server
        );
        if let Some(setup) = &self.setup {
            text += &format!(
                "setup: branch {} with {} loans: {} commands in {:.2} s{}\n",
                self.branch_id,
                group_thousands(u64::from(self.loans)),
                counted(&setup["commands"]),
                setup["seconds"].as_f64().unwrap_or_default(),
                if setup["batched"] == Value::Bool(true) {
                    " (SubmitBatch)"
                } else {
                    " (unary calls)"
                }
            );
        }
        text += &format!(
            "commands: {} sent in {} calls, {} acknowledged, {} errors in {:.2} s{}\n",
            group_thousands(self.commands),
            group_thousands(self.calls),
            group_thousands(self.acknowledged),
            group_thousands(self.errors),
            self.seconds,
            if self.capped {
                " (stopped at the command cap)"
            } else {
                ""
            }
        );
        text += &format!(
            "throughput: {} commands/s acknowledged\n",
            group_thousands(self.commands_per_second.round() as u64)
        );
        text += &format!(
            "latency per {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, mean {:.3} ms\n",
            self.latency_of, self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        text += &self.reader_text();
        if !self.errors_by_code.is_empty() {
            let codes: Vec<String> = self
                .errors_by_code
                .iter()
                .map(|(code, count)| format!("{code} {}", counted(count)))
                .collect();
            text += &format!(
                "errors by code: {} ({} with an unknown outcome)\n",
                codes.join(", "),
                group_thousands(self.errors_outcome_unknown)
            );
        }
        match &self.verification {
            None => text += "verification: not run (echo target)\n",
            Some(v) if v.get("error").is_some() => {
                text += &format!(
                    "verification: FAILED: could not run: {}\n",
                    v["error"].as_str().unwrap_or_default()
                );
            }
            Some(v) => {
                text += &format!(
                    "verification: {}: {} acknowledged commands checked against entries {}..={} \
                     ({} read); {} mismatches; {} applied but unacknowledged; \
                     {} balances checked, {} off ({:.2} s)\n",
                    if self.verified == Some(true) {
                        "passed"
                    } else {
                        "FAILED"
                    },
                    counted(&v["acknowledged_checked"]),
                    v["from_sequence"],
                    v["to_sequence"],
                    counted(&v["entries_read"]),
                    counted(&v["mismatches"]),
                    counted(&v["applied_unacknowledged"]),
                    counted(&v["balances_checked"]),
                    counted(&v["balance_mismatches"]),
                    v["seconds"].as_f64().unwrap_or_default(),
                );
                if let Some(examples) = v["examples"].as_array() {
                    for example in examples {
                        text += &format!("  {}\n", example.as_str().unwrap_or_default());
                    }
                }
            }
        }
        text
    }

    /// The reader's line and, after a comparison, the write figures with
    /// and without the reader side by side.
    fn reader_text(&self) -> String {
        let Some(reader) = &self.reader else {
            return String::new();
        };
        let figure = |v: &Value, key: &str| v[key].as_f64().unwrap_or_default();
        let mut text = format!(
            "reader: {} looped beside the writers: {} reads in {} calls, {} errors; \
             read p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
            reader["read"].as_str().unwrap_or_default(),
            counted(&reader["reads"]),
            counted(&reader["calls"]),
            counted(&reader["errors"]),
            figure(reader, "p50_ms"),
            figure(reader, "p99_ms"),
            figure(reader, "max_ms"),
        );
        let Some(without) = &self.without_reader else {
            return text;
        };
        text += &format!(
            "write latency per {}, with the reader and then without it:\n",
            self.latency_of
        );
        text += &format!(
            "  {:<12} {:>14} {:>14} {:>7}\n",
            "", "with reader", "without", "ratio"
        );
        for (name, with, key) in [
            ("p50", self.p50_ms, "p50_ms"),
            ("p99", self.p99_ms, "p99_ms"),
            ("p99.9", self.p999_ms, "p999_ms"),
            ("max", self.max_ms, "max_ms"),
        ] {
            let alone = figure(without, key);
            let ratio = if alone > 0.0 { with / alone } else { 0.0 };
            text += &format!("  {name:<12} {with:>11.3} ms {alone:>11.3} ms {ratio:>7.2}\n");
        }
        text += &format!(
            "  {:<12} {:>14} {:>14}\n",
            "commands/s",
            group_thousands(self.commands_per_second.round() as u64),
            group_thousands(figure(without, "commands_per_second").round() as u64)
        );
        text
    }

    /// Writes the figures as JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        std::fs::write(path, json)?;
        Ok(())
    }
}

/// A count from the JSON figures with grouped digits ("12,345"); anything
/// else as JSON writes it. Entry sequence numbers are shown as they are.
fn counted(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| value.to_string(), group_thousands)
}

#[cfg(test)]
mod tests {
    use super::counted;
    use serde_json::json;

    #[test]
    fn counts_from_the_figures_are_grouped() {
        assert_eq!(counted(&json!(1_482_230)), "1,482,230");
        assert_eq!(counted(&json!(12)), "12");
        assert_eq!(counted(&json!(null)), "null");
    }
}
