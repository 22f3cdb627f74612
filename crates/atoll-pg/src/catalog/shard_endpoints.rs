//! `atoll.shard_endpoints` (catalog step 8): how to reach each node of each island, as
//! records with an `auth_kind` and a `credential_alias` into a keychain (never the
//! credential). Kept on the coordination island's master. Every row read is validated; a
//! malformed one is an error naming it (`island 1 node 10.0.0.5:5432: ...`), never skipped.

use crate::error::PgError;
use atoll_core::{IslandId, NodeConfig};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use tokio_postgres::Client;

/// How a node authenticates the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// A password, found in the keychain under the alias.
    Password,
    /// An AWS RDS IAM token (the alias names the role or profile).
    AwsIam,
    /// A GCP Cloud SQL IAM token (the alias names the service account).
    GcpIam,
    /// No credential (trust, peer or certificate authentication).
    None,
}

impl AuthKind {
    /// The spelling in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Password => "password",
            AuthKind::AwsIam => "aws-iam",
            AuthKind::GcpIam => "gcp-iam",
            AuthKind::None => "none",
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthKind {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthKind, String> {
        match s {
            "password" => Ok(AuthKind::Password),
            "aws-iam" => Ok(AuthKind::AwsIam),
            "gcp-iam" => Ok(AuthKind::GcpIam),
            "none" => Ok(AuthKind::None),
            _ => Err(format!(
                "auth_kind {s:?} is not password, aws-iam, gcp-iam or none"
            )),
        }
    }
}

/// One validated endpoint record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardEndpoint {
    /// The island.
    pub island: IslandId,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// PostgreSQL user (`None`: the default).
    pub user: Option<String>,
    /// Database (`None`: the default).
    pub database: Option<String>,
    /// How it authenticates.
    pub auth_kind: AuthKind,
    /// The keychain alias of its credential (required for `password`, absent for `none`).
    pub credential_alias: Option<String>,
}

/// A row as stored, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// `island`.
    pub island: i32,
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: i32,
    /// `user`.
    pub user: Option<String>,
    /// `database`.
    pub database: Option<String>,
    /// `auth_kind`.
    pub auth_kind: String,
    /// `credential_alias`.
    pub credential_alias: Option<String>,
}

/// Whether `s` can be a keychain alias: 1..=128 of `A-Z a-z 0-9 _ . - /`.
pub fn valid_alias(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
}

impl EndpointRow {
    /// Validates the row; the error names it.
    pub fn validate(&self) -> Result<ShardEndpoint, String> {
        let name = format!(
            "atoll.shard_endpoints island {} node {}:{}",
            self.island, self.host, self.port
        );
        let bad = |what: String| format!("{name}: {what}");
        let island = u16::try_from(self.island)
            .ok()
            .filter(|i| *i <= 9999)
            .map(IslandId)
            .ok_or_else(|| bad("island is not in 0..=9999".into()))?;
        let port = u16::try_from(self.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("port is not in 1..=65535".into()))?;
        if self.host.is_empty()
            || self
                .host
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(bad("host is empty or holds spaces".into()));
        }
        let auth_kind: AuthKind = self.auth_kind.parse().map_err(bad)?;
        let alias = self.credential_alias.clone().filter(|a| !a.is_empty());
        match (&auth_kind, &alias) {
            (_, Some(a)) if !valid_alias(a) => {
                // Not echoed: a credential pasted in place of its alias must not reach a log.
                return Err(bad(format!(
                    "credential_alias ({} bytes, not shown) is not an alias (1 to 128 of A-Z a-z 0-9 _ . - /); store the credential in the keychain",
                    a.len()
                )));
            }
            (AuthKind::Password, None) => {
                return Err(bad("auth_kind password needs a credential_alias".into()))
            }
            (AuthKind::None, Some(_)) => {
                return Err(bad("auth_kind none takes no credential_alias".into()))
            }
            _ => {}
        }
        Ok(ShardEndpoint {
            island,
            host: self.host.clone(),
            port,
            user: self.user.clone().filter(|u| !u.is_empty()),
            database: self.database.clone().filter(|d| !d.is_empty()),
            auth_kind,
            credential_alias: alias,
        })
    }
}

fn table_error(node: &NodeConfig, e: tokio_postgres::Error) -> PgError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        return PgError::Refused(format!(
            "node {node}: atoll.shard_endpoints does not exist; run `atoll init` to upgrade the catalog"
        ));
    }
    PgError::query(node, e)
}

/// Every record, validated, by island then host and port; the first malformed one is the
/// error.
pub async fn read(client: &Client, node: &NodeConfig) -> Result<Vec<ShardEndpoint>, PgError> {
    let rows = client
        .query(
            "select island, host, port, \"user\", database, auth_kind, credential_alias
             from atoll.shard_endpoints order by island, host, port",
            &[],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    rows.iter()
        .map(|r| {
            let row = EndpointRow {
                island: r.get(0),
                host: r.get(1),
                port: r.get(2),
                user: r.get(3),
                database: r.get(4),
                auth_kind: r.get(5),
                credential_alias: r.get(6),
            };
            row.validate().map_err(PgError::Refused)
        })
        .collect()
}

/// Writes `rows` as they are (inserted or replaced by island, host and port). Validation
/// happens on read, so tests can store a malformed record; callers that write real
/// records validate first ([`EndpointRow::validate`]).
pub async fn upsert(
    client: &Client,
    node: &NodeConfig,
    rows: &[EndpointRow],
) -> Result<(), PgError> {
    for r in rows {
        client
            .execute(
                "insert into atoll.shard_endpoints (island, host, port, \"user\", database, auth_kind, credential_alias)
                 values ($1, $2, $3, $4, $5, $6, $7)
                 on conflict (island, host, port) do update set \"user\" = excluded.\"user\",
                     database = excluded.database, auth_kind = excluded.auth_kind,
                     credential_alias = excluded.credential_alias, updated_at = now()",
                &[&r.island, &r.host, &r.port, &r.user, &r.database, &r.auth_kind, &r.credential_alias],
            )
            .await
            .map_err(|e| table_error(node, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, alias: Option<&str>) -> EndpointRow {
        EndpointRow {
            island: 1,
            host: "10.0.0.5".into(),
            port: 5432,
            user: Some("app".into()),
            database: None,
            auth_kind: kind.into(),
            credential_alias: alias.map(str::to_string),
        }
    }

    #[test]
    fn rows_are_validated_by_name() {
        let e = row("password", Some("prod/island1")).validate().unwrap();
        assert_eq!(
            (e.auth_kind, e.credential_alias.as_deref()),
            (AuthKind::Password, Some("prod/island1"))
        );
        assert_eq!(
            row("aws-iam", Some("role-a")).validate().unwrap().auth_kind,
            AuthKind::AwsIam
        );
        assert_eq!(
            row("none", None).validate().unwrap().auth_kind,
            AuthKind::None
        );
        for (r, needle) in [
            (row("kerberos", None), "auth_kind \"kerberos\""),
            (row("password", None), "needs a credential_alias"),
            (row("none", Some("x")), "takes no credential_alias"),
            (
                row("password", Some("hunter2 with spaces")),
                "is not an alias",
            ),
            (
                EndpointRow {
                    port: 0,
                    ..row("none", None)
                },
                "port",
            ),
            (
                EndpointRow {
                    island: 10_000,
                    ..row("none", None)
                },
                "island",
            ),
        ] {
            let err = r.validate().unwrap_err();
            assert!(err.starts_with("atoll.shard_endpoints island"), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(
                !err.contains("hunter2"),
                "a credential pasted as alias is not echoed: {err}"
            );
        }
    }
}
