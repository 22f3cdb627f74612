//! A server's timeline as its control file (`pg_control`) records it, and catching that
//! record up. The control file names the timeline of the last checkpoint (on a replica,
//! the last restartpoint). After a promotion it keeps the old timeline until the next
//! checkpoint, which PostgreSQL spreads over minutes. Two readers need it current:
//! PostgreSQL 15's pg_rewind, which takes the source's timeline from it (a rewind from a
//! master that has not checkpointed since its promotion leaves the target unable to start:
//! "requested timeline N does not contain minimum recovery point … on timeline M"), and
//! the election, which cannot see a replica's timeline once its WAL receiver has stopped.

use crate::error::AgentError;
use atoll_core::NodeConfig;
use std::time::Duration;

/// The timeline a server works on (a master: the one it writes; a replica: the one its
/// WAL receiver streams, 0 when none streams) and the one its control file names.
const TIMELINES_SQL: &str = "select
    case when pg_is_in_recovery()
         then coalesce((select received_tli from pg_stat_wal_receiver where status = 'streaming'), 0)::int8
         else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 end,
    (select timeline_id from pg_control_checkpoint())::int8";

/// Whether `node`'s control file lags behind its timeline, after a `CHECKPOINT` when it
/// did (on a replica a restartpoint, which catches up only once the master's first
/// checkpoint on the new timeline has been replayed). `timeout` bounds the connection;
/// the checkpoint itself may take as long as the server needs.
pub async fn catch_up(node: &NodeConfig, timeout: Duration) -> Result<Lag, AgentError> {
    let c = atoll_pg::connect_as(node, "atoll-agent", timeout).await?;
    let read = || async {
        let r = c
            .query_one(TIMELINES_SQL, &[])
            .await
            .map_err(|e| AgentError::query(node, e))?;
        Ok::<_, AgentError>(Lag::of(r.get(0), r.get(1)))
    };
    if read().await? == Lag::Current {
        return Ok(Lag::Current);
    }
    tracing::info!(%node, "the control file names an older timeline: checkpointing");
    c.batch_execute("checkpoint")
        .await
        .map_err(|e| AgentError::query(node, e))?;
    read().await
}

/// Whether a control file names the timeline the server works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// It does (or the server streams from nobody, so there is nothing to compare with).
    Current,
    /// It names `control` while the server works on `timeline`.
    Behind {
        /// The timeline the server works on.
        timeline: u32,
        /// The one its control file names.
        control: u32,
    },
}

impl Lag {
    fn of(timeline: i64, control: i64) -> Lag {
        if control >= timeline {
            Lag::Current
        } else {
            Lag::Behind {
                timeline: timeline as u32,
                control: control as u32,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lag;

    #[test]
    fn a_replica_streaming_from_nobody_is_current() {
        assert_eq!(Lag::of(0, 3), Lag::Current);
        assert_eq!(Lag::of(3, 3), Lag::Current);
        assert_eq!(
            Lag::of(4, 3),
            Lag::Behind {
                timeline: 4,
                control: 3
            }
        );
    }
}
