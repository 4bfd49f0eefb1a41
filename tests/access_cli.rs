//! The access-control commands end to end: each test starts the real server
//! on a fresh data directory (which writes the first administrator's token
//! to DATA/admin.token) and runs the same binary's client commands with that
//! token or with tokens they issue. Every client runs with HOME in a
//! temporary directory, so the default token file is never the real one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common;

use common::{BIN, Server, expect_failure, expect_success, field};

/// A server, a temporary HOME for its clients and the administrator's token file.
struct Setup {
    server: Server,
    home: tempfile::TempDir,
    admin: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        let server = Server::start();
        let admin = server.data_dir().join("admin.token");
        assert!(admin.exists(), "the server wrote no {}", admin.display());
        Setup {
            server,
            home: tempfile::tempdir().expect("temp dir"),
            admin,
        }
    }

    /// A path in the temporary HOME.
    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// Runs a client command with `credential` (e.g. `["--token-file", F]`).
    fn run(&self, credential: &[&str], args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--server")
            .arg(&self.server.url)
            .args(credential)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MFI_LEDGER_TOKEN")
            .env_remove("MFI_LEDGER_TOKEN_FILE")
            .env("MFI_LEDGER_ACTOR", "it.admin")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }

    /// A command with `credential` that must succeed; its stdout.
    fn ok_with(&self, credential: &[&str], args: &[&str]) -> String {
        expect_success(self.run(credential, args), &format!("{args:?}"))
    }

    /// A command with `credential` that must fail; its stderr.
    fn fails_with(&self, credential: &[&str], args: &[&str]) -> String {
        expect_failure(self.run(credential, args), &format!("{args:?}"))
    }

    /// A command run by the first administrator that must succeed.
    fn admin(&self, args: &[&str]) -> String {
        let admin = self.admin.to_str().expect("utf-8 path");
        self.ok_with(&["--token-file", admin], args)
    }

    /// Like [`Setup::admin`], with `--json`.
    fn admin_json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let stdout = self.admin(&with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    /// `whoami --json` with the token in `file`.
    fn whoami(&self, file: &Path) -> Value {
        let file = file.to_str().expect("utf-8 path");
        let stdout = self.ok_with(&["--token-file", file], &["--json", "whoami"]);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("whoami: {e}\n{stdout}"))
    }

    /// Creates `hoa`, a clerk in branch TB, with her token in HOME/hoa.token.
    fn create_hoa(&self) -> PathBuf {
        let file = self.path("hoa.token");
        let stdout = self.admin(&[
            "principal-create",
            "hoa",
            "--name",
            "Nguyễn Thị Hoa",
            "--grant",
            "clerk:TB",
            "--token-out",
            file.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(field(&stdout, "principal"), "hoa");
        assert_eq!(field(&stdout, "roles"), "clerk (branch TB)");
        assert_eq!(field(&stdout, "token file"), file.display().to_string());
        assert!(!stdout.contains("mfi_"), "the token was printed:\n{stdout}");
        file
    }
}

/// The (role, scope) pairs of a `whoami --json`.
fn roles(whoami: &Value) -> Vec<(String, String)> {
    whoami["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|role| {
            (
                role["role"].as_str().expect("role").to_owned(),
                role["scope"].as_str().expect("scope").to_owned(),
            )
        })
        .collect()
}

