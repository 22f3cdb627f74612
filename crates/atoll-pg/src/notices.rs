//! Listening for shard notices ([`atoll_core::ShardNotice`]): one `LISTEN atoll_shards`
//! connection per island master, reconnected with backoff, moved to the new master when
//! the caller says the master changed ([`ShardNotices::follow`]). What arrives is handed
//! to a callback as [`NoticeEvent`]s; the caller owns the snapshot and decides (the
//! client applies notices to its snapshot and rediscovers on `Listening`; a proxy or
//! router would do the same with its own).
//!
//! Notices sent while a connection was down are lost (NOTIFY keeps nothing for a listener
//! that is not there), so every `Listening` event means "rediscover now".

use crate::connect::pg_config;
use crate::error::describe;
use atoll_core::shard_notice::CHANNEL;
use atoll_core::{IslandId, NodeConfig, ShardNotice};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

/// What a listener reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NoticeEvent {
    /// `LISTEN` is in place on the island's master, for the first time or after a
    /// reconnect: notices sent before may have been missed, so rediscover.
    Listening {
        /// The island listened to.
        island: IslandId,
        /// `host:port` of its master.
        addr: String,
    },
    /// Notices from the island's master, in commit order (all that had arrived together).
    Notices(Vec<ShardNotice>),
    /// Something on the channel this build cannot read (a newer payload version, or a
    /// notice naming another island than the one listened to): rediscover.
    Unreadable {
        /// The island it came from.
        island: IslandId,
        /// Why it was not read.
        reason: String,
    },
    /// The connection to the island's master ended (or never started); it is retried after
    /// a backoff.
    Lost {
        /// The island whose listener lost its connection.
        island: IslandId,
        /// Why.
        error: String,
    },
}

/// Receives [`NoticeEvent`]s; called from the listeners' tasks, must not block.
pub type NoticeSink = Arc<dyn Fn(NoticeEvent) + Send + Sync>;

/// How listeners connect and how they notice a dead connection.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// `application_name` of the listening sessions (no secrets: `pg_stat_activity` shows it).
    pub application_name: String,
    /// Bound on connecting, on `LISTEN`, and on each ping.
    pub connect_timeout: Duration,
    /// How often an idle connection is pinged, so one that died silently (a dropped idle
    /// connection, a frozen master) is noticed and replaced.
    pub ping_every: Duration,
    /// First wait before a reconnect; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest wait between reconnects.
    pub backoff_max: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            application_name: "atoll notices".into(),
            connect_timeout: Duration::from_secs(2),
            ping_every: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// One listener per island master; dropping it stops them all.
pub struct ShardNotices {
    options: ListenOptions,
    sink: NoticeSink,
    /// Per island: the master's address listened to, and its task.
    tasks: HashMap<IslandId, (String, JoinHandle<()>)>,
}

impl ShardNotices {
    /// No listener yet: [`ShardNotices::follow`] starts them.
    pub fn new(options: ListenOptions, sink: NoticeSink) -> ShardNotices {
        ShardNotices {
            options,
            sink,
            tasks: HashMap::new(),
        }
    }

    /// Listens on these islands' masters: starts a listener for an island new here or
    /// whose master changed (stopping the old one), keeps one whose master is `None` (not
    /// known right now: its connection decides), and stops those of islands not listed.
    /// Must be called inside a tokio runtime.
    pub fn follow(&mut self, masters: &[(IslandId, Option<NodeConfig>)]) {
        self.tasks.retain(|island, (_, task)| {
            let keep = masters.iter().any(|(i, _)| i == island);
            if !keep {
                task.abort();
            }
            keep
        });
        for (island, node) in masters {
            let Some(node) = node else { continue };
            let addr = node.addr();
            if self.tasks.get(island).is_some_and(|(a, _)| *a == addr) {
                continue;
            }
            let task = tokio::spawn(listen(
                *island,
                node.clone(),
                self.options.clone(),
                self.sink.clone(),
            ));
            if let Some((_, old)) = self.tasks.insert(*island, (addr, task)) {
                old.abort();
            }
        }
    }

