//! Process control of single nodes: initdb, pg_basebackup, start, stop, promote.
//!
//! Servers are started with `pg_ctl` and stopped by pid with signals, after checking
//! that the pid really is the postmaster of our data directory (a stale pid may have
//! been reused by another program, which must never be signalled).

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use tracing::{debug, info, warn};

use crate::error::one_line;
use crate::state::{NodeState, HOST};
use crate::SandboxError;

/// Server settings for a sandbox: fast and roomy for logical replication tests, not durable.
pub(crate) const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    // Unix sockets are off: their path length limit breaks deep temp dirs.
    ("unix_socket_directories", "''"),
    ("wal_level", "logical"),
    ("max_wal_senders", "40"),
    ("max_replication_slots", "40"),
    ("max_logical_replication_workers", "16"),
    ("max_worker_processes", "32"),
    ("max_sync_workers_per_subscription", "4"),
    // The logical replication launcher starts a new subscription's workers at most once per
    // this interval (default 5 s), which otherwise adds up to 5 s to back-to-back moves.
    ("wal_retrieve_retry_interval", "500ms"),
    ("hot_standby_feedback", "on"),
    ("shared_buffers", "64MB"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
    ("wal_keep_size", "256MB"),
    // pg_rewind needs it: an old master that wrote past a failover rejoins as a replica.
    ("wal_log_hints", "on"),
    ("log_min_messages", "warning"),
];

const START_TIMEOUT_SECS: &str = "60";
const STOP_GRACE: Duration = Duration::from_secs(30);
const QUIT_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 8;

/// Runs the PostgreSQL binaries, as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    pub bin: PathBuf,
    run_as: Option<User>,
}

impl Runner {
    pub fn new(bin: PathBuf) -> Result<Runner, SandboxError> {
        let run_as = if nix::unistd::geteuid().is_root() {
            match User::from_name("postgres") {
                Ok(Some(user)) => Some(user),
                _ => return Err(SandboxError::NoPostgresUser),
            }
        } else {
            None
        };
        Ok(Runner { bin, run_as })
    }

    fn command(&self, program: &str) -> (Command, String) {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(&user.name).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // Libpq/pg_ctl environment of the caller must not redirect our commands.
        for var in [
            "PGDATA",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        // The postgres user may not be able to enter the caller's working directory.
        cmd.current_dir("/");
        (cmd, exe.display().to_string())
    }

    /// Runs a binary to completion; failure carries the command line and its output.
    fn run(&self, program: &str, args: &[&OsStr]) -> Result<String, SandboxError> {
        let (mut cmd, exe) = self.command(program);
        cmd.args(args);
        let shown = std::iter::once(exe)
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        debug!(command = %shown, "running");
        let out = cmd
            .output()
            .map_err(|e| SandboxError::io(format!("cannot run {shown}:"), &self.bin, e))?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(SandboxError::Command {
                command: shown,
                status: out.status.to_string(),
                output: one_line(&text, 600),
            })
        }
    }

    /// Makes a directory we own for the servers: created, handed to postgres when root,
    /// and checked to be reachable by that user.
    pub fn make_server_dir(&self, dir: &Path) -> Result<(), SandboxError> {
        std::fs::create_dir(dir)
            .map_err(|e| SandboxError::io("cannot create directory", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SandboxError::io("cannot set permissions of", dir, e))?;
        if let Some(user) = &self.run_as {
            nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).map_err(|e| {
                SandboxError::io("cannot chown to postgres", dir, std::io::Error::from(e))
            })?;
        }
        Ok(())
    }

