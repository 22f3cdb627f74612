//! Nodes and their credentials from the endpoint records (seed 000). An endpoint record
//! (`atoll.shard_endpoints`, read by [`crate::catalog::shard_endpoints`]) names a node, an
//! `auth_kind` and a `credential_alias`; a [`Keychain`] turns the alias into a secret
//! reference (`env:VAR` / `file:PATH`, atoll's [`SecretRef`]), resolved at connect time
//! like every password in atoll. The backend here is a file mapping aliases to references
//! ([`FileKeychain`]); IAM kinds are parsed and validated but refused as "not available in
//! this build" until a backend exists.
//!
//! [`resolve`] is what the CLI and atoll-client (and so the router) call on a config with
//! `[endpoints]`: the islands come from the records, read on the coordination island
//! through the nodes the config lists. Without `[endpoints]` the config's own islands (or
//! `ATOLL_ISLANDS`, the development fallback) are used as they are.

use crate::catalog::shard_endpoints::{self, valid_alias, AuthKind, ShardEndpoint};
use crate::PgError;
use atoll_core::{Config, IslandConfig, IslandId, NodeConfig, SecretRef};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a credential cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeychainError {
    /// The keychain file is unreadable or malformed: where, then what.
    #[error("keychain {0}: {1}")]
    Bad(String, String),
    /// The keychain has no such alias.
    #[error("{record}: credential_alias {alias:?} is not in the keychain")]
    Unknown {
        /// The record asking.
        record: String,
        /// The alias.
        alias: String,
    },
    /// The record's kind has no backend in this build.
    #[error("{record}: auth_kind {kind} is not available in this build (no {kind} backend); use password or none")]
    NotAvailable {
        /// The record asking.
        record: String,
        /// Its kind.
        kind: AuthKind,
    },
}

/// Where aliases are looked up.
pub trait Keychain: Send + Sync {
    /// The secret reference stored under `alias`, if any.
    fn reference(&self, alias: &str) -> Option<SecretRef>;
}

/// A keychain file: `[aliases]` mapping each alias to `env:VAR` or `file:PATH` (plain-text
/// secrets are refused, as everywhere in atoll).
#[derive(Debug, Clone, Default)]
pub struct FileKeychain {
    aliases: BTreeMap<String, SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeychain {
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

impl FileKeychain {
    /// Reads `path`.
    pub fn from_file(path: &Path) -> Result<FileKeychain, KeychainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeychainError::Bad(path.display().to_string(), e.to_string()))?;
        FileKeychain::parse(&text, &path.display().to_string())
    }

