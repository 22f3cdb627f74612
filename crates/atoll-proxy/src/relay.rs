//! Carrying one exchange between a client and a node: the node's answers relayed until
//! ReadyForQuery (with a COPY FROM STDIN's data carried the other way), in batches of up
//! to 64 KiB so a large result streams.

use crate::backend::MAX_SERVER_MESSAGE;
use crate::frame::{read_frame, WireError, MAX_MESSAGE};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

const BATCH: usize = 64 << 10;

/// Which side failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The client went away or broke the protocol: the session ends.
    #[error("client: {0}")]
    Client(WireError),
    /// The node's connection failed: the client is told, the connection closed.
    #[error("node: {0}")]
    Server(WireError),
}

/// Relays the node's messages to the client until ReadyForQuery; its status byte.
pub async fn relay<C, S>(client: &mut C, server: &mut S) -> Result<u8, RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    loop {
        let f = read_frame(server, MAX_SERVER_MESSAGE)
            .await
            .map_err(RelayError::Server)?;
        f.encode(&mut out);
        match f.tag {
            b'Z' => {
                send(client, &mut out).await?;
                return Ok(f.ready_status().unwrap_or(b'I'));
            }
            // CopyInResponse: the client's data goes to the node until CopyDone/CopyFail.
            b'G' => {
                send(client, &mut out).await?;
                copy_in(client, server).await?;
            }
            _ if out.len() >= BATCH => send(client, &mut out).await?,
            _ => {}
        }
    }
}

async fn send<C: AsyncWrite + Unpin>(client: &mut C, out: &mut BytesMut) -> Result<(), RelayError> {
    crate::frame::send(client, out)
        .await
        .map_err(|e| RelayError::Client(e.into()))?;
    out.clear();
    Ok(())
}

async fn copy_in<C, S>(client: &mut C, server: &mut S) -> Result<(), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    loop {
        let f = read_frame(client, MAX_MESSAGE)
            .await
            .map_err(RelayError::Client)?;
        f.encode(&mut out);
        let done = matches!(f.tag, b'c' | b'f');
        if done || out.len() >= BATCH {
            crate::frame::send(server, &out)
                .await
                .map_err(|e| RelayError::Server(e.into()))?;
            out.clear();
        }
        if done {
            return Ok(());
        }
    }
}

/// Runs `sql` on the node for the proxy itself (a session's `search_path`), its answers
/// read and dropped; an error from the node is returned as its message.
pub async fn internal<S>(server: &mut S, sql: &str) -> Result<Option<String>, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut out)?;
    crate::frame::send(server, &out).await?;
    let mut error = None;
    loop {
        let f = read_frame(server, MAX_SERVER_MESSAGE).await?;
        match f.tag {
            b'E' => error = Some(crate::backend::error_message(&f.body)),
            b'Z' => return Ok(error),
            _ => {}
        }
    }
}
