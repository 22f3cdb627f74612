//! One connection from the proxy to a node, made with atoll's configured credentials
//! (trust, cleartext, MD5 or SCRAM-SHA-256, spoken with rust-postgres' protocol crate), and
//! what the node said at startup (its parameters).

use crate::cancel::Target;
use crate::frame::{i32_at, read_frame, Frame, WireError};
use crate::stream::Stream;
use atoll_core::NodeConfig;
use atoll_core::SslMode;
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufStream;
use tokio::net::TcpStream;

/// A server message is bounded only by PostgreSQL (a DataRow may be large).
pub const MAX_SERVER_MESSAGE: usize = i32::MAX as usize;

/// Why a node connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Connecting, the exchange or the connection failed.
    #[error("node {node}: {source}")]
    Wire {
        /// The node, as `user@host:port/database`.
        node: String,
        /// What failed.
        source: WireError,
    },
    /// The node refused (its message).
    #[error("node {node}: {message}")]
    Refused {
        /// The node.
        node: String,
        /// What it said.
        message: String,
    },
}

/// An open, authenticated connection to a node, idle (ready for a query).
pub struct ServerConn {
    /// The socket, buffered both ways.
    pub stream: BufStream<Stream>,
    /// The node's `host:port`.
    pub addr: String,
    /// The ParameterStatus values it sent at startup.
    pub params: Vec<(String, String)>,
    /// Where a cancel request for it goes (its BackendKeyData), made once at login.
    pub cancel: Option<Arc<Target>>,
    /// The server statements prepared on it (`prepared.rs`), kept across transactions.
    pub statements: crate::prepared::ServerStatements,
    /// The session settings made on it, in order (`session/settings.rs`); `None` when
    /// unknown (a client's `SET` ran inside a transaction on it).
    pub settings: Option<Vec<String>>,
}

/// The `M` field of an ErrorResponse body.
pub fn error_message(body: &[u8]) -> String {
    error_field(body, b'M').unwrap_or_else(|| "an error without a message".into())
}

/// An ErrorResponse's SQLSTATE.
pub fn error_code(body: &[u8]) -> Option<String> {
    error_field(body, b'C')
}