    /// Parses keychain text; `source` is named in errors. Values are never echoed.
    pub fn parse(text: &str, source: &str) -> Result<FileKeychain, KeychainError> {
        let raw: RawKeychain = toml::from_str(text).map_err(|e| {
            KeychainError::Bad(
                source.into(),
                e.message().split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })?;
        let mut aliases = BTreeMap::new();
        for (alias, value) in raw.aliases {
            if !valid_alias(&alias) {
                return Err(KeychainError::Bad(
                    source.into(),
                    format!("{alias:?} is not an alias"),
                ));
            }
            let r: SecretRef = value
                .parse()
                .map_err(|e| KeychainError::Bad(source.into(), format!("alias {alias:?}: {e}")))?;
            aliases.insert(alias, r);
        }
        Ok(FileKeychain { aliases })
    }
}

impl Keychain for FileKeychain {
    fn reference(&self, alias: &str) -> Option<SecretRef> {
        self.aliases.get(alias).cloned()
    }
}

fn record(e: &ShardEndpoint) -> String {
    format!(
        "atoll.shard_endpoints island {} node {}:{}",
        e.island, e.host, e.port
    )
}

/// The password reference `e` connects with (`None`: none is sent).
pub fn credential(
    e: &ShardEndpoint,
    keychain: &dyn Keychain,
) -> Result<Option<SecretRef>, KeychainError> {
    match e.auth_kind {
        AuthKind::None => Ok(None),
        AuthKind::AwsIam | AuthKind::GcpIam => Err(KeychainError::NotAvailable {
            record: record(e),
            kind: e.auth_kind,
        }),
        AuthKind::Password => {
            let alias = e.credential_alias.clone().unwrap_or_default();
            keychain
                .reference(&alias)
                .map(Some)
                .ok_or(KeychainError::Unknown {
                    record: record(e),
                    alias,
                })
        }
    }
}

/// `base` (the config that reached the coordination island) with its islands replaced by
/// the records': one node per record, credentials through `keychain`, TLS settings taken
/// from `base`'s first node of the same island.
pub fn cluster_config(
    base: &Config,
    endpoints: &[ShardEndpoint],
    keychain: &dyn Keychain,
) -> Result<Config, KeychainError> {
    let mut islands: BTreeMap<IslandId, Vec<NodeConfig>> = BTreeMap::new();
    for e in endpoints {
        let tls = base
            .islands
            .iter()
            .find(|i| i.id == e.island)
            .and_then(|i| i.nodes.first())
            .map(|n| n.tls.clone())
            .unwrap_or_default();
        islands.entry(e.island).or_default().push(NodeConfig {
            host: e.host.clone(),
            port: e.port,
            user: e.user.clone().unwrap_or_else(|| "postgres".into()),
            database: e.database.clone().unwrap_or_else(|| "postgres".into()),
            password: credential(e, keychain)?,
            tls,
        });
    }
    Ok(Config {
        islands: islands
            .into_iter()
            .map(|(id, nodes)| IslandConfig { id, nodes })
            .collect(),
        ..base.clone()
    })
}

/// `config` with its islands taken from the endpoint records when it has `[endpoints]`
/// (else unchanged): the keychain file is read, the records are read from the first node
/// of the coordination island that answers (a replica will do: the catalog is
/// replicated), and every record must resolve. No records at all is an error, not a
/// fallback to the config's own islands.
pub async fn resolve(config: &Config) -> Result<Config, PgError> {
    let Some(e) = &config.endpoints else {
        return Ok(config.clone());
    };
    let keychain = FileKeychain::from_file(&e.keychain)?;
    let island = crate::coordination::coordination_island(config).ok_or_else(|| {
        PgError::Refused("[endpoints]: the config lists no island to read the records from".into())
    })?;
    let nodes = config
        .islands
        .iter()
        .find(|i| i.id == island)
        .map(|i| i.nodes.as_slice())
        .unwrap_or_default();
    let mut last = None;
    for node in nodes {
        let read = async {
            let c = crate::connect_with_timeout(node, config.connect_timeout).await?;
            shard_endpoints::read(&c, node).await
        };
        match read.await {
            Ok(records) if records.is_empty() => {
                return Err(PgError::Refused(format!(
                    "[endpoints]: atoll.shard_endpoints on island {island} has no records"
                )));
            }
            Ok(records) => return Ok(cluster_config(config, &records, &keychain)?),
            // A malformed record is the answer, not a reason to ask another node.
            Err(e @ PgError::Refused(_)) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| PgError::Refused(format!("[endpoints]: island {island} lists no node"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(kind: AuthKind, alias: Option<&str>) -> ShardEndpoint {
        ShardEndpoint {
            island: IslandId(1),
            host: "db1".into(),
            port: 5432,
            user: None,
            database: None,
            auth_kind: kind,
            credential_alias: alias.map(str::to_string),
        }
    }

    #[test]
    fn aliases_resolve_and_iam_is_refused() {
        let kc = FileKeychain::parse(
            "[aliases]\n\"prod/db1\" = \"env:DB1_PASSWORD\"\n",
            "kc.toml",
        )
        .unwrap();
        let r = credential(&endpoint(AuthKind::Password, Some("prod/db1")), &kc).unwrap();
        assert_eq!(r, Some(SecretRef::Env("DB1_PASSWORD".into())));
        assert_eq!(
            credential(&endpoint(AuthKind::None, None), &kc).unwrap(),
            None
        );
        let e = credential(&endpoint(AuthKind::AwsIam, Some("role")), &kc).unwrap_err();
        assert!(
            e.to_string()
                .contains("aws-iam is not available in this build"),
            "{e}"
        );
        let e = credential(&endpoint(AuthKind::Password, Some("other")), &kc).unwrap_err();
        assert!(
            e.to_string().contains("\"other\" is not in the keychain"),
            "{e}"
        );
        let e = FileKeychain::parse("[aliases]\nx = \"s3cret\"\n", "kc.toml").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(FileKeychain::parse("[aliases\n", "kc.toml").is_err());
    }
}