    /// Gives a file we wrote to the server user (when root), as PostgreSQL wants its key.
    pub fn hand_over(&self, path: &Path) -> Result<(), SandboxError> {
        if let Some(user) = &self.run_as {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                SandboxError::io("cannot chown to postgres", path, std::io::Error::from(e))
            })?;
        }
        Ok(())
    }

    /// Fails with a clear error when the server user cannot get into `dir`.
    pub fn check_reachable(&self, dir: &Path) -> Result<(), SandboxError> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let status = Command::new("runuser")
            .arg("-u")
            .arg(&user.name)
            .arg("--")
            .arg("test")
            .arg("-x")
            .arg(dir)
            .current_dir("/")
            .status()
            .map_err(|e| SandboxError::io("cannot run runuser to check access to", dir, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(SandboxError::DirNotReachable {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// initdb + sandbox settings for a master.
    pub fn init_master(&self, node: &NodeState) -> Result<(), SandboxError> {
        let data = node.data_dir.as_os_str();
        self.run(
            "initdb",
            &[
                OsStr::new("-D"),
                data,
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("--auth=trust"),
                OsStr::new("--no-sync"),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
                OsStr::new("--locale=C"),
            ],
        )?;
        let mut conf = String::from("\n# atoll sandbox\n");
        for (key, value) in SERVER_SETTINGS {
            conf.push_str(&format!("{key} = {value}\n"));
        }
        conf.push_str(&format!("port = {}\n", node.port));
        append(&node.data_dir.join("postgresql.conf"), &conf)
    }

    /// pg_basebackup from the island's master, with a physical slot so WAL is kept,
    /// then the replica's own port (the copy carries the master's).
    pub fn init_replica(&self, node: &NodeState, master_port: u16) -> Result<(), SandboxError> {
        let port = master_port.to_string();
        let slot = slot_name(node.island, node.index);
        self.run(
            "pg_basebackup",
            &[
                OsStr::new("-h"),
                OsStr::new(HOST),
                OsStr::new("-p"),
                OsStr::new(&port),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("-D"),
                node.data_dir.as_os_str(),
                OsStr::new("-R"),
                OsStr::new("-X"),
                OsStr::new("stream"),
                OsStr::new("-c"),
                OsStr::new("fast"),
                OsStr::new("-C"),
                OsStr::new("-S"),
                OsStr::new(&slot),
            ],
        )?;
        append(
            &node.data_dir.join("postgresql.auto.conf"),
            &format!("# atoll sandbox\nport = {}\n", node.port),
        )
    }

    /// pg_ctl start -w; returns the postmaster pid. On failure the error carries the log tail.
    pub fn start(&self, node: &NodeState) -> Result<i32, SandboxError> {
        let result = self.run(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                node.data_dir.as_os_str(),
                OsStr::new("-l"),
                node.log_file.as_os_str(),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new(START_TIMEOUT_SECS),
                OsStr::new("start"),
            ],
        );
        let failed = |reason: String| SandboxError::StartFailed {
            island: node.island,
            node: node.index,
            port: node.port,
            reason,
            log: node.log_file.clone(),
            log_tail: log_tail(&node.log_file),
        };
        if let Err(e) = result {
            // pg_ctl may give up waiting while the postmaster lives on: don't leave it behind.
            if let Some(pid) = running_pid(node) {
                let _ = stop(node, pid);
            }
            return Err(failed(e.to_string()));
        }
        match postmaster_pid(&node.data_dir).filter(|&pid| is_our_postmaster(pid, &node.data_dir)) {
            Some(pid) => {
                info!(island = node.island, node = node.index, port = node.port, pid, role = %node.role, "node started");
                Ok(pid)
            }
            None => Err(failed(
                "started, but no live postmaster pid in postmaster.pid".into(),
            )),
        }
    }

    /// pg_ctl promote -w: turns a replica into a master.
    pub fn promote(&self, node: &NodeState) -> Result<(), SandboxError> {
        self.run(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                node.data_dir.as_os_str(),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new(START_TIMEOUT_SECS),
                OsStr::new("promote"),
            ],
        )?;
        info!(
            island = node.island,
            node = node.index,
            port = node.port,
            "node promoted"
        );
        Ok(())
    }
}

pub(crate) fn slot_name(island: u16, index: usize) -> String {
    format!("island{island}_node{index}")
}

pub(crate) fn append(path: &Path, text: &str) -> Result<(), SandboxError> {
    // Appending keeps the file's owner (postgres) even when we are root.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| SandboxError::io("cannot open", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| SandboxError::io("cannot write", path, e))
}

/// Last lines of a server log, as one line.
pub(crate) fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            one_line(&lines[start..].join("\n"), 1000)
        }
        Err(e) => format!("(log unreadable: {e})"),
    }
}

/// First line of DATA/postmaster.pid.
fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok().filter(|&p| p > 0)
}

/// True only if `pid` is a live postgres whose data directory is `data_dir`; a pid
/// reused by any other process (or another server) is not ours.
pub(crate) fn is_our_postmaster(pid: i32, data_dir: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    // Zombies have an empty cmdline: gone for our purposes.
    let args: Vec<OsString> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsString::from(String::from_utf8_lossy(a).into_owned()))
        .collect();
    if !args
        .iter()
        .any(|a| a.to_string_lossy().contains("postgres"))
    {
        return false;
    }
    // The postmaster chdirs into its data directory; pg_ctl also passes it as -D.
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == canonical) {
        return true;
    }
    args.iter()
        .any(|a| Path::new(a) == canonical || Path::new(a) == data_dir)
}

/// Pid of the running postmaster of this node, if any: the recorded pid, else the
/// one in postmaster.pid (the server may have been restarted by hand); both verified.
pub(crate) fn running_pid(node: &NodeState) -> Option<i32> {
    node.pid
        .into_iter()
        .chain(postmaster_pid(&node.data_dir))
        .find(|&pid| is_our_postmaster(pid, &node.data_dir))
}

/// Fast shutdown by pid (SIGINT), waiting up to 30 s, then SIGQUIT (immediate).
pub(crate) fn stop(node: &NodeState, pid: i32) -> Result<(), SandboxError> {
    let stop_failed = |reason: String| SandboxError::StopFailed {
        island: node.island,
        node: node.index,
        pid,
        reason,
    };
    for (signal, grace) in [(Signal::SIGINT, STOP_GRACE), (Signal::SIGQUIT, QUIT_GRACE)] {
        // Re-checked right before each signal: never signal a pid that is not ours.
        if !is_our_postmaster(pid, &node.data_dir) {
            break;
        }
        if signal == Signal::SIGQUIT {
            warn!(
                island = node.island,
                node = node.index,
                pid,
                "fast shutdown timed out, sending SIGQUIT"
            );
        }
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => break,
            Err(e) => return Err(stop_failed(format!("{signal} failed: {e}"))),
        }
        let deadline = Instant::now() + grace;
        while is_our_postmaster(pid, &node.data_dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if is_our_postmaster(pid, &node.data_dir) {
        return Err(stop_failed("still running after SIGINT and SIGQUIT".into()));
    }
    info!(
        island = node.island,
        node = node.index,
        port = node.port,
        pid,
        "node stopped"
    );
    Ok(())
}
