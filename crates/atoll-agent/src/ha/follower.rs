//! What a node that does not lead changes to follow the leader: a writable server is
//! demoted and rejoined; a replica streaming under the wrong name is renamed (a reload); a
//! replica streaming from elsewhere, or from nowhere, is repointed (a reload; a rejoin
//! with pg_rewind when it cannot follow); a stopped server is rejoined.

use super::local::{self, Local};
use super::HaHandle;
use crate::error::AgentError;
use crate::follow;
use crate::pg_tools::PgTools;
use atoll_core::ha::standby_name;
use atoll_core::NodeConfig;
use std::path::Path;
use std::time::Duration;

/// The change a follower needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follow {
    /// Writable while another node leads: stop it, rejoin.
    Demote,
    /// Streams from the leader without its replication name.
    Rename,
    /// In recovery but not streaming from the leader.
    Repoint,
    /// Not running.
    Rejoin,
}

impl Follow {
    /// What `local` needs to follow `master`, if anything.
    pub(super) fn needed(
        local: &Local,
        master: &NodeConfig,
        dir: &Path,
        me: &str,
    ) -> Option<Follow> {
        match local {
            Local::Up(f) if !f.in_recovery => Some(Follow::Demote),
            Local::Up(f) if f.upstream.as_deref() == Some(master.addr().as_str()) => {
                (!follow::configured_for(dir, master, me)).then_some(Follow::Rename)
            }
            Local::Up(_) => Some(Follow::Repoint),
            Local::Down => Some(Follow::Rejoin),
            Local::Unresponsive => None,
        }
    }

    pub(super) async fn run(
        self,
        h: &HaHandle,
        tools: &PgTools,
        dir: &Path,
        master: &NodeConfig,
    ) -> Result<(), AgentError> {
        let cfg = &h.cfg;
        let me = cfg.node.addr();
        match self {
            Follow::Demote => {
                tracing::warn!(leader = %master.addr(), "writable while another node leads: demoting and rejoining");
                metrics::counter!("atoll_agent_ha_demotions_total").increment(1);
                local::stop_within(tools, dir, h.ha.demote_margin()).await?;
                follow::rejoin(cfg, tools, dir, master, follow::Stopped::Unknown)
                    .await
                    .map(drop)
            }
            Follow::Rename => {
                follow::configure(dir, master, &me, None)?;
                reload(h).await
            }
            Follow::Repoint => {
                // A leader that does not answer yet (promoting, or dead before its lease
                // ran out) is not worth a restart.
                let slot = standby_name(&me);
                follow::ensure_slot(cfg, master, &slot).await?;
                tracing::info!(leader = %master.addr(), "repointing to the leader");
                follow::configure(dir, master, &me, Some(&slot))?;
                reload(h).await?;
                if follow::streams_from(cfg, master, Duration::from_secs(10)).await {
                    return Ok(());
                }
                local::stop_within(tools, dir, h.ha.demote_margin()).await?;
                follow::rejoin(cfg, tools, dir, master, follow::Stopped::Unknown)
                    .await
                    .map(drop)
            }
            Follow::Rejoin => {
                tracing::info!(leader = %master.addr(), "server down: rejoining the leader");
                follow::rejoin(cfg, tools, dir, master, follow::Stopped::Unknown)
                    .await
                    .map(drop)
            }
        }
    }
}

async fn reload(h: &HaHandle) -> Result<(), AgentError> {
    let cfg = &h.cfg;
    let c = atoll_pg::connect_as(&cfg.node, "atoll-agent-ha", cfg.cluster.connect_timeout).await?;
    c.batch_execute("select pg_reload_conf()")
        .await
        .map_err(|e| AgentError::query(&cfg.node, e))
}
