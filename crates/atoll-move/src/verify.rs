//! Comparing the two copies of a shard.
//!
//! Counting (or checksumming) a large shard takes time that a write pause cannot afford.
//! So by default the copies are compared at a frozen point *before* the cutover: a first,
//! brief write block (lock, wait until the destination applied everything, open a
//! repeatable-read snapshot on each side, release) pins two snapshots of the same logical
//! state; the comparison then runs on those snapshots while writes go on. What changes
//! afterwards reaches the destination as whole replicated transactions; the cutover's
//! tick proves they were applied (a worker that failed retried, it skipped nothing), and
//! the worker must not be failing (`apply_health.rs`).
//! `MoveOptions::verify_in_pause` compares inside the final pause instead (exact at the
//! switch point, but the pause grows with the shard).

use crate::context::MoveContext;
use crate::db::{ident, Db};
use crate::error::MoveError;
use crate::MoveEvent;
use atoll_core::move_plan::{compare_digests, TableDigest, VerifyMode};

pub(crate) async fn pre_verify(
    cx: &mut MoveContext<'_>,
    ticker: &Db,
    digest_sql: &str,
    tables: &[crate::ddl::TableInfo],
) -> Result<(), MoveError> {
    let shard = cx.shard();
    // Connected before the block, so the block is only lock + tick + two BEGINs.
    let src_snap = cx.src.reconnect(cx.config).await?;
    let dst_snap = cx.dst.reconnect(cx.config).await?;
    let (started, _, _) = crate::pause::freeze(cx, ticker).await?;
    let frozen = async {
        let begin = "begin isolation level repeatable read read only; select 1";
        let (a, b) = futures::join!(src_snap.exec(begin), dst_snap.exec(begin));
        a.and(b)
    };
    // Bounded like the final pause: a destination that stops answering here must not keep
    // the source's tables locked.
    let bound = cx.opts.pause_bound;
    let frozen = tokio::time::timeout(bound.saturating_sub(started.elapsed()), frozen)
        .await
        .unwrap_or_else(|_| {
            Err(MoveError::Timeout {
                shard,
                what: format!(
                    "freezing both copies for the comparison (island {} did not answer); writes resumed, resume the move once it answers",
                    dst_snap.island
                ),
                secs: bound.as_secs(),
            })
        });
    // Writes resume whatever happened.
    let released = cx.src.exec("rollback").await;
    frozen?;
    released?;
    cx.report.verify_block_ms = started.elapsed().as_secs_f64() * 1e3;
    cx.emit(MoveEvent::Note("comparing the copies".into()));
    let (s, d) = futures::join!(src_snap.one(digest_sql, &[]), dst_snap.one(digest_sql, &[]));
    let src_d = digests(tables, &s?, cx.rec.verify);
    let dst_d = digests(tables, &d?, cx.rec.verify);
    let mismatches = compare_digests(&src_d, &dst_d);
    if !mismatches.is_empty() {
        return Err(MoveError::VerifyFailed { shard, mismatches });
    }
    cx.report.tables = src_d;
    Ok(())
}

/// One row: per table its count (and with `Full` an md5 of its rows in key order).
pub(crate) fn digest_sql(
    schema: &str,
    tables: &[crate::ddl::TableInfo],
    mode: VerifyMode,
) -> String {
    let mut cols = Vec::new();
    for t in tables {
        let q = t.qualified(schema);
        cols.push(format!("(select count(*) from {q})"));
        if mode == VerifyMode::Full {
            let order = if t.pk.is_empty() {
                "x::text".to_string()
            } else {
                t.pk.iter()
                    .map(|c| format!("x.{}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            cols.push(format!(
                "(select md5(coalesce(string_agg(x::text, E'\\n' order by {order}), '')) from {q} x)"
            ));
        }
    }
    if cols.is_empty() {
        cols.push("0::int8".into());
    }
    format!("select {}", cols.join(", "))
}

pub(crate) fn digests(
    tables: &[crate::ddl::TableInfo],
    row: &tokio_postgres::Row,
    mode: VerifyMode,
) -> Vec<TableDigest> {
    let per = if mode == VerifyMode::Full { 2 } else { 1 };
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| TableDigest {
            table: t.name.clone(),
            rows: row.get(i * per),
            checksum: (mode == VerifyMode::Full).then(|| row.get(i * per + 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::TableInfo;

    fn table(name: &str, pk: &[&str]) -> TableInfo {
        TableInfo {
            name: name.into(),
            pk: pk.iter().map(|s| s.to_string()).collect(),
            replident: if pk.is_empty() { 'f' } else { 'd' },
        }
    }

    #[test]
    fn counts_are_one_row_with_a_column_per_table() {
        let t = [table("items", &["id"]), table("loose", &[])];
        let sql = digest_sql("sh0001", &t, VerifyMode::Counts);
        assert_eq!(
            sql,
            r#"select (select count(*) from "sh0001"."items"), (select count(*) from "sh0001"."loose")"#
        );
        assert_eq!(
            digest_sql("sh0001", &[], VerifyMode::Counts),
            "select 0::int8"
        );
    }

    #[test]
    fn checksums_order_by_the_primary_key_or_the_whole_row() {
        let t = [table("items", &["a", "b"]), table("loose", &[])];
        let sql = digest_sql("sh0001", &t, VerifyMode::Full);
        assert!(sql.contains(r#"order by x."a", x."b""#), "{sql}");
        assert!(sql.contains("order by x::text"), "{sql}");
        assert_eq!(sql.matches("md5(").count(), 2);
    }
}
