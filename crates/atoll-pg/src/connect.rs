//! Opening a connection to one node from its [`NodeConfig`], without ever building a DSN
//! string (so no password can end up in an error or a log line). TLS as the node's
//! `sslmode` says (see [`crate::tls`]).

use crate::error::{describe, PgError};
use crate::tls::{driver_mode, handshake_error, tls_connector};
use atoll_core::NodeConfig;
use std::time::Duration;
use tokio_postgres::Client;

/// Connects with the default timeout of 2 s.
pub async fn connect(node: &NodeConfig) -> Result<Client, PgError> {
    connect_with_timeout(node, Duration::from_secs(2)).await
}

/// The driver configuration for `node`, built field by field (no DSN string). Shared by
/// [`connect_with_timeout`] and connection pools so both connect the same way.
pub fn pg_config(
    node: &NodeConfig,
    application_name: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Config, PgError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&node.host)
        .port(node.port)
        .user(&node.user)
        .dbname(&node.database)
        .application_name(application_name)
        .connect_timeout(timeout)
        .ssl_mode(driver_mode(node.tls.mode));
    if let Some(r) = &node.password {
        let secret = r.resolve().map_err(|e| PgError::Connect {
            node: node.to_string(),
            msg: e.to_string(),
        })?;
        cfg.password(secret.expose());
    }
    Ok(cfg)
}

/// Connects and spawns the connection's driver task on the current runtime.
pub async fn connect_with_timeout(node: &NodeConfig, timeout: Duration) -> Result<Client, PgError> {
    connect_as(node, "atoll", timeout).await
}

/// [`connect_with_timeout`] with the session's `application_name`, which `pg_stat_activity`
/// shows (a lock's holder is named by it; it must not contain secrets).
pub async fn connect_as(
    node: &NodeConfig,
    application_name: &str,
    timeout: Duration,
) -> Result<Client, PgError> {
    let err = |msg: String| PgError::Connect {
        node: node.to_string(),
        msg,
    };
    let cfg = pg_config(node, application_name, timeout)?;
    let (client, connection) = open(node, &cfg, timeout).await.map_err(err)?;
    let name = node.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(node = %name, error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// Connects with `cfg` within `timeout`, TLS as the node's `sslmode` says; the caller drives
/// the connection. The one place a session is opened, so every connection (pools aside,
/// which deadpool opens with the same `pg_config` and connector) negotiates TLS alike.
/// `prefer` does not retry in plain text after a failed handshake (libpq does): a server
/// that offers TLS and then fails it is reported, not silently downgraded.
pub(crate) async fn open(
    node: &NodeConfig,
    cfg: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<
            tokio_postgres::Socket,
            impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        >,
    ),
    String,
> {
    let connector = tls_connector(&node.tls).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, cfg.connect(connector)).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(describe_connect(node, &e)),
        Err(_) => Err(format!("connect timed out after {timeout:?}")),
    }
}

/// The driver's message, and for a refused certificate the settings it was checked with
/// (one line: "TLS handshake failed: invalid peer certificate: UnknownIssuer (sslmode ...)").
pub fn describe_connect(node: &NodeConfig, e: &tokio_postgres::Error) -> String {
    match handshake_error(e) {
        Some(tls) => {
            let mut s = format!("TLS handshake failed: {tls} (sslmode = {}", node.tls.mode);
            if let (true, Some(ca)) = (node.tls.mode.verifies(), &node.tls.root_cert) {
                s.push_str(&format!(", sslrootcert = {}", ca.display()));
            }
            s.push(')');
            s
        }
        None => describe(e),
    }
}
