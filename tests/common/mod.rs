//! Shared by the test binaries that run the real `mfi-ledger` binary: start
//! a server (or the echo server) on 127.0.0.1, port 0, with a fresh data
//! directory, learn its address from the line it prints, and kill it when
//! dropped.

#![allow(dead_code)]

pub mod certs;
pub mod chromium;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mfi-ledger");

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The file holding the token of `tester`, a manager, product admin and
    /// auditor of the whole institution (none for the echo server).
    pub token_file: std::path::PathBuf,
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
        let url = format!("http://{address}");
        let token_file = data.path().join("tester.token");
        if data.path().join(ADMIN_TOKEN_FILE).exists() {
            provision(
                &url,
                data.path(),
                "tester",
                &["manager", "product-admin", "auditor"],
                &token_file,
            );
        }
        Server {
            child,
            url,
            token_file,
            _data: data,
        }
    }

    /// The client binary, pointed at this server with tester's token.
    pub fn client(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["--server", &self.url])
            .env("MFI_LEDGER_TOKEN_FILE", &self.token_file);
        command
    }

    /// The token file of `checker`, a second manager of the institution who
    /// approves what `tester` asks (created on first use, so that a test
    /// without approvals keeps its sequence numbers).
    pub fn approver_token_file(&self) -> std::path::PathBuf {
        let file = self._data.path().join("checker.token");
        if !file.exists() {
            provision(&self.url, self._data.path(), "checker", &["manager"], &file);
        }
        file
    }

    /// The token in `token_file`.
    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .expect("the tester's token file")
            .trim()
            .to_owned()
    }
}

/// The stdout of a client command `what` (e.g. its arguments) that must
/// have succeeded; panics with its stdout and stderr if it failed.
pub fn expect_success(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The stderr of a client command `what` that must have failed; panics
/// with its stdout if it succeeded.
pub fn expect_failure(output: Output, what: &str) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value of the line "name: value" in a command's text output.
pub fn field(stdout: &str, name: &str) -> String {
    find_field(stdout, name).unwrap_or_else(|| panic!("no field {name:?} in:\n{stdout}"))
}

/// Like [`field`], `None` when there is no such line.
pub fn find_field(stdout: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}:");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_owned())
}

/// The cells of the table row whose first cell is `first`.
pub fn row(stdout: &str, first: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            line.trim_matches('│')
                .split('┆')
                .map(|cell| cell.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|cell| cell == first))
        .unwrap_or_else(|| panic!("no row starting {first:?} in:\n{stdout}"))
}

/// Where a new server writes its first administrator's token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Creates principal `id` with `roles` (institution-wide) as the first
/// administrator, and writes its token to `token_file`.
fn provision(
    url: &str,
    data: &std::path::Path,
    id: &str,
    roles: &[&str],
    token_file: &std::path::Path,
) {
    use mfi_ledger::pb;
    let admin = std::fs::read_to_string(data.join(ADMIN_TOKEN_FILE)).expect("admin token");
    let url = url.to_owned();
    let id = id.to_owned();
    let roles: Vec<String> = roles.iter().map(|role| role.to_string()).collect();
    let token = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let channel = tonic::transport::Channel::from_shared(url)
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect to the server");
                let bearer = mfi_ledger::cli::connect::Bearer::new(Some(admin.trim())).unwrap();
                let mut access = pb::access_service_client::AccessServiceClient::new(
                    tonic::service::interceptor::InterceptedService::new(channel, bearer),
                );
                let roles = roles
                    .into_iter()
                    .map(|role| pb::RoleGrant {
                        role,
                        branch_id: String::new(),
                    })
                    .collect();
                access
                    .create_principal(pb::CreatePrincipalRequest {
                        context: Some(pb::WriteContext {
                            request_id: format!("create-{id}"),
                            actor: "test".into(),
                        }),
                        principal_id: id.clone(),
                        name: id.clone(),
                        roles,
                        issue_token: true,
                        token_valid_days: 0,
                    })
                    .await
                    .expect("create a principal")
                    .into_inner()
                    .token
                    .expect("a token")
                    .token
            })
    })
    .join()
    .unwrap();
    std::fs::write(token_file, format!("{token}\n")).unwrap();
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
