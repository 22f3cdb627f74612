//! Errors of the sandbox: one line each, naming what failed and where.

use std::path::PathBuf;

/// Everything that can go wrong while creating, starting, stopping or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no PostgreSQL binaries found (looked in: {looked})")]
    NoBinaries { looked: String },

    #[error("running as root needs a 'postgres' system user to own the servers")]
    NoPostgresUser,

    #[error("the 'postgres' user cannot reach directory {dir} (a parent directory is not searchable by it); use a directory under /tmp or open up the permissions")]
    DirNotReachable { dir: PathBuf },

    #[error("port {port} (island {island} node {node}) is already in use")]
    PortInUse { port: u16, island: u16, node: usize },

    #[error("no free port range found: {0}")]
    NoFreePorts(String),

    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    #[error("no sandbox in {dir} (missing sandbox.json)")]
    NotASandbox { dir: PathBuf },

    #[error("{dir} is not empty and holds no sandbox; refusing to create one there")]
    DirNotEmpty { dir: PathBuf },

    #[error("spec disagrees with the existing sandbox in {dir}: {what}")]
    SpecMismatch { dir: PathBuf, what: String },

    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("command failed: {command} ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("island {island} node {node} (port {port}) failed to start: {reason}; log {log}: {log_tail}")]
    StartFailed {
        island: u16,
        node: usize,
        port: u16,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("island {island} node {node} (pid {pid}) did not stop: {reason}")]
    StopFailed {
        island: u16,
        node: usize,
        pid: i32,
        reason: String,
    },

    #[error("no node {node} in island {island} of the sandbox in {dir}")]
    NoSuchNode {
        dir: PathBuf,
        island: u16,
        node: usize,
    },

    #[error("sandbox state {path}: {reason}")]
    State { path: PathBuf, reason: String },
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
