//! A connection to one island master, named for error messages, with a password mask:
//! every error built here has the source's password (if any) replaced by `***`, because
//! `CREATE SUBSCRIPTION` carries it and PostgreSQL may echo connection strings back.

use crate::error::MoveError;
use atoll_core::{Config, IslandId, NodeConfig, Snapshot};
use atoll_pg::describe;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};

pub(crate) struct Db {
    pub island: IslandId,
    pub node: NodeConfig,
    pub client: Client,
    /// Strings to mask in error messages (resolved passwords).
    mask: Vec<String>,
}

impl Db {
    pub async fn connect(
        config: &Config,
        snapshot: &Snapshot,
        island: IslandId,
    ) -> Result<Db, MoveError> {
        let node = atoll_pg::master_node(config, snapshot, island)?;
        let client = atoll_pg::connect_with_timeout(&node, config.connect_timeout).await?;
        let db = Db {
            island,
            node,
            client,
            mask: Vec::new(),
        };
        db.session().await?;
        Ok(db)
    }

    /// Another connection to the same node.
    pub async fn reconnect(&self, config: &Config) -> Result<Db, MoveError> {
        let client = atoll_pg::connect_with_timeout(&self.node, config.connect_timeout).await?;
        let db = Db {
            island: self.island,
            node: self.node.clone(),
            client,
            mask: self.mask.clone(),
        };
        db.session().await?;
        Ok(db)
    }

    /// A move's commits are flushed at once even where `synchronous_commit` is off by
    /// default: a WAL sender only sends flushed WAL, so an unflushed tick would wait for
    /// the WAL writer (up to `wal_writer_delay`, 200 ms) and lengthen the pause.
    /// `standard_conforming_strings` is forced on as a second guard for the literals this
    /// crate builds (see [`literal`]).
    async fn session(&self) -> Result<(), MoveError> {
        self.exec("set synchronous_commit = on; set standard_conforming_strings = on")
            .await
    }

    pub fn add_mask(&mut self, secret: String) {
        if !secret.is_empty() {
            self.mask.push(secret);
        }
    }

    pub fn err(&self, e: tokio_postgres::Error) -> MoveError {
        query_error(&self.node, &self.mask, e)
    }

    pub async fn exec(&self, sql: &str) -> Result<(), MoveError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn execute(&self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<u64, MoveError> {
        self.client.execute(sql, p).await.map_err(|e| self.err(e))
    }

    pub async fn query(&self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, MoveError> {
        self.client.query(sql, p).await.map_err(|e| self.err(e))
    }

    pub async fn one(&self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<Row, MoveError> {
        self.client.query_one(sql, p).await.map_err(|e| self.err(e))
    }

    pub async fn opt(
        &self,
        sql: &str,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, MoveError> {
        self.client.query_opt(sql, p).await.map_err(|e| self.err(e))
    }

    pub async fn tx(&mut self) -> Result<(Transaction<'_>, ErrCtx), MoveError> {
        let ctx = ErrCtx {
            node: self.node.clone(),
            mask: self.mask.clone(),
        };
        let tx = self.client.transaction().await.map_err(|e| ctx.err(e))?;
        Ok((tx, ctx))
    }
}

/// What a transaction needs to build errors while it borrows the client.
pub(crate) struct ErrCtx {
    node: NodeConfig,
    mask: Vec<String>,
}

impl ErrCtx {
    pub fn err(&self, e: tokio_postgres::Error) -> MoveError {
        query_error(&self.node, &self.mask, e)
    }
}

fn query_error(node: &NodeConfig, mask: &[String], e: tokio_postgres::Error) -> MoveError {
    let mut msg = describe(&e);
    for m in mask {
        msg = msg.replace(m.as_str(), "***");
    }
    MoveError::Query {
        node: node.to_string(),
        code: e.code().cloned(),
        msg,
    }
}

// One quoting for all of atoll; `session()` also forces `standard_conforming_strings` on.
pub(crate) use atoll_core::quote::{ident, literal};

/// The libpq connection string the destination uses to reach the source, and the
/// password it contains (to mask). Values are quoted per libpq rules.
pub(crate) fn conninfo(node: &NodeConfig) -> Result<(String, Option<String>), MoveError> {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut s = format!(
        "host={} port={} user={} dbname={} application_name=atoll_move",
        q(&node.host),
        node.port,
        q(&node.user),
        q(&node.database)
    );
    // The same TLS as atoll's own connections; the CA file is read by the destination
    // server, so the path must exist there too (docs/move.md).
    s.push_str(&format!(" sslmode={}", node.tls.mode));
    if let (true, Some(ca)) = (node.tls.mode.verifies(), &node.tls.root_cert) {
        s.push_str(&format!(" sslrootcert={}", q(&ca.to_string_lossy())));
    }
    let mut secret = None;
    if let Some(r) = &node.password {
        let p = r.resolve().map_err(|e| MoveError::Query {
            node: node.to_string(),
            msg: e.to_string(),
            code: None,
        })?;
        s.push_str(&format!(" password={}", q(p.expose())));
        secret = Some(p.expose().to_string());
    }
    Ok((s, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quotes_values_and_returns_the_secret_to_mask() {
        // A file, not the process environment: setting a variable while other test
        // threads may read the environment is undefined behaviour on Linux.
        let path = std::env::temp_dir().join(format!(
            "atoll-move-test-pw-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, r"p'w\x").unwrap();
        let node = NodeConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "o'neil".into(),
            database: "app".into(),
            password: Some(format!("file:{}", path.display()).parse().unwrap()),
            tls: Default::default(),
        };
        let got = conninfo(&node);
        let _ = std::fs::remove_file(&path);
        let (s, secret) = got.unwrap();
        assert!(s.contains(r"user='o\'neil'"), "{s}");
        assert!(s.contains(r"password='p\'w\\x'"));
        assert_eq!(secret.as_deref(), Some(r"p'w\x"));
        assert!(s.contains(" sslmode=disable"), "{s}");
        assert!(!s.contains("sslrootcert"), "{s}");
        // The node's own rendering never shows the password.
        assert!(!node.to_string().contains("p'w"));
    }

    #[test]
    fn conninfo_carries_sslmode_and_the_ca_file() {
        let node = NodeConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "u".into(),
            database: "d".into(),
            password: None,
            tls: atoll_core::TlsConfig {
                mode: atoll_core::SslMode::VerifyFull,
                root_cert: Some("/s/tls/it's ca.crt".into()),
            },
        };
        let (s, _) = conninfo(&node).unwrap();
        assert!(
            s.ends_with(r" sslmode=verify-full sslrootcert='/s/tls/it\'s ca.crt'"),
            "{s}"
        );
    }
}
