//! Shared by the test binaries that run the real `mfi-ledger` binary: start
//! a server (or the echo server) on 127.0.0.1, port 0, with a fresh data
//! directory, learn its address from the line it prints, and kill it when
//! dropped.

#![allow(dead_code)]

pub mod certs;
pub mod chromium;
pub mod postgres;

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
    /// What the server writes to stderr (its log, at warn and above), kept
    /// outside its data directory so that a failing test can show the cause.
    log: tempfile::NamedTempFile,
    /// The rest of its stdout, kept open (a closed pipe would fail a later line).
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// The ledger service on a fresh data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// The ledger service on a fresh data directory, started with `args` too.
    pub fn start_with(args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data")
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
        let log = tempfile::NamedTempFile::new().expect("a file for the server's log");
        let stderr = log.reopen().expect("the server's log file");
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().expect("server stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let Some(address) = line.trim().strip_prefix(ready).map(str::to_owned) else {
            // Not left running past the test that failed to start it.
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line from the server: {line:?} ({read:?})");
        };
        let url = format!("http://{address}");
        let token_file = data.path().join("tester.token");
        // Built before provisioning, so that a failure there stops it too.
        let server = Server {
            child,
            url,
            token_file,
            _data: data,
            log,
            stdout,
        };
        if server._data.path().join(ADMIN_TOKEN_FILE).exists() {
            provision(
                &server.url,
                server._data.path(),
                "tester",
                &["manager", "product-admin", "auditor"],
                &server.token_file,
            );
        }
        server
    }

    /// The next line the server prints on stdout (after its address).
    pub fn stdout_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the server's stdout");
        line.trim_end().to_owned()
    }

    /// The last lines of what the server logged (warnings and errors), for
    /// a failing test's message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
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
        call_as(&url, &admin, |channel| async move {
            let mut access = pb::access_service_client::AccessServiceClient::new(channel);
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

/// A channel to a server that sends a bearer token with every call.
pub type TokenChannel = tonic::service::interceptor::InterceptedService<
    tonic::transport::Channel,
    mfi_ledger::cli::connect::Bearer,
>;

/// Runs `call` on a channel to the server at `url` that presents `token`,
/// on a runtime of its own (from a test that has none), and gives back what
/// it gave.
pub fn call_as<F: std::future::Future>(
    url: &str,
    token: &str,
    call: impl FnOnce(TokenChannel) -> F,
) -> F::Output {
    let url = url.to_owned();
    let bearer = mfi_ledger::cli::connect::Bearer::new(Some(token.trim())).unwrap();
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
            call(tonic::service::interceptor::InterceptedService::new(
                channel, bearer,
            ))
            .await
        })
}

impl Server {
    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Stops the server as an operator does (SIGTERM: it answers what it
    /// took, signs its last checkpoint and exits), within 10 s.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Kills the server now (as a crash or an operator would stop it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on a data directory the test owns, so that it can be stopped,
/// the directory changed (or copied) and a server started on it again.
/// Starting is an `Err` holding what the server wrote to stderr when it
/// exits without listening (a refusal to start).
pub struct ServerOn {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `DATA/tester.token`: `tester`, a manager, product admin and auditor
    /// of the whole institution, made on the directory's first start.
    pub token_file: std::path::PathBuf,
}

impl ServerOn {
    /// `serve` on `data`, new or existing.
    pub fn start(data: &std::path::Path) -> Result<ServerOn, String> {
        let mut child = Command::new(BIN)
            .args(["serve", "--init", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        // Drained all along, so that a server that logs cannot block on a
        // full pipe.
        let stderr = child.stderr.take().expect("server stderr");
        let said = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
            text
        });
        let mut line = String::new();
        // A read that fails leaves `line` without the address: the child
        // is stopped below, not left running.
        let _ = BufReader::new(child.stdout.take().expect("server stdout")).read_line(&mut line);
        let Some(address) = line.trim().strip_prefix("mfi-ledger listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = said.join().unwrap_or_default();
            return Err(format!("{line}{stderr}"));
        };
        let url = format!("http://{address}");
        let token_file = data.join("tester.token");
        // Built before provisioning, so that a failure there stops it too.
        let server = ServerOn {
            child,
            url,
            token_file,
        };
        if !server.token_file.exists() {
            provision(
                &server.url,
                data,
                "tester",
                &["manager", "product-admin", "auditor"],
                &server.token_file,
            );
        }
        Ok(server)
    }

    /// The client binary, pointed at this server with tester's token.
    pub fn client(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["--server", &self.url])
            .env("MFI_LEDGER_TOKEN_FILE", &self.token_file);
        command
    }

    /// Stops the server as an operator does (SIGTERM: it answers what it
    /// took, signs its last checkpoint and exits), within 10 s.
    pub fn stop(mut self) {
        stop_child(&mut self.child);
    }
}

/// Sends SIGTERM to a server and waits (at most 10 s) for it to exit.
fn stop_child(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: a signal to the child this value owns and has not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait for the server").is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the server did not stop within 10 s of SIGTERM");
}

impl Drop for ServerOn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the directory `from` (and everything under it) to `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for item in std::fs::read_dir(from).expect("read the directory") {
        let item = item.expect("a directory entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("a file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).expect("copy a file");
        }
    }
}

/// Something that runs the client binary against a server (as some
/// principal): `ok` for a command that must succeed, `fails` for one that
/// must fail.
pub trait Client {
    /// Runs a client command with `args`.
    fn run(&self, args: &[&str]) -> Output;

    /// The stdout of `args`, which must succeed.
    fn ok(&self, args: &[&str]) -> String {
        expect_success(self.run(args), &format!("{args:?}"))
    }

    /// The stderr of `args`, which must fail.
    fn fails(&self, args: &[&str]) -> String {
        expect_failure(self.run(args), &format!("{args:?}"))
    }
}

/// A path as a command-line argument.
pub fn s(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The sizes of the checkpoints kept in an audit folder.
pub fn kept_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir.join("checkpoints"))
        .expect("checkpoints folder")
        .filter_map(|item| {
            let name = item.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".note")?.parse().ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// `audit fetch --dir DIR`, then `more`.
pub fn audit_fetch<'a>(dir: &'a std::path::Path, more: &[&'a str]) -> Vec<&'a str> {
    [&["audit", "fetch", "--dir", s(dir)][..], more].concat()
}

/// `audit replay --dir DIR`, then `more`.
pub fn audit_replay<'a>(dir: &'a std::path::Path, more: &[&'a str]) -> Vec<&'a str> {
    [&["audit", "replay", "--dir", s(dir)][..], more].concat()
}

/// One round of `witness` with its key, its state folder and the log's
/// key, then `more` (e.g. `--name`).
pub fn witness_once<'a>(
    key: &'a std::path::Path,
    state: &'a std::path::Path,
    log_key: &'a std::path::Path,
    more: &[&'a str],
) -> Vec<&'a str> {
    let args = ["witness", "--witness-key", s(key), "--state", s(state)];
    [&args[..], &["--log-key", s(log_key)], more, &["--once"]].concat()
}
