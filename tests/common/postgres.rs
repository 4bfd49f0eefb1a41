//! Throw-away PostgreSQL clusters for the PostgreSQL store's tests, from
//! Debian's packages: `initdb` into a temporary directory, the server
//! listening on a Unix socket in it only (no TCP port), run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root).
//! Durability is the server's default (fsync and synchronous commit on):
//! the tests rely on what a commit promises.
//!
//! Without PostgreSQL's programs a test is skipped, loudly; under `CI=true`
//! it fails instead (`.ci/run` installs them).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::chromium::in_ci;

/// A running cluster; stopped (SIGKILL, as a crash) and removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    server: Option<Child>,
    owner: Option<(u32, u32)>,
}

/// The directory of PostgreSQL's programs: `PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/*/bin` that has `postgres`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` user, when the tests run as root.
fn owner() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail; getpwnam is given a NUL-terminated name
    // and its result is read at once, before any other call could reuse it.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let user = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !user.is_null(),
            "the tests run as root and there is no `postgres` user to run PostgreSQL as \
             (PostgreSQL refuses root): install Debian's postgresql package"
        );
        Some(((*user).pw_uid, (*user).pw_gid))
    }
}

impl Cluster {
    /// Starts a new, empty cluster; `None` (after a loud banner) when
    /// PostgreSQL is not installed here, a failure under `CI=true`.
    pub fn start(test: &str) -> Option<Cluster> {
        let Some(bin) = bin_dir() else {
            assert!(
                !in_ci(),
                "{test}: PostgreSQL is not installed, so the PostgreSQL store was not tested; \
                 this test may not be skipped in CI (install Debian's postgresql package)"
            );
            eprintln!(
                "\n{banner}\nSKIPPED: {test}: PostgreSQL is not installed (no \
                 /usr/lib/postgresql/*/bin/postgres, and PG_BIN_DIR is not set).\n{banner}\n",
                banner = "!".repeat(78),
            );
            return None;
        };
        // Short: a Unix socket's path is limited to about 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir_in("/tmp")
            .unwrap();
        let owner = owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut cluster = Cluster {
            dir,
            bin,
            server: None,
            owner,
        };
        let data = cluster.data_dir();
        let initdb = cluster
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        cluster.start_server();
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A PostgreSQL program, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the server (again) on the cluster's data directory and waits
    /// until it takes connections.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is running already");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=300", "-c", "shared_buffers=16MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        // Its own process group, so that a crash kills its backends too.
        command.process_group(0);
        // SAFETY: prctl only sets this process's parent-death signal; it
        // runs after the fork (and after the uid change, which would clear
        // it), before exec. A test that dies without dropping the cluster
        // takes its server with it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.server = Some(command.spawn().expect("starting postgres"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .command("pg_isready")
                .arg("-h")
                .arg(self.dir.path())
                .args(["-U", "postgres", "-q"])
                .status()
                .expect("running pg_isready");
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server at once, the postmaster and its backends (SIGKILL):
    /// a crash. Each backend makes itself a process group's leader
    /// (PostgreSQL's `InitPostmasterChild` calls `setsid`), so the
    /// postmaster's group does not hold them: a backend left alive serves
    /// the connection it has until it notices its postmaster is gone, and
    /// on a loaded machine a write sent after the "crash" was committed
    /// and answered. The postmaster is stopped first, so that it starts no
    /// backend while its children are listed; then each child and its
    /// group are killed, then the postmaster's group, and the kill waits
    /// for them all.
    pub fn kill_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            let postmaster = libc::pid_t::try_from(server.id()).expect("a pid");
            // SAFETY: signals to the server's own processes: the postmaster
            // (not reaped yet, so its pid is not reused), its group, and the
            // children listed while it was stopped (each a group leader).
            unsafe { libc::kill(postmaster, libc::SIGSTOP) };
            let children = children_of(postmaster);
            // The children first: while their stopped parent lives, one
            // that is gone stays a zombie, so its pid is not reused.
            for child in &children {
                unsafe {
                    libc::kill(-*child, libc::SIGKILL);
                    libc::kill(*child, libc::SIGKILL);
                }
            }
            unsafe { libc::kill(-postmaster, libc::SIGKILL) };
            let _ = server.wait();
            // Until its backends are gone, a new server refuses the data
            // directory (their shared memory is still attached).
            let deadline = Instant::now() + Duration::from_secs(10);
            while (running_in_group(postmaster) || children.iter().any(|child| alive(*child)))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Creates a database and gives its connection string.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        Cluster::url_of(&[self], name)
    }

