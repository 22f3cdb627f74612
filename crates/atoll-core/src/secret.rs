//! Passwords by reference (`env:VAR`, `file:PATH`), never as plain text in config or output.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Where a password comes from. Plain-text passwords are refused at parse time.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// Read from this environment variable (`env:VAR`).
    Env(String),
    /// Read from the file at this path (`file:PATH`); trailing newlines are dropped.
    File(String),
}

/// A resolved secret. `Debug` and `Display` print a mask, so a secret cannot leak through
/// a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a password reference could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text is not `env:VAR` or `file:PATH` (a plain-text password, or an empty name).
    #[error("a password must be a reference `env:VAR` or `file:PATH`, not plain text")]
    NotAReference,
    /// The name cannot be meant: a variable name holding `=`, or a name or path holding a
    /// control character (NUL, a newline); holds the reference, shown escaped.
    #[error("password reference {0:?}: a variable name cannot hold =, and no name or path a control character such as NUL or a newline")]
    BadName(String),
    /// The referenced environment variable is not set (or not Unicode); holds the reference.
    #[error("password reference {0}: the environment variable is not set")]
    EnvMissing(String),
    /// The referenced file could not be read: the reference, then the I/O error.
    #[error("password reference {0}: cannot read the file: {1}")]
    FileUnreadable(String, String),
}

impl SecretRef {
    /// Reads the secret now. Trailing newlines of a file are dropped (editors add one).
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(var) => std::env::var(var)
                .map(Secret)
                .map_err(|_| SecretError::EnvMissing(self.to_string())),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| SecretError::FileUnreadable(self.to_string(), e.to_string())),
        }
    }
}

impl FromStr for SecretRef {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The operating system takes no such name; refused here rather than when resolved.
        let bad = || SecretError::BadName(s.to_string());
        match s.split_once(':') {
            Some(("env", var)) if var.contains('=') || var.contains(char::is_control) => Err(bad()),
            Some(("file", path)) if path.contains(char::is_control) => Err(bad()),
            Some(("env", var)) if !var.is_empty() => Ok(SecretRef::Env(var.to_string())),
            Some(("file", path)) if !path.is_empty() => Ok(SecretRef::File(path.to_string())),
            _ => Err(SecretError::NotAReference),
        }
    }
}

/// Shows the reference, which is not secret (it names where the secret is).
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{p}"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Secret {
    /// The secret itself; call only where it is handed to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared in time that does not depend on where
    /// they differ (a bearer token checked this way leaks nothing through timing but its
    /// length).
    pub fn matches(&self, given: &[u8]) -> bool {
        let own = self.0.as_bytes();
        own.len() == given.len()
            && own.iter().zip(given).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_only() {
        assert_eq!(
            "env:PGPASS".parse::<SecretRef>().unwrap(),
            SecretRef::Env("PGPASS".into())
        );
        assert_eq!(
            "file:/run/pw".parse::<SecretRef>().unwrap(),
            SecretRef::File("/run/pw".into())
        );
        for bad in ["hunter2", "env:", "file:", "vault:x"] {
            assert_eq!(bad.parse::<SecretRef>(), Err(SecretError::NotAReference));
        }
    }

    #[test]
    fn secrets_are_masked() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "***** *****");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn missing_env_names_the_reference_not_a_value() {
        let r: SecretRef = "env:ATOLL_TEST_SURELY_UNSET_VAR".parse().unwrap();
        let e = r.resolve().unwrap_err().to_string();
        assert!(e.contains("env:ATOLL_TEST_SURELY_UNSET_VAR"), "{e}");
    }
}
