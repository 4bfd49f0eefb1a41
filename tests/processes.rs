//! The tests that run the built `mfi-ledger` binary as processes: the
//! server, the CLI, the load generator, the simulator, the report in a
//! browser. One test binary, so that they are linked once and run side
//! by side (the simulated branch's years beside the rest) rather than one
//! binary after another. Each module is one file of `tests/`; the
//! in-process tests are the `ledger` binary (`tests/ledger/`).

#[path = "common/mod.rs"]
mod common;

#[path = "access_cli.rs"]
mod access_cli;

#[path = "approvals_cli.rs"]
mod approvals_cli;

#[path = "audit_cli.rs"]
mod audit_cli;

#[path = "checkpoint_interop.rs"]
mod checkpoint_interop;

#[path = "cli.rs"]
mod cli;

#[path = "fuzz.rs"]
mod fuzz;

#[path = "load.rs"]
mod load;

#[path = "mtls_principals.rs"]
mod mtls_principals;

#[path = "readme.rs"]
mod readme;

#[path = "report_html.rs"]
mod report_html;

#[path = "simulate.rs"]
mod simulate;

#[path = "tamper.rs"]
mod tamper;

#[path = "tls.rs"]
mod tls;

/// `autotests = false` in Cargo.toml: a file of `tests/` is a test only
/// when named above, so a new one left out would never run.
#[test]
fn every_file_of_tests_is_a_module_of_this_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::fs::read_to_string(tests.join("processes.rs")).unwrap();
    for file in std::fs::read_dir(&tests).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".rs")
            && module != "processes"
        {
            assert!(
                this.contains(&format!("#[path = \"{name}\"]\nmod {module};")),
                "tests/{name} is not a module of tests/processes.rs: its tests would not run"
            );
        }
    }
}
