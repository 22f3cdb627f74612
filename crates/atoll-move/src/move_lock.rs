//! The move lock of a shard ([`atoll_pg::locks::move_of`]), held on a dedicated
//! connection to the source master by whatever starts, resumes or aborts its move.

use crate::db::Db;
use crate::error::MoveError;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};

/// How long a held move lock is tried again before refusing: the session of a process
/// killed a moment ago ends on the server a little after the process does.
const MOVE_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the shard's move lock ([`atoll_pg::locks::move_of`]) on the source master on a dedicated connection; the lock
/// lasts as long as the returned connection. Refuses if another session still holds it
/// after [`MOVE_LOCK_GRACE`].
pub(crate) async fn hold_move_lock(
    config: &Config,
    snapshot: &Snapshot,
    source: IslandId,
    shard: ShardNo,
) -> Result<Db, MoveError> {
    let db = Db::connect(config, snapshot, source).await?;
    let deadline = std::time::Instant::now() + MOVE_LOCK_GRACE;
    loop {
        if atoll_pg::locks::try_take(&db.client, &db.node, atoll_pg::locks::move_of(shard)).await? {
            return Ok(db);
        }
        if std::time::Instant::now() >= deadline {
            return Err(MoveError::Busy { shard });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
