//! What failover needs of the local server, each step bounded: its facts (role, WAL
//! position, timeline, upstream), promotion, making it writable, and the two fences: a
//! demotion (fast shutdown, restart as a replica without a master) and a kill of every
//! process of a server that no longer answers.

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::pg_tools::PgTools;
use atoll_core::ha::MemberRole;
use atoll_core::{Lsn, NodeConfig};
use std::path::Path;
use std::time::Duration;
use tokio_postgres::Client;

/// The local server as one loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// It answered.
    Up(Facts),
    /// It refused the connection or is starting or stopping.
    Down,
    /// It did not answer in time (frozen, overloaded).
    Unresponsive,
}

/// What an answering server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// In recovery: a replica (or a demoted master).
    pub in_recovery: bool,
    /// WAL written (master) or the furthest received or replayed (replica).
    pub position: u64,
    /// The current timeline. A replica's is the one its WAL receiver streams, or, when
    /// none streams, the newest its control file names (`timeline.rs`). Not the segment
    /// files in `pg_wal`: a replica that cannot switch to a new timeline fetches its files
    /// all the same, and must not pass for one that follows it.
    pub timeline: u32,
    /// The timeline of the last checkpoint (restartpoint) in the control file.
    pub control_timeline: u32,
    /// `host:port` its WAL receiver streams from.
    pub upstream: Option<String>,
    /// Age of the last replayed commit (replicas).
    pub replay_age_ms: Option<u64>,
    /// `default_transaction_read_only` is on (a fenced master).
    pub read_only: bool,
}

impl Local {
    /// The role published in the member record.
    pub fn role(&self) -> MemberRole {
        match self {
            Local::Up(f) if !f.in_recovery => MemberRole::Master,
            Local::Up(_) => MemberRole::Replica,
            _ => MemberRole::Down,
        }
    }

    /// The facts when it answered.
    pub fn facts(&self) -> Option<&Facts> {
        match self {
            Local::Up(f) => Some(f),
            _ => None,
        }
    }
}

const FACTS_SQL: &str = "select pg_is_in_recovery(),
    case when pg_is_in_recovery()
         then greatest(coalesce(pg_last_wal_receive_lsn(), '0/0'), coalesce(pg_last_wal_replay_lsn(), '0/0'))
         else pg_current_wal_lsn() end::text,
    case when pg_is_in_recovery()
         then greatest(coalesce((select received_tli from pg_stat_wal_receiver where status = 'streaming'), 0),
                       (select timeline_id from pg_control_checkpoint()),
                       (select min_recovery_end_timeline from pg_control_recovery()))
         else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end::int8,
    (select sender_host || ':' || sender_port from pg_stat_wal_receiver where status = 'streaming'),
    case when pg_is_in_recovery()
         then (extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)::int8 end,
    current_setting('default_transaction_read_only') = 'on',
    (select timeline_id from pg_control_checkpoint())::int8";

