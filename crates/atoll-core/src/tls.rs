//! How to protect a node's connection with TLS: libpq's `sslmode` and `sslrootcert`, as
//! configured in `atoll.toml` (`[defaults]` or per node). Pure: the CA file is only named
//! here, read at connect time (atoll-pg).

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// libpq's `sslmode`, with the same meanings. atoll's default is [`SslMode::Disable`]
/// (libpq's is `prefer`): a config that says nothing keeps plain connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain connections only.
    #[default]
    Disable,
    /// TLS when the server offers it (certificate not verified), plain otherwise.
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS, the server's certificate chain verified against `sslrootcert`; any host name.
    VerifyCa,
    /// TLS, the chain verified and the certificate issued for the host connected to.
    VerifyFull,
}

/// Every mode, in the order errors list them.
pub const SSL_MODES: [SslMode; 5] = [
    SslMode::Disable,
    SslMode::Prefer,
    SslMode::Require,
    SslMode::VerifyCa,
    SslMode::VerifyFull,
];

impl SslMode {
    /// The libpq spelling (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked against a CA file.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` that is none of libpq's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sslmode = {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
pub struct SslModeError(pub String);

impl FromStr for SslMode {
    type Err = SslModeError;
    fn from_str(s: &str) -> Result<SslMode, SslModeError> {
        SSL_MODES
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| SslModeError(s.to_string()))
    }
}

/// A node's TLS settings, validated: a verifying mode always has a CA file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct TlsConfig {
    /// How TLS is used.
    pub mode: SslMode,
    /// The CA file (PEM) the server's certificate must chain to; absolute when the config
    /// came from a file (relative paths are taken from the config file's directory).
    pub root_cert: Option<PathBuf>,
}

impl TlsConfig {
    /// The node's own `sslmode`/`sslrootcert`, else the `[defaults]` ones; `base` is the
    /// directory relative CA paths are read from. Errors name the key.
    pub fn resolve(
        mode: Option<&str>,
        root_cert: Option<&str>,
        defaults: (Option<&str>, Option<&str>),
        base: Option<&Path>,
    ) -> Result<TlsConfig, String> {
        let mode = match mode.or(defaults.0) {
            Some(m) => m.parse::<SslMode>().map_err(|e| e.to_string())?,
            None => SslMode::default(),
        };
        let root_cert = root_cert.or(defaults.1).filter(|p| !p.is_empty()).map(|p| {
            let p = Path::new(p);
            match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.to_path_buf(),
            }
        });
        if mode.verifies() && root_cert.is_none() {
            return Err(format!(
                "sslmode = \"{mode}\" needs sslrootcert (the CA file to verify the server's certificate with)"
            ));
        }
        Ok(TlsConfig { mode, root_cert })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_unknown_lists_the_valid_ones() {
        for m in SSL_MODES {
            assert_eq!(m.as_str().parse::<SslMode>(), Ok(m));
        }
        let e = "verify_full".parse::<SslMode>().unwrap_err().to_string();
        assert_eq!(
            e,
            "sslmode = \"verify_full\" is not one of disable, prefer, require, verify-ca, verify-full"
        );
    }

    #[test]
    fn resolve_picks_own_then_defaults_and_joins_relative_paths() {
        let base = Path::new("/etc/atoll");
        let t = TlsConfig::resolve(None, None, (Some("verify-ca"), Some("ca.pem")), Some(base));
        assert_eq!(
            t,
            Ok(TlsConfig {
                mode: SslMode::VerifyCa,
                root_cert: Some("/etc/atoll/ca.pem".into()),
            })
        );
        let t = TlsConfig::resolve(
            Some("require"),
            Some("/x/ca"),
            (Some("verify-ca"), None),
            None,
        );
        assert_eq!(t.unwrap().root_cert, Some("/x/ca".into()));
        assert_eq!(
            TlsConfig::resolve(None, None, (None, None), None),
            Ok(TlsConfig::default())
        );
        let e = TlsConfig::resolve(Some("verify-full"), None, (None, None), None).unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
    }
}