fn pair(role: &str, scope: &str) -> (String, String) {
    (role.to_owned(), scope.to_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_new_principal_sees_itself_and_a_revoked_token_stops_working() {
    let setup = Setup::start();
    let hoa = setup.create_hoa();
    assert_eq!(mode(&hoa), 0o600);

    let me = setup.whoami(&hoa);
    assert_eq!(me["principal_id"], "hoa");
    assert_eq!(me["name"], "Nguyễn Thị Hoa");
    assert_eq!(me["credential"], "token");
    assert_eq!(roles(&me), [pair("clerk", "branch TB")]);
    let text = setup.ok_with(&["--token-file", hoa.to_str().unwrap()], &["whoami"]);
    assert_eq!(field(&text, "principal"), "hoa");
    assert!(
        text.contains("clerk") && text.contains("branch TB"),
        "{text}"
    );

    // A second token, printed once; revoking it stops it, not the first.
    let issued = setup.admin(&["token-issue", "hoa", "--valid-days", "7"]);
    let token = field(&issued, "token");
    let credential = field(&issued, "credential id");
    assert!(token.starts_with("mfi_"), "{issued}");
    assert!(!field(&issued, "expires at").is_empty());
    assert!(issued.contains("will not be shown again"), "{issued}");
    let with_token = ["--token", token.as_str()];
    setup.ok_with(&with_token, &["whoami"]);
    let revoked = setup.admin(&["credential-revoke", &credential]);
    assert_eq!(field(&revoked, "revoked credential"), credential);
    let refused = setup.fails_with(&with_token, &["whoami"]);
    assert!(refused.contains("Unauthenticated"), "{refused}");
    assert_eq!(setup.whoami(&hoa)["principal_id"], "hoa");

    // The listing shows both principals and the revocation.
    let listing = setup.admin_json(&["principals"]);
    let principals = listing["principals"].as_array().expect("principals");
    let ids: Vec<&str> = principals
        .iter()
        .map(|p| p["principal_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"admin") && ids.contains(&"hoa"), "{listing}");
    let hoa_entry = principals
        .iter()
        .find(|p| p["principal_id"] == "hoa")
        .unwrap();
    let credentials = hoa_entry["credentials"].as_array().expect("credentials");
    assert_eq!(credentials.len(), 2, "{listing}");
    let second = credentials
        .iter()
        .find(|c| c["credential_id"].as_u64() == credential.parse().ok())
        .unwrap_or_else(|| panic!("no credential {credential}: {listing}"));
    assert!(second["revoked_sequence"].as_u64().is_some(), "{listing}");
    let text = setup.admin(&["principals"]);
    assert!(
        text.contains("admin") && text.contains("hoa") && text.contains("clerk (branch TB)"),
        "{text}"
    );
    // `token-revoke` is the same command; a second revocation is refused.
    let admin = setup.admin.to_str().unwrap();
    let again = setup.fails_with(&["--token-file", admin], &["token-revoke", &credential]);
    assert!(
        again.contains("FailedPrecondition") && again.contains("already revoked"),
        "{again}"
    );
}

#[test]
fn grant_and_revoke_change_what_whoami_shows() {
    let setup = Setup::start();
    let hoa = setup.create_hoa();
    let granted = setup.admin(&["grant", "hoa", "auditor"]);
    assert_eq!(field(&granted, "granted"), "auditor (institution)");
    setup.admin(&["grant", "hoa", "manager:TB"]);
    let mut now = roles(&setup.whoami(&hoa));
    now.sort();
    assert_eq!(
        now,
        [
            pair("auditor", "institution"),
            pair("clerk", "branch TB"),
            pair("manager", "branch TB"),
        ]
    );
    let revoked = setup.admin(&["revoke", "hoa", "clerk:TB"]);
    assert_eq!(field(&revoked, "revoked"), "clerk (branch TB)");
    setup.admin(&["revoke", "hoa", "auditor"]);
    assert_eq!(roles(&setup.whoami(&hoa)), [pair("manager", "branch TB")]);
}

#[test]
fn only_an_administrator_creates_principals() {
    let setup = Setup::start();
    let hoa = setup.create_hoa();
    let refused = setup.fails_with(
        &["--token-file", hoa.to_str().unwrap()],
        &["principal-create", "lan", "--grant", "clerk:TB"],
    );
    assert!(refused.contains("PermissionDenied"), "{refused}");
    // An unknown role is refused before anything is sent.
    let refused = setup.fails_with(&[], &["principal-create", "lan", "--grant", "teller"]);
    assert!(refused.contains("not a role"), "{refused}");
}

#[test]
fn tokens_are_printed_once_or_saved_for_later_commands() {
    let setup = Setup::start();
    // Printed once, with several roles given comma-separated.
    let created = setup.admin(&[
        "principal-create",
        "head-office",
        "--grant",
        "product-admin,auditor",
        "--issue-token",
    ]);
    assert_eq!(field(&created, "name"), "head-office");
    let token = field(&created, "token");
    assert!(created.contains("will not be shown again"), "{created}");
    let stdout = setup.ok_with(&["--token", &token], &["--json", "whoami"]);
    let me: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(me["principal_id"], "head-office");
    assert_eq!(me["roles"].as_array().unwrap().len(), 2, "{me}");

    // Saved to the default token file, which later commands read.
    let default = setup.path(".config/mfi-ledger/token");
    let saved = setup.admin(&[
        "principal-create",
        "lan",
        "--grant",
        "clerk:TB",
        "--save-token",
    ]);
    assert_eq!(field(&saved, "token file"), default.display().to_string());
    assert_eq!(mode(&default), 0o600);
    assert_eq!(mode(default.parent().unwrap()), 0o700);
    let me: Value = serde_json::from_str(&setup.ok_with(&[], &["--json", "whoami"])).unwrap();
    assert_eq!(me["principal_id"], "lan");

    // Saving again replaces it.
    setup.admin(&[
        "principal-create",
        "minh",
        "--grant",
        "auditor",
        "--save-token",
    ]);
    let me: Value = serde_json::from_str(&setup.ok_with(&[], &["--json", "whoami"])).unwrap();
    assert_eq!(me["principal_id"], "minh");

    // --token-out never overwrites a file.
    let taken = setup.path("taken.token");
    std::fs::write(&taken, "keep me").unwrap();
    let admin = setup.admin.to_str().unwrap();
    let refused = setup.fails_with(
        &["--token-file", admin],
        &["token-issue", "lan", "--token-out", taken.to_str().unwrap()],
    );
    assert!(refused.contains("exists"), "{refused}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
}

/// `access-log` shows an auditor every read, refusals included, in order;
/// a clerk may not read it.
#[test]
fn the_access_log_shows_every_read_to_an_institution_auditor() {
    let setup = Setup::start();
    let auditor = setup.path("auditor.token");
    let clerk = setup.path("clerk.token");
    let auditor_file = auditor.to_str().unwrap();
    let clerk_file = clerk.to_str().unwrap();
    setup.admin(&[
        "principal-create",
        "aud",
        "--grant",
        "auditor",
        "--token-out",
        auditor_file,
    ]);
    setup.admin(&[
        "principal-create",
        "clk",
        "--grant",
        "clerk:TB",
        "--token-out",
        clerk_file,
    ]);
    // A read by the clerk, then a refused one (the journal needs an
    // institution-wide auditor).
    setup.ok_with(&["--token-file", clerk_file], &["info"]);
    setup.fails_with(&["--token-file", clerk_file], &["journal"]);
    setup.fails_with(&["--token-file", clerk_file], &["access-log"]);
    let stdout = setup.ok_with(&["--token-file", auditor_file], &["--json", "access-log"]);
    let log: Value = serde_json::from_str(&stdout).unwrap();
    let records: Vec<(String, String, String)> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap().to_owned(),
                r["method"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let clerks: Vec<&(String, String, String)> =
        records.iter().filter(|(who, _, _)| who == "clk").collect();
    assert_eq!(
        clerks,
        [
            &(
                "clk".into(),
                "AuditService/GetLedgerInfo".into(),
                "Ok".into()
            ),
            &(
                "clk".into(),
                "AuditService/ListJournalEntries".into(),
                "PermissionDenied".into()
            ),
            &(
                "clk".into(),
                "AuditService/ListAccessLog".into(),
                "PermissionDenied".into()
            ),
        ]
    );
    let sequences: Vec<u64> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
}
