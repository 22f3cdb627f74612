//! Making this node a replica of a master: the standby settings written into the data
//! directory (`standby.signal`, one `primary_conninfo` and `primary_slot_name`), a slot on
//! the master, and the rejoin of a stopped server (started as a replica; pg_rewind when it
//! cannot follow). Shared by `node.switchover` and automated failover (`ha/`).

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::pg_tools::{replace_file, PgTools};
use crate::timeline::{self, Lag};
use atoll_core::ha::standby_name;
use atoll_core::NodeConfig;
use std::path::Path;
use std::time::Duration;

/// How long a (re)started replica gets to stream before pg_rewind is tried.
const STREAM_WAIT: Duration = Duration::from_secs(15);

/// Configuration files that may live in a data directory and that pg_rewind would
/// overwrite with the master's.
const CONFIG_FILES: [&str; 4] = [
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];

/// The marker comment above the settings atoll writes (older agents wrote the second).
const MARKERS: [&str; 2] = ["# atoll agent: upstream", "# atoll agent: node.switchover"];

/// Writes `standby.signal` and the settings to stream from `master` as `me` (its
/// replication name is the `application_name`), through `slot` (`None`: keep the slot
/// line already there). No password goes into the file: the server user's `~/.pgpass`
/// must hold one if replication needs it.
pub fn configure(
    dir: &Path,
    master: &NodeConfig,
    me: &str,
    slot: Option<&str>,
) -> Result<(), AgentError> {
    replace_file(&dir.join("standby.signal"), "")?;
    let auto = dir.join("postgresql.auto.conf");
    let old =
        std::fs::read_to_string(&auto).map_err(|e| AgentError::io("cannot read", &auto, e))?;
    let conninfo = conninfo(master, me);
    replace_file(&auto, &with_upstream(&old, &conninfo, slot))
}

/// The `primary_conninfo` of a replica `me` of `master`.
pub fn conninfo(master: &NodeConfig, me: &str) -> String {
    format!(
        "host={} port={} user={} application_name={}",
        master.host,
        master.port,
        master.user,
        standby_name(me)
    )
}

/// True when the data directory's settings already stream from `master` as `me`.
pub fn configured_for(dir: &Path, master: &NodeConfig, me: &str) -> bool {
    let want = atoll_core::quote::literal(&conninfo(master, me));
    std::fs::read_to_string(dir.join("postgresql.auto.conf")).is_ok_and(|t| {
        t.lines().any(|l| {
            l.trim_start()
                .strip_prefix("primary_conninfo")
                .is_some_and(|r| r.trim_start().trim_start_matches('=').trim() == want)
        })
    }) && dir.join("standby.signal").exists()
}

/// `postgresql.auto.conf`'s text with one upstream: earlier `primary_conninfo` (and
/// `primary_slot_name` when `slot` is given) lines and our marker comments replaced, so
/// repeated switchovers and failovers do not pile them up.
pub fn with_upstream(old: &str, conninfo: &str, slot: Option<&str>) -> String {
    let setting = |l: &str, k: &str| {
        l.trim_start()
            .strip_prefix(k)
            .is_some_and(|r| r.trim_start().starts_with('='))
    };
    let replaced = |l: &str| {
        setting(l, "primary_conninfo")
            || (slot.is_some() && setting(l, "primary_slot_name"))
            || MARKERS.contains(&l.trim())
    };
    let mut out: String = old
        .lines()
        .filter(|l| !replaced(l))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!(
        "{}\nprimary_conninfo = {}\n",
        MARKERS[0],
        atoll_core::quote::literal(conninfo)
    ));
    if let Some(s) = slot {
        out.push_str(&format!(
            "primary_slot_name = {}\n",
            atoll_core::quote::literal(s)
        ));
    }
    out
}

/// Creates the physical slot `slot` on `master` unless it exists.
pub async fn ensure_slot(
    cfg: &AgentConfig,
    master: &NodeConfig,
    slot: &str,
) -> Result<(), AgentError> {
    let c = atoll_pg::connect_as(master, "atoll-agent", cfg.cluster.connect_timeout).await?;
    c.execute(
        "select pg_create_physical_replication_slot($1, true)
         where not exists (select 1 from pg_replication_slots where slot_name = $1)",
        &[&slot],
    )
    .await
    .map_err(|e| AgentError::query(master, e))?;
    Ok(())
}