/// Reads the facts of `node` within `timeout`.
pub async fn read(node: &NodeConfig, timeout: Duration) -> Local {
    let work = async {
        let c = atoll_pg::connect_as(node, "atoll-agent-ha", timeout)
            .await
            .ok()?;
        let r = c.query_one(FACTS_SQL, &[]).await.ok()?;
        Some(Facts {
            in_recovery: r.get(0),
            position: r
                .get::<_, Option<String>>(1)
                .as_deref()
                .and_then(Lsn::parse)
                .map_or(0, |l| l.0),
            timeline: r.get::<_, Option<i64>>(2).unwrap_or(0) as u32,
            upstream: r.get(3),
            replay_age_ms: r.get::<_, Option<i64>>(4).map(|a| a.max(0) as u64),
            read_only: r.get(5),
            control_timeline: r.get::<_, Option<i64>>(6).unwrap_or(0) as u32,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Some(f)) => Local::Up(f),
        Ok(None) => Local::Down,
        Err(_) => Local::Unresponsive,
    }
}

async fn connect(cfg: &AgentConfig, node: &NodeConfig) -> Result<Client, AgentError> {
    Ok(atoll_pg::connect_as(node, "atoll-agent-ha", cfg.cluster.connect_timeout).await?)
}

/// Promotes the local replica and waits for the end of recovery (at most 60 s).
pub async fn promote(cfg: &AgentConfig) -> Result<(), AgentError> {
    let c = connect(cfg, &cfg.node).await?;
    let done: bool = c
        .query_one("select pg_promote(true, 60)", &[])
        .await
        .map_err(|e| AgentError::query(&cfg.node, e))?
        .get(0);
    if done {
        Ok(())
    } else {
        Err(AgentError::Unexpected(format!(
            "{} did not finish its promotion within 60 s",
            cfg.node
        )))
    }
}

/// Undoes a read-only fence on the local master (the leader's server must take writes).
pub async fn make_writable(cfg: &AgentConfig) -> Result<(), AgentError> {
    let c = connect(cfg, &cfg.node).await?;
    // Separate statements: ALTER SYSTEM refuses the implicit transaction of a batch.
    for sql in [
        "alter system reset default_transaction_read_only",
        "select pg_reload_conf()",
    ] {
        c.batch_execute(sql)
            .await
            .map_err(|e| AgentError::query(&cfg.node, e))?;
    }
    Ok(())
}

/// Fences a master whose agent is gone but whose server still answers: new transactions
/// become read-only and every client session is ended. Best effort, within `timeout`;
/// true when `node` was a master that is now fenced.
pub async fn fence_remote(node: &NodeConfig, timeout: Duration) -> bool {
    let work = async {
        let c = atoll_pg::connect_as(node, "atoll-agent-ha", timeout)
            .await
            .ok()?;
        let in_recovery: bool = c
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .ok()?
            .get(0);
        if in_recovery {
            return Some(false);
        }
        for sql in [
            "alter system set default_transaction_read_only = on",
            "select pg_reload_conf()",
            "select pg_terminate_backend(pid) from pg_stat_activity
              where backend_type = 'client backend' and pid <> pg_backend_pid()",
        ] {
            c.batch_execute(sql).await.ok()?;
        }
        Some(true)
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Some(true)))
}

/// Stops writes on the local master now: a fast shutdown bounded by `within`, else a kill
/// of its processes; then a restart as a replica with no reachable master (read-only), so
/// the node can still be elected with everything it wrote.
pub async fn demote(tools: &PgTools, dir: &Path, within: Duration) -> Result<(), AgentError> {
    stop_within(tools, dir, within).await?;
    crate::pg_tools::replace_file(&dir.join("standby.signal"), "")?;
    tools.start(dir).await
}

/// A fast shutdown bounded by `within`; past it, or when it fails, a kill.
pub async fn stop_within(tools: &PgTools, dir: &Path, within: Duration) -> Result<(), AgentError> {
    match tokio::time::timeout(within, tools.stop(dir, "fast")).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "fast shutdown failed: killing the server");
            kill(dir).await
        }
        Err(_) => {
            tracing::warn!("fast shutdown too slow: killing the server");
            kill(dir).await
        }
    }
}

/// Kills (SIGKILL, which also ends a stopped process) the postmaster of `dir` and its
/// children, and waits until the postmaster is gone. A server that is not running is fine.
pub async fn kill(dir: &Path) -> Result<(), AgentError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid_file = dir.join("postmaster.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    else {
        return Ok(());
    };
    let mut victims = children_of(pid);
    victims.push(pid);
    for p in &victims {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    let gone = crate::pg_tools::wait_for(Duration::from_secs(10), || async {
        kill(Pid::from_raw(pid), None).is_err()
    })
    .await;
    if gone {
        Ok(())
    } else {
        Err(AgentError::Unexpected(format!(
            "postmaster {pid} of {} survived SIGKILL",
            dir.display()
        )))
    }
}

/// Pids whose parent is `parent` (from `/proc`).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // The fields after the parenthesised command: state, then the parent's pid.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}
