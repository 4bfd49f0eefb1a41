//! Opening an HTML file in headless Chromium through
//! `scripts/chromium-screenshot` (which installs Debian's `chromium` if it is
//! missing): a screenshot, the DOM as the browser laid it out, and its log.
//! Where Chromium cannot be had, the caller is told so and says it loudly;
//! under `CI=true` that is a failure, not a skip: CI must run the browser
//! checks (`.ci/run` installs Chromium first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

/// One Chromium at a time: the machine has two cores, and the first call
/// may be installing it.
static BROWSER: Mutex<()> = Mutex::new(());

/// Exit status of the script when Chromium is unavailable.
pub const CHROMIUM_UNAVAILABLE: i32 = 3;
/// Exit status of the script when the page raised an uncaught exception.
pub const PAGE_ERRORS: i32 = 4;

/// What `scripts/chromium-screenshot` made of an HTML file.
#[derive(Debug)]
pub struct Rendered {
    pub output: Output,
    pub png: PathBuf,
    pub dom: PathBuf,
}

impl Rendered {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "chromium-screenshot exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            self.stderr(),
        )
    }
}

/// True when running in CI (`CI` set to anything but empty, `0` or `false`),
/// where a browser check that cannot run fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
    })
}

/// Writes `html` into `dir` and opens it in headless Chromium; `None` (after
/// a loud banner) when Chromium is unavailable here. Panics instead when
/// Chromium is unavailable in CI ([`in_ci`]).
pub fn open_in_chromium(test: &str, html: &str, dir: &Path) -> Option<Rendered> {
    open_in(test, html, dir, None, in_ci())
}

/// [`open_in_chromium`] with the browser named (`CHROMIUM` for the script;
/// `None` to find or install it) and whether this is CI, for testing the
/// check itself.
pub fn open_in(
    test: &str,
    html: &str,
    dir: &Path,
    browser: Option<&Path>,
    ci: bool,
) -> Option<Rendered> {
    let _one_at_a_time = BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    let page = dir.join("report.html");
    std::fs::write(&page, html).unwrap();
    let rendered = Rendered {
        png: dir.join("report.png"),
        dom: dir.join("report.dom.html"),
        output: Command::new("bash")
            .envs(browser.map(|path| ("CHROMIUM", path)))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chromium-screenshot"))
            .arg(&page)
            .arg(dir.join("report.png"))
            .arg(dir.join("report.dom.html"))
            .output()
            .expect("running scripts/chromium-screenshot"),
    };
    if rendered.output.status.code() == Some(CHROMIUM_UNAVAILABLE) {
        assert!(
            !ci,
            "{test}: Chromium is unavailable under CI=true, so the report was not opened in a \
             browser; this check may not be skipped in CI (install Debian's chromium package)\n{}",
            rendered.stderr()
        );
        eprintln!(
            "\n{banner}\nSKIPPED: {test}: Chromium is unavailable, the report was not opened \
             in a browser.\n{}{banner}\n",
            rendered.stderr(),
            banner = "!".repeat(78),
        );
        return None;
    }
    Some(rendered)
}
