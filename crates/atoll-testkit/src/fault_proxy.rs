//! A hostile network for one node: a loopback TCP proxy in front of a PostgreSQL server
//! that forwards bytes both ways until it is armed, then breaks the connection that sends
//! a chosen simple-protocol query, either before the query reaches the server (the
//! server rolls back) or right after it (the server carries it out and its answer is lost).
//!
//! It reads the client's side as PostgreSQL frames (the untyped startup message first,
//! then `type, length, body`) so it can recognise a `Query` message; the server's side is
//! copied unread. Connections end when either side closes; dropping the proxy stops
//! accepting new ones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Where to break the connection that sends the armed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Drop the connection instead of forwarding the query: the server never sees it.
    Before,
    /// Forward the query, then drop the connection before any answer reaches the client.
    After,
}

#[derive(Debug, Clone)]
struct Armed {
    /// The exact text of the simple query to break on (e.g. `commit`).
    query: String,
    cut: Cut,
}

/// Shared between the accept loop and every connection.
#[derive(Default)]
struct State {
    /// The next query to break on; taken by the first connection that sends it.
    armed: Mutex<Option<Armed>>,
    /// How many connections were broken.
    fired: Mutex<u32>,
}

/// A running proxy; see the module doc.
pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    /// Dropped with the proxy, which ends the accept loop.
    _stop: watch::Sender<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let (stop, mut stopped) = watch::channel(());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        tokio::spawn(serve(client, upstream, st.clone()));
                    }
                    _ = stopped.changed() => return,
                }
            }
        });
        Ok(FaultProxy {
            port,
            state,
            _stop: stop,
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Breaks the next connection that sends exactly `query` as a simple query.
    pub fn arm(&self, query: &str, cut: Cut) {
        *lock(&self.state.armed) = Some(Armed {
            query: query.to_string(),
            cut,
        });
    }

    /// How many connections were broken so far.
    pub fn fired(&self) -> u32 {
        *lock(&self.state.fired)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Set when the connection is being broken: the server's answers are no longer passed on.
    let (broken_tx, broken_rx) = watch::channel(false);
    tokio::select! {
        _ = client_to_server(cr, sw, &state, broken_tx) => {}
        _ = server_to_client(sr, cw, broken_rx) => {}
    }
}

async fn server_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    broken: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *broken.borrow() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn client_to_server(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: &State,
    broken: watch::Sender<bool>,
) {
    // The startup message (or an SSL/GSS request, answered with one byte, then the
    // startup message) has no type byte.
    let mut untyped = true;
    loop {
        let frame = match read_frame(&mut from, untyped).await {
            Some(f) => f,
            None => return,
        };
        // An SSLRequest/GSSENCRequest is followed by another untyped message.
        untyped = untyped && is_encryption_request(&frame);
        let cut = matching_cut(state, &frame);
        if cut == Some(Cut::Before) {
            let _ = broken.send(true);
            return;
        }
        if cut == Some(Cut::After) {
            let _ = broken.send(true);
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
        if cut == Some(Cut::After) {
            let _ = to.flush().await;
            // Give the server the query before the close reaches it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            return;
        }
    }
}

/// One whole message from the client, header included.
async fn read_frame(from: &mut OwnedReadHalf, untyped: bool) -> Option<Vec<u8>> {
    let head = if untyped { 4 } else { 5 };
    let mut frame = vec![0u8; head];
    from.read_exact(&mut frame).await.ok()?;
    let len_at = head - 4;
    let len = u32::from_be_bytes(frame[len_at..head].try_into().ok()?) as usize;
    // The length counts itself; a nonsensical one ends the connection.
    if !(4..=(1 << 30)).contains(&len) {
        return None;
    }
    frame.resize(head + len - 4, 0);
    from.read_exact(&mut frame[head..]).await.ok()?;
    Some(frame)
}

fn is_encryption_request(frame: &[u8]) -> bool {
    // SSLRequest 80877103, GSSENCRequest 80877104.
    frame.len() == 8
        && matches!(
            frame[4..8],
            [0x04, 0xd2, 0x16, 0x2f] | [0x04, 0xd2, 0x16, 0x30]
        )
}

/// The cut to make if `frame` is the armed query (disarming it).
fn matching_cut(state: &State, frame: &[u8]) -> Option<Cut> {
    if frame.first() != Some(&b'Q') {
        return None;
    }
    let text = frame.get(5..frame.len().saturating_sub(1))?;
    let mut armed = lock(&state.armed);
    let cut = armed
        .as_ref()
        .filter(|a| a.query.as_bytes() == text)
        .map(|a| a.cut)?;
    *armed = None;
    *lock(&state.fired) += 1;
    Some(cut)
}