    /// The connection string of database `name` on the first of `clusters`
    /// that takes writes (a primary, or a standby once promoted).
    pub fn url_of(clusters: &[&Cluster], name: &str) -> String {
        // The socket directories, percent-encoded, as the hosts.
        let hosts: Vec<String> = clusters
            .iter()
            .map(|cluster| {
                let dir = cluster.dir.path().display().to_string();
                format!("{}:5432", dir.replace('/', "%2F"))
            })
            .collect();
        let mut url = format!("postgresql://postgres@{}/{name}", hosts.join(","));
        if clusters.len() > 1 {
            url.push_str("?target_session_attrs=read-write");
        }
        url
    }

    /// A new cluster streaming this one's WAL, as its synchronous standby
    /// (a commit on this one returns once the standby has it on disk);
    /// serves reads until [`Cluster::promote`]d.
    pub fn start_replica(&self) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir_in("/tmp")
            .unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut replica = Cluster {
            dir,
            bin: self.bin.clone(),
            server: None,
            owner: self.owner,
        };
        let backup = replica
            .command("pg_basebackup")
            .arg("-d")
            .arg(format!(
                "host={} user=postgres application_name=replica",
                self.dir.path().display()
            ))
            .arg("-D")
            .arg(replica.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "-N"])
            .output()
            .expect("running pg_basebackup");
        assert!(
            backup.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        replica.start_server();
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = 'replica'",
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        ) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the replica did not become synchronous within 30 s: {}",
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    }

    /// Promotes a replica to primary, and waits until it takes writes.
    pub fn promote(&self) {
        assert_eq!(self.psql("postgres", "SELECT pg_promote(true, 30)"), "t");
    }

    /// How many rows of the ledger's journal in `database` do not chain to
    /// the row before (their previous-hash column is not its hash).
    pub fn chain_breaks(&self, database: &str) -> u64 {
        self.psql(
            database,
            "SELECT count(*) FROM mfi_ledger_journal j JOIN mfi_ledger_journal p \
             ON p.seq = j.seq - 1 WHERE j.prev_hash <> p.hash",
        )
        .parse()
        .unwrap()
    }

    /// Runs `sql` in `database` with psql; its output, unaligned.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-AtX",
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

impl Cluster {
    /// At the test binary's exit: kills the server and removes its
    /// directory (a cluster kept in a static is never dropped).
    pub fn remove_at_exit(&self) {
        if let Some(server) = &self.server
            && let Ok(group) = libc::pid_t::try_from(server.id())
        {
            // SAFETY: a signal to the process group the server leads.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while running_in_group(group) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// The `/proc/PID/stat` fields after the command's closing parenthesis:
/// state, parent, group, ...
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// The processes whose parent is `parent`.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter_map(|process| {
            let pid: libc::pid_t = process.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(process.path().join("stat")).ok()?;
            let fields = stat_fields(&stat);
            (fields.len() > 1 && fields[1] == parent.to_string()).then_some(pid)
        })
        .collect()
}

/// Whether process `pid` is running (not gone, not a zombie).
fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat_fields(&stat)
            .first()
            .is_some_and(|state| *state != "Z")
    })
}

/// Whether a process of process group `group` is still running (not a
/// zombie waiting to be reaped: its memory is released already).
fn running_in_group(group: libc::pid_t) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    processes.flatten().any(|process| {
        let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": the fields after the last ')'.
        let fields = stat_fields(&stat);
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_server();
    }
}