/// One field of an ErrorResponse or NoticeResponse body (`None` when absent).
fn error_field(body: &[u8], wanted: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        let end = tail.iter().position(|c| *c == 0).unwrap_or(tail.len());
        if field == wanted {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    None
}

/// Connects and authenticates to `node` within `timeout`.
pub async fn connect(node: &NodeConfig, timeout: Duration) -> Result<ServerConn, BackendError> {
    let shown = node.to_string();
    let wire = |source: WireError| BackendError::Wire {
        node: shown.clone(),
        source,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((node.host.as_str(), node.port)))
        .await
        .map_err(|_| {
            wire(WireError::Malformed(format!(
                "no connection within {timeout:?}"
            )))
        })?
        .map_err(|e| wire(e.into()))?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(timeout, secure(tcp, node))
        .await
        .map_err(|_| {
            wire(WireError::Malformed(format!(
                "no TLS handshake within {timeout:?}"
            )))
        })??;
    let mut conn = ServerConn {
        stream: BufStream::new(stream),
        addr: node.addr(),
        params: Vec::new(),
        cancel: None,
        statements: Default::default(),
        settings: Some(Vec::new()),
    };
    tokio::time::timeout(timeout, login(&mut conn, node))
        .await
        .map_err(|_| wire(WireError::Malformed(format!("no login within {timeout:?}"))))??;
    Ok(conn)
}

/// TLS as the node's `sslmode` asks: an SSLRequest first; `prefer` goes on in plain text
/// when the node declines, the other modes fail.
async fn secure(mut tcp: TcpStream, node: &NodeConfig) -> Result<Stream, BackendError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if node.tls.mode == SslMode::Disable {
        return Ok(Stream::Plain(tcp));
    }
    let shown = node.to_string();
    let refused = |message: String| BackendError::Refused {
        node: shown.clone(),
        message,
    };
    let wire = |e: std::io::Error| BackendError::Wire {
        node: shown.clone(),
        source: e.into(),
    };
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    tcp.write_all(&out).await.map_err(wire)?;
    match tcp.read_u8().await.map_err(wire)? {
        b'S' => {}
        b'N' if node.tls.mode == SslMode::Prefer => return Ok(Stream::Plain(tcp)),
        b'N' => {
            return Err(refused(format!(
                "does not offer TLS (sslmode={})",
                node.tls.mode
            )))
        }
        other => {
            return Err(refused(format!(
                "answered the SSLRequest with {:?}",
                other as char
            )))
        }
    }
    let config = atoll_pg::rustls_client_config(&node.tls).map_err(|e| refused(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(node.host.clone())
        .map_err(|e| refused(format!("host {:?} as a TLS name: {e}", node.host)))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| refused(format!("TLS handshake: {e}")))?;
    Ok(Stream::Connected(Box::new(tls)))
}

async fn login(conn: &mut ServerConn, node: &NodeConfig) -> Result<(), BackendError> {
    let shown = node.to_string();
    let wire = |source: WireError| BackendError::Wire {
        node: shown.clone(),
        source,
    };
    let refused = |message: String| BackendError::Refused {
        node: shown.clone(),
        message,
    };
    let password = match &node.password {
        Some(r) => Some(r.resolve().map_err(|e| refused(e.to_string()))?),
        None => None,
    };
    let mut out = BytesMut::new();
    let params = [
        ("user", node.user.as_str()),
        ("database", node.database.as_str()),
        ("application_name", "atoll-proxy"),
    ];
    frontend::startup_message(params, &mut out).map_err(|e| wire(e.into()))?;
    crate::frame::send(&mut conn.stream, &out)
        .await
        .map_err(|e| wire(e.into()))?;
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = read_frame(&mut conn.stream, MAX_SERVER_MESSAGE)
            .await
            .map_err(wire)?;
        out.clear();
        match f.tag {
            b'R' => {
                let pw = || {
                    password
                        .as_ref()
                        .map(|p| p.expose().as_bytes())
                        .ok_or_else(|| refused("asks for a password and none is configured".into()))
                };
                match auth_code(&f) {
                    0 => continue,
                    3 => frontend::password_message(pw()?, &mut out).map_err(|e| wire(e.into()))?,
                    5 => {
                        let salt: [u8; 4] = f
                            .body
                            .get(4..8)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| {
                                wire(WireError::Malformed("MD5 request without salt".into()))
                            })?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            node.user.as_bytes(),
                            pw()?,
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut out)
                            .map_err(|e| wire(e.into()))?;
                    }
                    10 => {
                        let s = ScramSha256::new(pw()?, ChannelBinding::unsupported());
                        frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                            .map_err(|e| wire(e.into()))?;
                        scram = Some(s);
                    }
                    11 | 12 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            wire(WireError::Malformed("SASL step before it began".into()))
                        })?;
                        let data = f.body.get(4..).unwrap_or_default();
                        if auth_code(&f) == 11 {
                            s.update(data).map_err(|e| refused(e.to_string()))?;
                            frontend::sasl_response(s.message(), &mut out)
                                .map_err(|e| wire(e.into()))?;
                        } else {
                            s.finish(data).map_err(|e| refused(e.to_string()))?;
                            continue;
                        }
                    }
                    code => {
                        return Err(refused(format!(
                        "asks for authentication method {code}, which atoll proxy does not speak"
                    )))
                    }
                }
                crate::frame::send(&mut conn.stream, &out)
                    .await
                    .map_err(|e| wire(e.into()))?;
            }
            b'S' => {
                let mut parts = f.body.split(|c| *c == 0);
                let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                conn.params.push((name, value));
            }
            b'K' => {
                conn.cancel = i32_at(&f.body, 0)
                    .zip(i32_at(&f.body, 4))
                    .map(|(pid, key)| {
                        Arc::new(Target {
                            addr: conn.addr.clone(),
                            pid,
                            key,
                        })
                    });
            }
            b'E' => return Err(refused(error_message(&f.body))),
            b'Z' => return Ok(()),
            _ => {}
        }
    }
}

fn auth_code(f: &Frame) -> i32 {
    i32_at(&f.body, 0).unwrap_or(-1)
}
