//! Sequence positions across a move: read on the source inside the pause and set on the
//! destination past every value the source handed out, in each sequence's own direction
//! and within its bounds; a sequence with no room left is refused before the move starts.

use crate::db::{ident, literal, Db};
use crate::error::MoveError;
use atoll_core::ShardNo;

/// How far (in values) a sequence is set past the source's position, at most: `nextval`
/// is not blocked by the table lock, so an `id_gen()` call between the read and the
/// pause's commit must not hand the same value out again on the destination. The ID space
/// is 10^13 per shard (`atoll_core::Id::SEQUENCE_MAX`), so a move costs 10^-7 of it. Never
/// more than half the room a sequence has left (a `smallserial` near its end keeps room).
pub(crate) const SEQUENCE_MARGIN: i64 = 1_000_000;

/// One row per sequence of `seqs` in `schema`: name, last_value, is_called, increment,
/// min, max; `None` without sequences.
pub(crate) fn read_sql(schema: &str, seqs: &[String]) -> Option<String> {
    if seqs.is_empty() {
        return None;
    }
    Some(
        seqs.iter()
            .map(|s| {
                let q = format!("{}.{}", ident(schema), ident(s));
                format!(
                    "select {}::text, s.last_value, s.is_called, q.seqincrement, q.seqmin, q.seqmax
                       from {q} s, pg_catalog.pg_sequence q where q.seqrelid = {}::regclass",
                    literal(s),
                    literal(&q)
                )
            })
            .collect::<Vec<_>>()
            .join(" union all "),
    )
}

/// The value to `setval(.., true)` on the destination: past the last value the source
/// handed out by [`SEQUENCE_MARGIN`] (at most half the room left) in the sequence's
/// direction, within `min..=max`.
pub(crate) fn target(last: i64, is_called: bool, increment: i64, min: i64, max: i64) -> i64 {
    let (last, inc, min, max) = (last as i128, increment as i128, min as i128, max as i128);
    // What the next nextval would return is last (not called) or last + inc (called).
    let handed = if is_called { last } else { last - inc };
    let room = if inc > 0 { max - handed } else { handed - min };
    let margin = (SEQUENCE_MARGIN as i128).min(room / 2).max(0);
    let t = if inc > 0 {
        handed + margin
    } else {
        handed - margin
    };
    // In range by construction of `margin`; clamped for a `handed` outside it (a
    // sequence never called, whose start is its bound).
    t.clamp(min, max) as i64
}

/// The `setval` statements for the rows of [`read_sql`].
pub(crate) fn set_sql(schema: &str, rows: &[tokio_postgres::Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let name: String = r.get(0);
        let t = target(r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let seq = literal(&format!("{}.{}", ident(schema), ident(&name)));
        out.push_str(&format!("select pg_catalog.setval({seq}, {t}, true);"));
    }
    out
}

/// Refuses a shard with a sequence that cannot hand out another value (not cycling, at
/// its bound): the destination could not continue it either.
pub(crate) async fn check_room(shard: ShardNo, src: &Db) -> Result<(), MoveError> {
    let full: Vec<String> = src
        .query(
            "select sequencename::text from pg_catalog.pg_sequences
              where schemaname = $1 and not cycle and last_value is not null
                and ((increment_by > 0 and last_value::numeric + increment_by > max_value)
                  or (increment_by < 0 and last_value::numeric + increment_by < min_value))
              order by 1",
            &[&shard.schema()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if full.is_empty() {
        return Ok(());
    }
    Err(MoveError::Unsafe {
        shard,
        check: "sequence_exhausted",
        detail: format!(
            "sequence(s) {} reached their bound and do not cycle; raise their maxvalue (or minvalue) first",
            full.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_goes_past_the_source_by_the_margin() {
        assert_eq!(target(41, true, 1, 1, i64::MAX), 41 + SEQUENCE_MARGIN);
        // Not called yet: 41 is still to come, so 40 is what was handed out.
        assert_eq!(target(41, false, 1, 1, i64::MAX), 40 + SEQUENCE_MARGIN);
    }

    #[test]
    fn descending_goes_down() {
        assert_eq!(target(-10, true, -1, i64::MIN, -1), -10 - SEQUENCE_MARGIN);
        assert_eq!(target(100, true, -5, 1, 1000), 100 - 49);
    }

    #[test]
    fn a_small_sequence_keeps_room() {
        // smallserial near its end: the margin shrinks to half the room left.
        let t = target(32_700, true, 1, 1, 32_767);
        assert_eq!(t, 32_733);
        assert!(t < 32_767, "the next insert still gets a value");
        // One value left: no margin, the next nextval returns the last value.
        assert_eq!(target(32_766, true, 1, 1, 32_767), 32_766);
        // A sequence never called stays within its bounds.
        assert_eq!(target(1, false, 1, 1, 10), 5);
    }
}
