//! Cancel requests. A client gets a process id and secret key of the proxy's own at
//! startup (its server connections change per transaction); a CancelRequest carrying them
//! is passed on, as the node's own CancelRequest, to the node connection that session is
//! using right now. Nothing is sent when the session has none (between transactions
//! there is nothing to cancel) or the key does not match (as PostgreSQL, no answer
//! either way).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// One session's current node connection: its own lock, so that a session changing it
/// (twice per transaction) never waits for another session.
#[derive(Default)]
pub struct Slot(Mutex<Option<Arc<Target>>>);

impl Slot {
    /// The node connection the session is using now (`None`: none); shared with the
    /// connection, so a transaction's start copies no address.
    pub fn set(&self, target: Option<Arc<Target>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    fn get(&self) -> Option<Arc<Target>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Every session's key and slot.
#[derive(Default)]
pub struct Cancels {
    /// By the proxy's process id of the session; locked when a session starts or ends
    /// and for a cancel request.
    sessions: Mutex<HashMap<i32, (i32, Arc<Slot>)>>,
}

impl Cancels {
    /// A session started with this key: its slot.
    pub fn register(&self, pid: i32, key: i32) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.lock().insert(pid, (key, slot.clone()));
        slot
    }

    /// The session ended.
    pub fn remove(&self, pid: i32) {
        self.lock().remove(&pid);
    }

    /// Where a CancelRequest with this key goes, if anywhere.
    pub fn target(&self, pid: i32, key: i32) -> Option<Arc<Target>> {
        let slot = self
            .lock()
            .get(&pid)
            .filter(|(k, _)| *k == key)
            .map(|(_, slot)| slot.clone())?;
        slot.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (i32, Arc<Slot>)>> {
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
        let slot = c.register(7, 1234);
        assert_eq!(c.target(7, 1234), None, "no connection yet");
        let t = Target {
            addr: "127.0.0.1:5432".into(),
            pid: 99,
            key: 5,
        };
        let t = Arc::new(t);
        slot.set(Some(t.clone()));
        assert_eq!(c.target(7, 1234), Some(t.clone()));
        assert_eq!(c.target(7, 1235), None);
        assert_eq!(c.target(8, 1234), None);
        slot.set(None);
        assert_eq!(c.target(7, 1234), None);
        c.remove(7);
        slot.set(Some(t));
        assert_eq!(c.target(7, 1234), None, "gone sessions stay gone");
    }
}