/// Waits up to `timeout` for this node's WAL receiver to stream from `master`, steadily: the
/// same receiver still streaming a second later. A replica that cannot follow (it has WAL
/// past the master's timeline fork) connects and is dropped again and again, and would
/// otherwise pass for a streaming one.
pub async fn streams_from(cfg: &AgentConfig, master: &NodeConfig, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(pid) = receiver(cfg, master).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if receiver(cfg, master).await == Some(pid) {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pid of this node's WAL receiver when it streams from `master`.
async fn receiver(cfg: &AgentConfig, master: &NodeConfig) -> Option<i32> {
    let port = i32::from(master.port);
    let c = atoll_pg::connect_as(&cfg.node, "atoll-agent", cfg.cluster.connect_timeout)
        .await
        .ok()?;
    c.query_opt(
        "select pid from pg_stat_wal_receiver where status = 'streaming' and sender_port = $1",
        &[&port],
    )
    .await
    .ok()?
    .map(|r| r.get(0))
}

/// How a rejoining node was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// By a switchover's fast shutdown, whose last checkpoint the new master replayed: it
    /// has nothing the master lacks and starts as a replica at once (pg_rewind only if it
    /// then does not stream).
    Handover,
    /// Anyhow else (a crash, a kill, a demotion): it may hold WAL past the master's fork.
    Unknown,
}

/// How a stopped node became a replica again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejoined {
    /// It started as a replica and streamed (pg_rewind, if it ran, changed nothing).
    Streamed,
    /// pg_rewind rewound it.
    Rewound,
    /// pg_rewind failed or did not help: its data directory was moved aside and it was
    /// copied anew with pg_basebackup.
    Recloned,
}

/// Turns the stopped server in `dir` into a streaming replica of `master`: a slot on the
/// master, pg_rewind (which changes nothing when the node has no WAL the master lacks),
/// the settings, a start; when pg_rewind fails or the node still does not stream, a new
/// copy (the old directory is kept beside it). After anything but a handover pg_rewind
/// comes first: a node started as a standby with WAL past the master's timeline fork
/// replays it, and then neither starts on the new timeline nor is rewound.
pub async fn rejoin(
    cfg: &AgentConfig,
    tools: &PgTools,
    dir: &Path,
    master: &NodeConfig,
    stopped: Stopped,
) -> Result<Rejoined, AgentError> {
    let me = cfg.node.addr();
    let slot = standby_name(&me);
    finish_copy(dir)?;
    ensure_slot(cfg, master, &slot).await?;
    if stopped == Stopped::Handover {
        configure(dir, master, &me, Some(&slot))?;
        tools.start(dir).await?;
        if streams_from(cfg, master, STREAM_WAIT).await {
            return Ok(Rejoined::Streamed);
        }
    }
    tools.stop(dir, "fast").await?;
    // PostgreSQL 15's pg_rewind takes the source's timeline from its control file. A
    // master that cannot be read or checkpointed is no reason to replace this node's data.
    if let Lag::Behind { timeline, control } =
        timeline::catch_up(master, cfg.cluster.connect_timeout).await?
    {
        return Err(AgentError::Unexpected(format!(
            "{master}'s control file names timeline {control} after a checkpoint on timeline {timeline}"
        )));
    }
    let own = own_config(dir);
    match rewind(cfg, tools, dir, master).await {
        Ok(rewound) => {
            restore_config(dir, &own)?;
            configure(dir, master, &me, Some(&slot))?;
            match tools.start(dir).await {
                Ok(()) if streams_from(cfg, master, STREAM_WAIT).await => {
                    return Ok(if rewound {
                        Rejoined::Rewound
                    } else {
                        Rejoined::Streamed
                    });
                }
                Ok(()) => tracing::warn!(node = %cfg.node, %master, "no streaming after pg_rewind"),
                Err(e) => tracing::warn!(node = %cfg.node, error = %e, "no start after pg_rewind"),
            }
            tools.stop(dir, "immediate").await?;
        }
        Err(e) => tracing::warn!(node = %cfg.node, error = %e, "pg_rewind failed"),
    }
    reclone(cfg, tools, dir, master, &slot, &own).await?;
    Ok(Rejoined::Recloned)
}

/// pg_rewind of the stopped server in `dir` from `master`; true when it rewound.
async fn rewind(
    cfg: &AgentConfig,
    tools: &PgTools,
    dir: &Path,
    master: &NodeConfig,
) -> Result<bool, AgentError> {
    // pg_rewind first finishes an interrupted recovery in single-user mode, which refuses
    // to run as a standby: the signal file goes now and comes back with `configure`.
    for signal in ["standby.signal", "recovery.signal"] {
        match std::fs::remove_file(dir.join(signal)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(AgentError::io("cannot remove", dir.join(signal), e));
            }
            _ => {}
        }
    }
    let said = tools.rewind(dir, master).await?;
    let rewound = !said.contains("no rewind required");
    if rewound {
        tracing::warn!(node = %cfg.node, %master, "rewound with pg_rewind");
    }
    Ok(rewound)
}

