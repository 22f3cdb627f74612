//! Cancel requests. A client gets a process id and secret key of the proxy's own at
//! startup (its server connections change per transaction); a CancelRequest carrying them
//! is passed on, as the node's own CancelRequest, to the node connection that session is
//! using right now. Nothing is sent when the session has none (between transactions
//! there is nothing to cancel) or the key does not match (as PostgreSQL, no answer
//! either way).

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;

/// A node connection's cancel key: where it is, and the backend's process id and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` of the node.
    pub addr: String,
    /// The backend's process id.
    pub pid: i32,
    /// The backend's secret key.
    pub key: i32,
}

struct Entry {
    key: i32,
    target: Option<Target>,
}

/// Every session's key and current node connection.
#[derive(Default)]
pub struct Cancels {
    /// By the proxy's process id of the session; locked only to read or change an entry.
    sessions: Mutex<HashMap<i32, Entry>>,
}

impl Cancels {
    /// A session started with this key.
    pub fn register(&self, pid: i32, key: i32) {
        self.lock().insert(pid, Entry { key, target: None });
    }

    /// The session ended.
    pub fn remove(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    /// The node connection the session is using now (`None`: none).
    pub fn set(&self, pid: i32, target: Option<Target>) {
        if let Some(e) = self.lock().get_mut(&pid) {
            e.target = target;
        }
    }

    /// Where a CancelRequest with this key goes, if anywhere.
    pub fn target(&self, pid: i32, key: i32) -> Option<Target> {
        self.lock()
            .get(&pid)
            .filter(|e| e.key == key)
            .and_then(|e| e.target.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends the node its CancelRequest (on a new connection, as PostgreSQL wants).
pub async fn send(target: &Target) -> std::io::Result<()> {
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(target.pid, target.key, &mut out);
    let mut stream = tokio::net::TcpStream::connect(&target.addr).await?;
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_key_finds_the_current_connection() {
        let c = Cancels::default();
        c.register(7, 1234);
        assert_eq!(c.target(7, 1234), None, "no connection yet");
        let t = Target {
            addr: "127.0.0.1:5432".into(),
            pid: 99,
            key: 5,
        };
        c.set(7, Some(t.clone()));
        assert_eq!(c.target(7, 1234), Some(t));
        assert_eq!(c.target(7, 1235), None);
        assert_eq!(c.target(8, 1234), None);
        c.set(7, None);
        assert_eq!(c.target(7, 1234), None);
        c.remove(7);
        c.set(
            7,
            Some(Target {
                addr: String::new(),
                pid: 1,
                key: 1,
            }),
        );
        assert_eq!(c.target(7, 1234), None, "gone sessions stay gone");
    }
}
