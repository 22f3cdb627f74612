//! What `atoll serve` serves and where, and who may act through it.

use atoll_core::{Config, SecretRef};
use atoll_move::MoveOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Settings of one control-plane process.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the API and `/metrics` listen.
    pub listen: SocketAddr,
    /// The cluster's config.
    pub atoll: Config,
    /// How often the catalog's moves are read and discovery runs (shard notices update
    /// the snapshot in between); default 1 s.
    pub period: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// The tokens that authorise actions; none: actions are refused (403), reads work.
    pub write_tokens: Vec<WriteToken>,
    /// The migration directory `migrate` actions plan and apply from; none: they are
    /// refused.
    pub migrations: Option<PathBuf>,
    /// How the moves that actions start behave (the CLI's defaults unless a test changes
    /// them).
    pub move_options: MoveOptions,
}

impl ServeConfig {
    /// Defaults for `listen` and the cluster's `atoll`: read-only (no write token).
    pub fn new(listen: SocketAddr, atoll: Config) -> ServeConfig {
        ServeConfig {
            listen,
            atoll,
            period: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
            write_tokens: Vec::new(),
            migrations: None,
            move_options: MoveOptions::default(),
        }
    }
}

/// A write token by reference, and the name the action log records for whoever uses it
/// (`[NAME=]env:VAR` or `[NAME=]file:PATH`; the name defaults to `operator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteToken {
    /// Who the action log says acted: letters, digits, `.`, `_`, `-`, `@`.
    pub name: String,
    /// Where the token is.
    pub secret: SecretRef,
}

impl FromStr for WriteToken {
    type Err = String;
    fn from_str(s: &str) -> Result<WriteToken, String> {
        let (name, reference) = match s.split_once('=') {
            Some((name, r)) if !name.contains(':') => (name, r),
            _ => ("operator", s),
        };
        let fine = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
        // Neither part is echoed: a token pasted by mistake may hold '='.
        if name.is_empty() || name.len() > 64 || !name.chars().all(fine) {
            return Err(
                "write token: the name before '=' must be 1 to 64 letters, digits, '.', '_', '-' or '@'"
                    .into(),
            );
        }
        let secret = reference.parse().map_err(|e| format!("write token: {e}"))?;
        Ok(WriteToken {
            name: name.to_string(),
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_references_with_an_optional_name() {
        let t: WriteToken = "env:ATOLL_TOKEN".parse().unwrap();
        assert_eq!(t.name, "operator");
        assert_eq!(t.secret.to_string(), "env:ATOLL_TOKEN");
        let t: WriteToken = "alice@ops=file:/run/token".parse().unwrap();
        assert_eq!(
            (t.name.as_str(), t.secret.to_string()),
            ("alice@ops", "file:/run/token".into())
        );
        for bad in [
            "hunter2",
            "alice=hunter2",
            "=env:X",
            "a b=env:X",
            "env:",
            "aHVudGVyMg==",
        ] {
            let e = WriteToken::from_str(bad).unwrap_err();
            assert!(e.starts_with("write token"), "{bad}: {e}");
            assert!(
                !e.contains("hunter2") && !e.contains("aHVudGVyMg"),
                "not echoed: {e}"
            );
        }
    }
}
