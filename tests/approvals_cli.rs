//! Maker-checker from the command line, end to end: the real server on a
//! fresh data directory, and the same binary's client commands run by
//! `tester` (the maker: manager, product admin and auditor of the
//! institution) and by `checker`, a second manager created with the first
//! administrator's token through `principal-create`. Every client runs with
//! HOME in a temporary directory, so the default token file is never the
//! real one.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common;

use common::{BIN, Server, expect_failure, expect_success, field, find_field, row};

/// A server, a temporary HOME for its clients, and the checker's token file.
struct Setup {
    server: Server,
    home: tempfile::TempDir,
    checker: PathBuf,
}

/// Who runs a command.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// The maker.
    Tester,
    /// Another manager.
    Checker,
}

impl Setup {
    /// Starts a server and creates `checker`, a manager of the institution.
    fn start() -> Setup {
        let server = Server::start();
        let home = tempfile::tempdir().expect("temp dir");
        let checker = home.path().join("checker.token");
        let setup = Setup {
            server,
            home,
            checker: checker.clone(),
        };
        let admin = setup.server.data_dir().join("admin.token");
        let out = setup.run_with(
            &admin,
            &[
                "principal-create",
                "checker",
                "--grant",
                "manager",
                "--token-out",
                checker.to_str().expect("utf-8 path"),
            ],
        );
        assert!(
            out.status.success(),
            "principal-create checker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        setup
    }

    fn run_with(&self, token_file: &std::path::Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--server")
            .arg(&self.server.url)
            .arg("--token-file")
            .arg(token_file)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MFI_LEDGER_TOKEN")
            .env_remove("MFI_LEDGER_TOKEN_FILE")
            .env("MFI_LEDGER_ACTOR", "hoa.clerk")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .expect("run the client")
    }

    fn run(&self, who: Who, args: &[&str]) -> Output {
        match who {
            Who::Tester => self.run_with(&self.server.token_file, args),
            Who::Checker => self.run_with(&self.checker, args),
        }
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, who: Who, args: &[&str]) -> String {
        expect_success(self.run(who, args), &format!("{who:?} {args:?}"))
    }

    /// Like [`Setup::ok`], with `--json`.
    fn json(&self, who: Who, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let stdout = self.ok(who, &with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    /// A command that must fail; its stderr.
    fn fails(&self, who: Who, args: &[&str]) -> String {
        expect_failure(self.run(who, args), &format!("{who:?} {args:?}"))
    }

    /// Branch TB, center C1, group G1, members `members`, by tester.
    fn set_up_branch(&self, members: &[&str]) {
        let opened = "--opened-on=2024-01-01";
        self.ok(
            Who::Tester,
            &["branch-create", "TB", "--name", "TB", opened],
        );
        self.ok(
            Who::Tester,
            &[
                "center-create",
                "C1",
                "--branch",
                "TB",
                "--name",
                "C1",
                opened,
            ],
        );
        self.ok(
            Who::Tester,
            &[
                "group-create",
                "G1",
                "--center",
                "C1",
                "--name",
                "G1",
                opened,
            ],
        );
        for member in members {
            self.ok(
                Who::Tester,
                &[
                    "register",
                    member,
                    "--name",
                    member,
                    "--group",
                    "G1",
                    "--joined-on=2024-01-02",
                ],
            );
        }
    }

    /// The balance of `account`, as printed.
    fn balance(&self, account: &str) -> String {
        field(&self.ok(Who::Tester, &["balance", account]), "balance")
    }
}

/// `args` as string slices.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_reversal_takes_effect_only_when_another_manager_approves_it() {
    let setup = Setup::start();
    setup.set_up_branch(&["TB-0001"]);
    setup.ok(
        Who::Tester,
        &[
            "open-savings",
            "TB-0001",
            "--kind",
            "voluntary",
            "--opened-on=2024-01-02",
        ],
    );
    let deposit = setup.json(
        Who::Tester,
        &["deposit", "TB-0001/V1", "50000", "--date", "2024-01-03"],
    );
    let deposited = deposit["receipt"]["sequence"].as_u64().expect("a sequence");

    // The maker's reversal waits.
    let deposited_text = deposited.to_string();
    let out = setup.ok(
        Who::Tester,
        &["reverse", &deposited_text, "--reason", "entered twice"],
    );
    let request = field(&out, "sequence");
    assert_eq!(field(&out, "request"), request);
    assert_eq!(field(&out, "status"), "waiting for a manager's approval");
    assert_eq!(field(&out, "reverses"), format!("entry {deposited}"));
    assert!(!field(&out, "expires at").is_empty(), "{out}");
    assert!(out.contains(&format!("approve {request}")), "{out}");
    assert_eq!(setup.balance("savings:TB-0001/V1"), "50,000 VND");

    // It is listed as pending.
    let listed = setup.ok(Who::Tester, &["pending", "--branch", "TB"]);
    let cells = row(&listed, &request);
    assert_eq!(cells[1..5], ["TB", "reverse_entry", "tester", "hoa.clerk"]);
    assert_eq!(cells[7..], ["pending", "-", "-"]);
    let listed = setup.json(Who::Checker, &["pending"]);
    assert_eq!(listed["requests"][0]["request"].to_string(), request);
    assert_eq!(listed["requests"][0]["status"], "pending");

    // The maker may not approve her own request.
    let stderr = setup.fails(Who::Tester, &["approve", &request]);
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert_eq!(setup.balance("savings:TB-0001/V1"), "50,000 VND");

    // Another manager may, once.
    let out = setup.ok(Who::Checker, &["approve", &request]);
    assert_eq!(field(&out, "approved request"), request);
    assert_eq!(field(&out, "command"), "reverse_entry");
    assert!(!field(&out, "description").is_empty(), "{out}");
    assert_ne!(field(&out, "sequence"), request);
    assert_eq!(setup.balance("savings:TB-0001/V1"), "0 VND");
    let stderr = setup.fails(Who::Checker, &["approve", &request]);
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");
    assert!(stderr.contains("already approved"), "{stderr}");

    // A rejected request never takes effect.
    let deposit = setup.json(
        Who::Tester,
        &["deposit", "TB-0001/V1", "20000", "--date", "2024-01-04"],
    );
    let deposited = deposit["receipt"]["sequence"].as_u64().expect("a sequence");
    let reversal = setup.json(
        Who::Tester,
        &[
            "reverse",
            &deposited.to_string(),
            "--reason",
            "wrong member",
        ],
    );
    assert_eq!(reversal["status"], "pending_approval");
    let second = reversal["pending"]["request"].as_u64().expect("a request");
    assert_eq!(reversal["receipt"]["sequence"].as_u64(), Some(second));
    assert!(reversal["pending"]["expires_at"].is_string(), "{reversal}");
    let second = second.to_string();
    let out = setup.ok(
        Who::Checker,
        &["reject", &second, "--reason", "the deposit was right"],
    );
    assert_eq!(field(&out, "rejected request"), second);
    let stderr = setup.fails(Who::Checker, &["approve", &second]);
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");
    assert!(stderr.contains("rejected"), "{stderr}");
    assert_eq!(setup.balance("savings:TB-0001/V1"), "20,000 VND");

    // Nothing is pending now; --all shows how each request ended.
    let none = setup.ok(Who::Tester, &["pending"]);
    assert_eq!(none.trim(), "no pending requests");
    let all = setup.json(Who::Tester, &["pending", "--all"]);
    let statuses: Vec<(String, &Value, &Value)> = all["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| (r["request"].to_string(), &r["status"], &r["decided_by"]))
        .collect();
    assert_eq!(
        statuses,
        [
            (request, &Value::from("approved"), &Value::from("checker")),
            (second, &Value::from("rejected"), &Value::from("checker")),
        ]
    );
}

#[test]
fn a_disbursement_above_its_products_approval_limit_waits_for_approval() {
    let setup = Setup::start();
    setup.set_up_branch(&["TB-0001", "TB-0002"]);
    setup.ok(
        Who::Tester,
        &[
            "product-create",
            "SMALL",
            "--effective-from",
            "2024-01-01",
            "--name",
            "Small loan",
            "--principal-min",
            "100000",
            "--principal-max",
            "50000000",
            "--rate",
            "12",
            "--method",
            "flat",
            "--frequency",
            "monthly",
            "--installments",
            "2",
        ],
    );

    for member in ["TB-0001", "TB-0002"] {
        setup.ok(
            Who::Tester,
            &[
                "open-savings",
                member,
                "--kind",
                "compulsory",
                "--opened-on=2024-01-02",
            ],
        );
        let account = format!("{member}/C1");
        setup.ok(
            Who::Tester,
            &["deposit", &account, "2000000", "--date", "2024-01-03"],
        );
    }

    // Only a product admin sets a limit; an amount or --none is needed.
    let stderr = setup.fails(Who::Checker, &["approval-limit", "SMALL", "5000000"]);
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    setup.fails(Who::Tester, &["approval-limit", "SMALL"]);
    setup.fails(
        Who::Tester,
        &["approval-limit", "SMALL", "5000000", "--none"],
    );
    let out = setup.ok(Who::Tester, &["approval-limit", "SMALL", "5000000"]);
    assert_eq!(field(&out, "product"), "SMALL");
    assert!(field(&out, "approval limit").contains("5,000,000"), "{out}");

    let disburse = |member: &str, principal: &str| {
        vec![
            "disburse".to_owned(),
            member.to_owned(),
            "--product".to_owned(),
            "SMALL".to_owned(),
            "--principal".to_owned(),
            principal.to_owned(),
            "--date".to_owned(),
            "2024-01-05".to_owned(),
            "--first-repayment".to_owned(),
            "2024-02-05".to_owned(),
        ]
    };

    // At or below the limit: at once.
    let small = disburse("TB-0002", "2000000");
    let out = setup.ok(Who::Tester, &strs(&small));
    assert_eq!(field(&out, "loan id"), "TB-0002/L1");
    assert_eq!(field(&out, "paid out"), "2,000,000 VND");

    // Above it: a request, with none of the usual figures.
    let large = disburse("TB-0001", "10000000");
    let out = setup.ok(Who::Tester, &strs(&large));
    let request = field(&out, "request");
    assert_eq!(field(&out, "sequence"), request);
    assert_eq!(field(&out, "member id"), "TB-0001");
    assert_eq!(field(&out, "status"), "waiting for a manager's approval");
    for absent in ["loan id", "paid out", "fees at disbursement", "product"] {
        assert_eq!(find_field(&out, absent), None, "{absent} in:\n{out}");
    }
    assert!(!out.contains("schedule"), "{out}");
    let listed = setup.ok(Who::Checker, &["pending", "--branch", "TB"]);
    assert_eq!(row(&listed, &request)[2], "disburse_loan");
    let stderr = setup.fails(Who::Tester, &["balance", "loan:TB-0001/L1"]);
    assert!(stderr.contains("NotFound"), "{stderr}");

    // The checker's approval disburses it, and prints the disbursement.
    let out = setup.ok(Who::Checker, &["approve", &request]);
    assert_eq!(field(&out, "command"), "disburse_loan");
    assert_eq!(field(&out, "loan id"), "TB-0001/L1");
    assert_eq!(field(&out, "product"), "SMALL version 1");
    assert_eq!(field(&out, "paid out"), "10,000,000 VND");
    assert_eq!(row(&out, "1")[1], "2024-02-05");
    assert_eq!(setup.balance("loan:TB-0001/L1"), "10,000,000 VND");

    // Without a limit, a large disbursement goes through at once.
    let out = setup.ok(Who::Tester, &["approval-limit", "SMALL", "--none"]);
    assert!(field(&out, "approval limit").starts_with("none"), "{out}");
    let json = setup.json(Who::Tester, &strs(&disburse("TB-0002", "20000000")));
    assert_eq!(json["loan_id"], "TB-0002/L2");
    assert_eq!(json.get("pending"), None);
}
