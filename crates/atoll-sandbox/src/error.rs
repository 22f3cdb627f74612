//! Errors of the sandbox: one line each, naming what failed and where.

use std::path::PathBuf;

/// Everything that can go wrong while creating, starting, stopping or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No directory with `initdb` and `pg_ctl` was found.
    #[error("no PostgreSQL binaries found (looked in: {looked})")]
    NoBinaries {
        /// Where it looked, `$ATOLL_PG_BIN` first.
        looked: String,
    },

    /// Running as root, but there is no `postgres` system user to run the servers as.
    #[error("running as root needs a 'postgres' system user to own the servers")]
    NoPostgresUser,

    /// Running as root, the `postgres` user cannot reach the sandbox directory.
    #[error("the 'postgres' user cannot reach directory {dir} (a parent directory is not searchable by it); use a directory under /tmp or open up the permissions")]
    DirNotReachable {
        /// The directory it cannot reach.
        dir: PathBuf,
    },

    /// A port of the sandbox's layout is taken by another process.
    #[error("port {port} (island {island} node {node}) is already in use")]
    PortInUse {
        /// The taken port.
        port: u16,
        /// The island whose node wanted it.
        island: u16,
        /// The node's index within that island (0 = master at creation).
        node: usize,
    },

    /// No range of free ports was found for a test sandbox; the text says why.
    #[error("no free port range found: {0}")]
    NoFreePorts(String),

    /// The TLS certificates of a `--tls` sandbox could not be made.
    #[error("TLS certificates: {0}")]
    Tls(String),

    /// The sandbox spec is invalid (counts, ports out of range); the text says which part.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    /// The directory holds no `sandbox.json`.
    #[error("no sandbox in {dir} (missing sandbox.json)")]
    NotASandbox {
        /// The directory looked at.
        dir: PathBuf,
    },

    /// The directory is not empty and holds no sandbox; creating one there is refused.
    #[error("{dir} is not empty and holds no sandbox; refusing to create one there")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },

    /// The spec differs from the sandbox already in the directory.
    #[error("spec disagrees with the existing sandbox in {dir}: {what}")]
    SpecMismatch {
        /// The sandbox directory.
        dir: PathBuf,
        /// Which setting differs.
        what: String,
    },

    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`cannot read`, `cannot remove`, ...).
        what: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A PostgreSQL tool (`initdb`, `pg_ctl`, `pg_basebackup`, `psql`) exited with failure.
    #[error("command failed: {command} ({status}): {output}")]
    Command {
        /// The command, as shown to people.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output on one line, trimmed to the end.
        output: String,
    },

    /// A node's server did not start.
    #[error("island {island} node {node} (port {port}) failed to start: {reason}; log {log}: {log_tail}")]
    StartFailed {
        /// The node's island id.
        island: u16,
        /// The node's index within its island.
        node: usize,
        /// The node's TCP port.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The node's server log file.
        log: PathBuf,
        /// The last lines of that log, on one line.
        log_tail: String,
    },

    /// A node's server did not stop.
    #[error("island {island} node {node} (pid {pid}) did not stop: {reason}")]
    StopFailed {
        /// The node's island id.
        island: u16,
        /// The node's index within its island.
        node: usize,
        /// The postmaster's pid.
        pid: i32,
        /// What went wrong.
        reason: String,
    },

    /// No such node in the sandbox.
    #[error("no node {node} in island {island} of the sandbox in {dir}")]
    NoSuchNode {
        /// The sandbox directory.
        dir: PathBuf,
        /// The island id asked for.
        island: u16,
        /// The node index asked for.
        node: usize,
    },

    /// `sandbox.json` cannot be parsed, written, or has an unsupported format.
    #[error("sandbox state {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl SandboxError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        SandboxError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// True when the error is (probably) a port taken by someone else, so that a
    /// retry on another port range may succeed.
    pub fn is_port_conflict(&self) -> bool {
        match self {
            SandboxError::PortInUse { .. } => true,
            SandboxError::StartFailed {
                log_tail, reason, ..
            } => {
                let text = format!("{reason} {log_tail}");
                text.contains("already in use")
                    || text.contains("could not bind")
                    || text.contains("could not create any TCP/IP sockets")
            }
            _ => false,
        }
    }
}

/// Squeezes multi-line command output into one line, keeping the end (where the error is).
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let count = joined.chars().count();
    if count <= max_chars {
        joined
    } else {
        let tail: String = joined.chars().skip(count - max_chars).collect();
        format!("...{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_and_keeps_tail() {
        assert_eq!(one_line("a\n\n b \nc", 100), "a | b | c");
        assert_eq!(one_line("abcdef", 3), "...def");
    }

    #[test]
    fn port_conflict_detection() {
        let e = SandboxError::StartFailed {
            island: 0,
            node: 1,
            port: 1,
            reason: "pg_ctl failed".into(),
            log: PathBuf::from("/x"),
            log_tail: "LOG: could not bind IPv4 address \"127.0.0.1\": Address already in use"
                .into(),
        };
        assert!(e.is_port_conflict());
        assert!(!SandboxError::NoPostgresUser.is_port_conflict());
    }
}
