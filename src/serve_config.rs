//! `serve --config FILE`: the server's settings in a TOML file, an
//! alternative to flags and environment variables. Each key is a `serve`
//! option (its long name with `_` for `-`); a flag, then the environment,
//! win over the file, which wins over the default. Unknown keys and values
//! of the wrong type are refused with the key's name. Relative paths are
//! taken from the file's own directory.
//!
//! ```toml
//! listen = "0.0.0.0:50051"          # --listen
//! data = "/var/lib/mfi-ledger"      # --data
//! store = "postgres://ledger@db.example/books" # --store (default embedded)
//! lease_seconds = 5                 # --lease-seconds
//! metrics_listen = "127.0.0.1:9090" # --metrics-listen
//! log_format = "json"               # --log-format (text, json)
//! batch_size_max = 1024             # --batch-size-max
//! queue_depth_max = 16384           # --queue-depth-max
//! queue_bytes_max = 67108864        # --queue-bytes-max
//! checkpoint_entries = 100000       # --checkpoint-entries
//! message_size_max = 1048576        # --message-size-max
//! requests_per_connection_max = 256 # --requests-per-connection-max
//! connections_per_peer_max = 256    # --connections-per-peer-max
//! connections_max = 4096            # --connections-max
//! request_timeout_ms = 30000        # --request-timeout-ms
//! chart = "chart.toml"              # --chart
//! log_origin = "ledger.tym.example/thai-binh" # --log-origin
//! log_checkpoint_entries = 100000   # --log-checkpoint-entries
//! log_checkpoint_seconds = 60       # --log-checkpoint-seconds
//! tls_cert = "tls/server.pem"       # --tls-cert
//! tls_key = "tls/server.key"        # --tls-key
//! tls_client_ca = "tls/clients.pem" # --tls-client-ca
//! allow_insecure_listen = false     # --allow-insecure-listen
//! ```
//!
//! It works through the options' environment variables: each key the file
//! sets becomes `MFI_LEDGER_<KEY>` unless that variable is already set, before
//! the command line is parsed. So there is one set of options, one parser and
//! one precedence.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every key of the file (see the module's documentation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub store: Option<String>,
    pub lease_seconds: Option<u64>,
    pub metrics_listen: Option<String>,
    pub log_format: Option<String>,
    pub batch_size_max: Option<u64>,
    pub queue_depth_max: Option<u64>,
    pub queue_bytes_max: Option<u64>,
    pub checkpoint_entries: Option<u64>,
    pub message_size_max: Option<u64>,
    pub requests_per_connection_max: Option<u64>,
    pub connections_per_peer_max: Option<u64>,
    pub connections_max: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub chart: Option<PathBuf>,
    pub log_origin: Option<String>,
    pub log_checkpoint_entries: Option<u64>,
    pub log_checkpoint_seconds: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub allow_insecure_listen: Option<bool>,
}

impl ServeFile {
    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> anyhow::Result<ServeFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the configuration {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the configuration {}: {e}", path.display()))
    }

    /// The environment variables the file stands for, as (name, value);
    /// relative paths resolved against `dir`, the file's directory.
    pub fn variables(&self, dir: &Path) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| dir.join(p).to_string_lossy().into_owned())
        };
        let text = |v: &Option<String>| v.clone();
        let number = |v: &Option<u64>| v.map(|n| n.to_string());
        [
            ("MFI_LEDGER_LISTEN", text(&self.listen)),
            ("MFI_LEDGER_DATA", path(&self.data)),
            ("MFI_LEDGER_STORE", text(&self.store)),
            ("MFI_LEDGER_LEASE_SECONDS", number(&self.lease_seconds)),
            ("MFI_LEDGER_METRICS_LISTEN", text(&self.metrics_listen)),
            ("MFI_LEDGER_LOG_FORMAT", text(&self.log_format)),
            ("MFI_LEDGER_BATCH_SIZE_MAX", number(&self.batch_size_max)),
            ("MFI_LEDGER_QUEUE_DEPTH_MAX", number(&self.queue_depth_max)),
            ("MFI_LEDGER_QUEUE_BYTES_MAX", number(&self.queue_bytes_max)),
            (
                "MFI_LEDGER_CHECKPOINT_ENTRIES",
                number(&self.checkpoint_entries),
            ),
            (
                "MFI_LEDGER_MESSAGE_SIZE_MAX",
                number(&self.message_size_max),
            ),
            (
                "MFI_LEDGER_REQUESTS_PER_CONNECTION_MAX",
                number(&self.requests_per_connection_max),
            ),
            (
                "MFI_LEDGER_CONNECTIONS_PER_PEER_MAX",
                number(&self.connections_per_peer_max),
            ),
            ("MFI_LEDGER_CONNECTIONS_MAX", number(&self.connections_max)),
            (
                "MFI_LEDGER_REQUEST_TIMEOUT_MS",
                number(&self.request_timeout_ms),
            ),
            ("MFI_LEDGER_CHART", path(&self.chart)),
            ("MFI_LEDGER_LOG_ORIGIN", text(&self.log_origin)),
            (
                "MFI_LEDGER_LOG_CHECKPOINT_ENTRIES",
                number(&self.log_checkpoint_entries),
            ),
            (
                "MFI_LEDGER_LOG_CHECKPOINT_SECONDS",
                number(&self.log_checkpoint_seconds),
            ),
            ("MFI_LEDGER_TLS_CERT", path(&self.tls_cert)),
            ("MFI_LEDGER_TLS_KEY", path(&self.tls_key)),
            ("MFI_LEDGER_TLS_CLIENT_CA", path(&self.tls_client_ca)),
            (
                "MFI_LEDGER_ALLOW_INSECURE_LISTEN",
                self.allow_insecure_listen.map(|b| b.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect()
    }
}

/// The `--config` of a `serve` command line (`--config FILE` or
/// `--config=FILE` after `serve`), else `MFI_LEDGER_CONFIG`.
pub fn config_path(args: &[String]) -> Option<PathBuf> {
    let serve = args.iter().position(|arg| arg == "serve")?;
    let mut rest = args[serve + 1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("MFI_LEDGER_CONFIG").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_read_whole() {
        let doc = include_str!("serve_config.rs");
        let example: String = doc
            .lines()
            .skip_while(|line| !line.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let file: ServeFile = toml::from_str(&example).unwrap();
        let variables = file.variables(Path::new("/etc/mfi-ledger"));
        // Every key of the struct is in the example, and becomes a variable.
        assert_eq!(variables.len(), 23, "{variables:?}");
        assert!(variables.contains(&("MFI_LEDGER_CHART", "/etc/mfi-ledger/chart.toml".into())));
        assert!(variables.contains(&("MFI_LEDGER_DATA", "/var/lib/mfi-ledger".into())));
        // The README lists every key too.
        let readme = include_str!("../README.md");
        for line in example.lines().filter(|l| !l.is_empty()) {
            assert!(readme.contains(line), "the README lacks {line:?}");
        }
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_is_named() {
        let error = toml::from_str::<ServeFile>("listne = \"x\"").unwrap_err();
        assert!(error.to_string().contains("listne"), "{error}");
        let error = toml::from_str::<ServeFile>("batch_size_max = \"many\"").unwrap_err();
        assert!(error.to_string().contains("batch_size_max"), "{error}");
    }

    #[test]
    fn the_path_is_found_after_serve_only() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["mfi-ledger", "serve", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["mfi-ledger", "--json", "serve", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