    /// The islands listened to (or being connected to), with their masters' addresses.
    pub fn islands(&self) -> Vec<(IslandId, String)> {
        let mut v: Vec<_> = self
            .tasks
            .iter()
            .map(|(i, (a, _))| (*i, a.clone()))
            .collect();
        v.sort();
        v
    }
}

impl Drop for ShardNotices {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

/// One island's listener: sessions one after another, with backoff in between.
async fn listen(island: IslandId, node: NodeConfig, opts: ListenOptions, sink: NoticeSink) {
    let mut backoff = opts.backoff_initial;
    loop {
        let started = Instant::now();
        let error = session(island, &node, &opts, &sink).await;
        sink(NoticeEvent::Lost { island, error });
        // A session that lasted is not part of a run of failures.
        if started.elapsed() > opts.backoff_max * 4 {
            backoff = opts.backoff_initial;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

/// Aborts the connection's driver task when the session ends (or is dropped).
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A notification's payload, or why the connection ended.
type Message = Result<String, String>;

/// Drives the connection in a task of its own, which passes the channel's notifications on
/// (and, last, why the connection ended).
fn drive<T>(
    mut connection: tokio_postgres::Connection<tokio_postgres::Socket, T>,
) -> (Driver, mpsc::UnboundedReceiver<Message>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let message = futures::future::poll_fn(|cx| connection.poll_message(cx)).await;
            let end = match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == CHANNEL {
                        let _ = tx.send(Ok(n.payload().to_string()));
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => describe(&e),
                None => "connection closed".to_string(),
            };
            let _ = tx.send(Err(end));
            return;
        }
    });
    (Driver(task), rx)
}

/// Connects, listens and forwards notices until the connection fails; returns why.
async fn session(
    island: IslandId,
    node: &NodeConfig,
    opts: &ListenOptions,
    sink: &NoticeSink,
) -> String {
    let bound = opts.connect_timeout;
    let cfg = match pg_config(node, &opts.application_name, bound) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let (client, connection) = match crate::connect::open(node, &cfg, bound).await {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    let (_driver, mut rx) = drive(connection);
    let listen_sql = format!("listen {}", atoll_core::quote::ident(CHANNEL));
    match tokio::time::timeout(bound, client.batch_execute(&listen_sql)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return describe(&e),
        Err(_) => return format!("LISTEN got no answer within {bound:?}"),
    }
    sink(NoticeEvent::Listening {
        island,
        addr: node.addr(),
    });
    let mut ping = tokio::time::interval(opts.ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            first = rx.recv() => {
                let mut batch = Vec::new();
                let mut next = first;
                // Everything that arrived together goes out as one batch.
                loop {
                    match next {
                        Some(Ok(payload)) => batch.push(payload),
                        Some(Err(e)) => { deliver(island, batch, sink); return e; }
                        None => { deliver(island, batch, sink); return "connection closed".into(); }
                    }
                    match rx.try_recv() {
                        Ok(m) => next = Some(m),
                        Err(_) => break,
                    }
                }
                deliver(island, batch, sink);
            }
            _ = ping.tick() => {
                match tokio::time::timeout(bound, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return describe(&e),
                    Err(_) => return format!("no answer to a ping within {bound:?}"),
                }
            }
        }
    }
}

/// Parses a batch of payloads from `island` and hands them on: the notices together, and
/// one `Unreadable` for the first payload that is not a notice of this island.
fn deliver(island: IslandId, payloads: Vec<String>, sink: &NoticeSink) {
    let mut notices = Vec::new();
    let mut unreadable = None;
    for p in payloads {
        match ShardNotice::parse(&p) {
            Ok(n) if n.island == island => notices.push(n),
            Ok(n) => {
                unreadable.get_or_insert(format!(
                    "a notice from island {island}'s master names island {}",
                    n.island
                ));
            }
            Err(e) => {
                unreadable.get_or_insert(e.to_string());
            }
        }
    }
    if !notices.is_empty() {
        sink(NoticeEvent::Notices(notices));
    }
    if let Some(reason) = unreadable {
        sink(NoticeEvent::Unreadable { island, reason });
    }
}
