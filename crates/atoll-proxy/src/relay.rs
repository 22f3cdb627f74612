//! Carrying one exchange between a client and a node: the node's answers relayed until
//! ReadyForQuery (with a COPY FROM STDIN's data carried the other way), in batches of up
//! to 64 KiB so a large result streams. The first exchange of a transaction is relayed by
//! [`relay_first`], which keeps back an error saying the shard is not on this node, so the
//! session can run the exchange again where the shard went (`hold.rs`).

use crate::backend::MAX_SERVER_MESSAGE;
use crate::frame::{read_frame, read_frame_into, WireError, MAX_MESSAGE};
use crate::metrics::Stats;
use crate::prepared::Expect;
use bytes::BytesMut;
use tokio::io::{AsyncBufRead, AsyncWrite};

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
pub async fn relay<C, S>(
    client: &mut C,
    server: &mut S,
    expect: &mut Expect,
    stats: &Stats,
) -> Result<u8, RelayError>
where
    C: AsyncBufRead + AsyncWrite + Unpin,
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    relay_after(client, server, expect, stats, BytesMut::new()).await
}

/// [`relay`], with messages already read and not yet sent in `out` (sent with the rest, so
/// a short answer still goes to the client in one write).
async fn relay_after<C, S>(
    client: &mut C,
    server: &mut S,
    expect: &mut Expect,
    stats: &Stats,
    mut out: BytesMut,
) -> Result<u8, RelayError>
where
    C: AsyncBufRead + AsyncWrite + Unpin,
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    loop {
        let (tag, at) = next_answer(server, expect, &mut out).await?;
        match tag {
            b'E' => stats.error(&crate::backend::error_code(&out[at..]).unwrap_or_default()),
            b'Z' => {
                let status = ready_status(&out, at);
                send(client, &mut out).await?;
                return Ok(status);
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

/// How a transaction's first exchange ended.
#[derive(Debug)]
pub enum First {
    /// Relayed to the client; the ReadyForQuery status.
    Done(u8),
    /// It failed, before anything completed, with an error that a shard moved away would
    /// cause ([`crate::hold::moved_code`]); nothing was sent to the client. The node's
    /// messages are kept, to relay if the shard did not move after all.
    Missing {
        /// The node's ReadyForQuery status.
        status: u8,
        /// The error's SQLSTATE.
        code: String,
        /// The node's messages, ReadyForQuery included.
        kept: BytesMut,
    },
}

/// Like [`relay`], but an error that a moved shard causes, arriving before any statement
/// completed or returned a row, is kept back ([`First::Missing`]).
pub async fn relay_first<C, S>(
    client: &mut C,
    server: &mut S,
    expect: &mut Expect,
    stats: &Stats,
) -> Result<First, RelayError>
where
    C: AsyncBufRead + AsyncWrite + Unpin,
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    // Room for a short answer (a few rows) without growing.
    let mut out = BytesMut::with_capacity(1024);
    let mut missing = false;
    let mut code = String::new();
    loop {
        let (tag, at) = next_answer(server, expect, &mut out).await?;
        match tag {
            b'Z' if missing => {
                let status = ready_status(&out, at);
                return Ok(First::Missing {
                    status,
                    code,
                    kept: out,
                });
            }
            b'E' if !missing && crate::hold::moved_code(&out[at..]) => {
                missing = true;
                code = crate::backend::error_code(&out[at..]).unwrap_or_default();
            }
            // Parse/Bind complete, parameter and row descriptions, notices: nothing done yet.
            b'1' | b'2' | b't' | b'T' | b'n' | b'N' | b'S' if out.len() < BATCH => {}
            _ if missing => {}
            // Something completed, returned rows or started a COPY: relayed as it comes.
            _ => {
                if tag == b'E' {
                    stats.error(&crate::backend::error_code(&out[at..]).unwrap_or_default());
                }
                return match tag {
                    b'Z' => {
                        let status = ready_status(&out, at);
                        send(client, &mut out).await?;
                        Ok(First::Done(status))
                    }
                    b'G' => {
                        send(client, &mut out).await?;
                        copy_in(client, server).await?;
                        relay(client, server, expect, stats).await.map(First::Done)
                    }
                    _ => relay_after(client, server, expect, stats, out)
                        .await
                        .map(First::Done),
                };
            }
        }
    }
}

/// Sends messages kept back by [`relay_first`].
pub async fn release_kept<C: AsyncWrite + Unpin>(
    client: &mut C,
    kept: &mut BytesMut,
) -> Result<(), RelayError> {
    send(client, kept).await
}

/// Reads the node's next message the client is to see onto the end of `out` (answers to
/// messages the proxy added are dropped): its tag and where its body starts.
async fn next_answer<S: AsyncBufRead + Unpin>(
    server: &mut S,
    expect: &mut Expect,
    out: &mut BytesMut,
) -> Result<(u8, usize), RelayError> {
    loop {
        let start = out.len();
        let (tag, at) = read_frame_into(server, out, MAX_SERVER_MESSAGE)
            .await
            .map_err(RelayError::Server)?;
        if expect.forward(tag) {
            return Ok((tag, at));
        }
        out.truncate(start);
    }
}

/// A ReadyForQuery's status, its body at `at` of `out`.
fn ready_status(out: &[u8], at: usize) -> u8 {
    out.get(at).copied().unwrap_or(b'I')
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
    C: AsyncBufRead + AsyncWrite + Unpin,
    S: AsyncBufRead + AsyncWrite + Unpin,
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
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    Ok(probe(server, sql).await?.err())
}

/// Runs `sql` on the node for the proxy itself: the first column of its first row (`None`
/// when no row or NULL), or the node's error message.
pub async fn probe<S>(
    server: &mut S,
    sql: &str,
) -> Result<Result<Option<String>, String>, WireError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut out)?;
    crate::frame::send(server, &out).await?;
    let mut answer = Ok(None);
    let mut first_row = true;
    loop {
        let f = read_frame(server, MAX_SERVER_MESSAGE).await?;
        match f.tag {
            b'E' => answer = Err(crate::backend::error_message(&f.body)),
            b'D' if first_row => {
                first_row = false;
                answer = Ok(first_column(&f.body));
            }
            b'Z' => return Ok(answer),
            _ => {}
        }
    }
}

/// A DataRow's first column as text (`None`: NULL, no column, or malformed).
fn first_column(body: &[u8]) -> Option<String> {
    let count = i16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if count < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let value = body.get(6..6 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}
