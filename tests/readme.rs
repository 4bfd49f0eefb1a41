//! README.md's commands, run in order against a fresh server by
//! `scripts/readme-check`, so that the README cannot drift from the
//! program: a command that fails fails this test.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The check, with its built binary.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/readme-check");
const BIN: &str = env!("CARGO_BIN_EXE_mfi-ledger");

/// Longer than the check ever takes (about 2 s in a debug build); a hung
/// command is stopped by the check itself after 60 s.
const DEADLINE: Duration = Duration::from_secs(180);

/// The script's exit status for something it needs that is missing.
const MISSING: i32 = 77;

/// Whether CI runs the tests: what is missing fails there, never skips.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The check runs on python3; without it, the test is skipped, except in CI.
fn python3_present() -> bool {
    let present = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !present {
        assert!(
            !in_ci(),
            "python3 is missing: scripts/readme-check needs it"
        );
        eprintln!("skipped: python3 is missing (scripts/readme-check needs it)");
    }
    present
}

/// Runs the check with `args`; its exit code (None when killed) and its
/// stdout and stderr together.
fn readme_check(args: &[&Path]) -> (Option<i32>, String) {
    let mut child = Command::new(SCRIPT)
        .args(args)
        .env("MFI_LEDGER_BIN", BIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {SCRIPT}: {error}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the check") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            // SIGTERM lets the check stop its server and shell; were it
            // not to exit, they die with it (PR_SET_PDEATHSIG).
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            child.wait().expect("reap the check");
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap().unwrap_or_default(),
        err.join().unwrap().unwrap_or_default()
    );
    match status {
        None => panic!(
            "scripts/readme-check took more than {} s; its output:\n{output}",
            DEADLINE.as_secs()
        ),
        Some(status) => (status.code(), output),
    }
}

/// Whether the check said something it needs is missing (a skip, but not in CI).
fn missing(code: Option<i32>, output: &str) -> bool {
    if code != Some(MISSING) {
        return false;
    }
    assert!(!in_ci(), "scripts/readme-check lacks something:\n{output}");
    eprintln!("skipped: {output}");
    true
}

#[test]
fn every_command_of_the_readme_runs() {
    if !python3_present() {
        return;
    }
    let (code, output) = readme_check(&[]);
    if missing(code, &output) {
        return;
    }
    assert_eq!(
        code,
        Some(0),
        "a README command failed (scripts/readme-check):\n{output}"
    );
    assert!(output.contains("readme-check: ok: "), "{output}");
}

/// The check fails, naming the line, the block and the output, when a
/// command fails: it can catch a README that drifted.
#[test]
fn a_failing_command_fails_the_check() {
    if !python3_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let readme = dir.path().join("README.md");
    std::fs::write(
        &readme,
        "# A README that drifted\n\
         \n\
         ```sh\n\
         mfi() { cargo run --release -q -- \"$@\"; }\n\
         mfi --token-file data/admin.token principal-create me --grant manager --save-token\n\
         mfi register TB-0002 --name \"Trần Thị Lan\" --group TB-G01\n\
         mfi info\n\
         ```\n",
    )
    .expect("write the README");
    let (code, output) = readme_check(&[Path::new("--readme"), &readme]);
    if missing(code, &output) {
        return;
    }
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("FAILED"), "{output}");
    assert!(output.contains("README.md line 6"), "{output}");
    assert!(output.contains("TB-G01"), "the command's output: {output}");
    assert!(
        !output.contains("line    7"),
        "ran past the failure: {output}"
    );
}
