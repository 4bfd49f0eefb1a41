//! Shared by the test binaries that run the real `mfi-ledger` binary: start
//! a server (or the echo server) on 127.0.0.1, port 0, with a fresh data
//! directory, learn its address from the line it prints, and kill it when
//! dropped.

#![allow(dead_code)]

pub mod chromium;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mfi-ledger");

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _data: tempfile::TempDir,
}

impl Server {
    /// The ledger service on a fresh data directory.
    pub fn start() -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path());
        Server::spawn(command, "mfi-ledger listening on ", data)
    }

    /// The ledger service on a fresh data directory, recording every entry at
    /// the fixed time `at` (RFC 3339): runs of the same commands write the
    /// same journal.
    pub fn start_at(at: &str) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(BIN);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--fixed-clock",
                at,
                "--data",
            ])
            .arg(data.path());
        Server::spawn(command, "mfi-ledger listening on ", data)
    }

    /// The echo server: canned replies, no ledger.
    pub fn start_echo() -> Server {
        let mut command = Command::new(BIN);
        command.args(["echo-server", "--listen", "127.0.0.1:0"]);
        Server::spawn(
            command,
            "mfi-ledger echo listening on ",
            tempfile::tempdir().expect("temp dir"),
        )
    }

    fn spawn(mut command: Command, ready: &str, data: tempfile::TempDir) -> Server {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's address");
        let address = line
            .trim()
            .strip_prefix(ready)
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_owned();
        Server {
            child,
            url: format!("http://{address}"),
            _data: data,
        }
    }
}

impl Server {
    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