/// Copies `master` anew beside the data directory, with this node's own configuration,
/// then swaps the copy in and keeps the old directory aside (`<dir>.replaced-<ms>`) for
/// the operator to remove. A kill at any point leaves either the old directory in place
/// (a partial copy is removed on the next try) or a finished copy that the next rejoin
/// puts in place ([`finish_copy`]).
async fn reclone(
    cfg: &AgentConfig,
    tools: &PgTools,
    dir: &Path,
    master: &NodeConfig,
    slot: &str,
    own: &[(&str, String)],
) -> Result<(), AgentError> {
    let copy = sibling(dir, "atoll-copy");
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| AgentError::io("cannot remove", &copy, e))?;
    }
    tracing::warn!(node = %cfg.node, %master, "pg_rewind did not help: copying the master anew");
    tools.base_backup(master, &copy, slot).await?;
    restore_config(&copy, own)?;
    configure(&copy, master, &cfg.node.addr(), Some(slot))?;
    replace_file(&copy.join(COPY_DONE), "")?;
    let aside = sibling(dir, &format!("replaced-{}", crate::queue::now_ms()));
    std::fs::rename(dir, &aside).map_err(|e| AgentError::io("cannot move aside", dir, e))?;
    tracing::warn!(aside = %aside.display(), "the old data directory is kept aside");
    finish_copy(dir)?;
    tools.start(dir).await?;
    if streams_from(cfg, master, STREAM_WAIT).await {
        Ok(())
    } else {
        Err(AgentError::Unexpected(format!(
            "{} does not stream from {master} after a new copy",
            cfg.node
        )))
    }
}

/// Marks a finished copy (removed once it is in place).
const COPY_DONE: &str = "atoll-copy-done";

/// Puts a finished copy in place of a data directory that is gone (moved aside by a
/// [`reclone`] that was killed before the swap).
fn finish_copy(dir: &Path) -> Result<(), AgentError> {
    let copy = sibling(dir, "atoll-copy");
    if dir.exists() || !copy.join(COPY_DONE).exists() {
        return Ok(());
    }
    std::fs::rename(&copy, dir).map_err(|e| AgentError::io("cannot move into place", &copy, e))?;
    std::fs::remove_file(dir.join(COPY_DONE))
        .map_err(|e| AgentError::io("cannot remove", dir.join(COPY_DONE), e))
}

/// `<dir>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.{suffix}"))
}

/// This node's own configuration files: pg_rewind and pg_basebackup copy the master's
/// (its port and settings with them) over them.
fn own_config(dir: &Path) -> Vec<(&'static str, String)> {
    CONFIG_FILES
        .iter()
        .filter_map(|f| Some((*f, std::fs::read_to_string(dir.join(f)).ok()?)))
        .collect()
}

fn restore_config(dir: &Path, own: &[(&str, String)]) -> Result<(), AgentError> {
    for (f, text) in own {
        replace_file(&dir.join(f), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_upstream;

    #[test]
    fn one_upstream_however_many_switchovers() {
        let base = "# Do not edit this file manually!\nwork_mem = '8MB'\nprimary_conninfo = 'host=a'\n# atoll agent: node.switchover\n";
        let once = with_upstream(base, "host=b port=1", Some("s1"));
        let twice = with_upstream(&once, "host=c port=2", Some("s2"));
        assert_eq!(twice.matches("primary_conninfo").count(), 1, "{twice}");
        assert_eq!(twice.matches("primary_slot_name").count(), 1, "{twice}");
        assert_eq!(twice.matches("# atoll agent").count(), 1, "{twice}");
        assert!(twice.contains("work_mem = '8MB'\n"), "{twice}");
        assert!(
            twice.contains("primary_conninfo = 'host=c port=2'"),
            "{twice}"
        );
        assert!(twice.ends_with("primary_slot_name = 's2'\n"), "{twice}");
    }

    #[test]
    fn the_slot_line_stays_when_none_is_given() {
        let base = "primary_conninfo = 'host=a'\nprimary_slot_name = 'keep'\n";
        let t = with_upstream(base, "host=b", None);
        assert!(t.contains("primary_slot_name = 'keep'"), "{t}");
        assert!(t.contains("primary_conninfo = 'host=b'"), "{t}");
        assert_eq!(t.matches("primary_conninfo").count(), 1, "{t}");
    }
}
