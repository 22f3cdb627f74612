//! The virtual `atoll` database, PgBouncer-style: a client that connects to database
//! `atoll` (same users and passwords) gets no node, only the proxy's own views, as rows:
//!
//! - `SHOW atoll.pools`: per node, connections leased, idle, and the limit;
//! - `SHOW atoll.shards`: every active shard, its island and that island's master;
//! - `SHOW atoll.holds`: transactions held through moves (under way, released, expired,
//!   first exchanges run again) and the recent hold times' p50, p99 and maximum.
//!
//! Anything else is refused (42601) and the session goes on.

use crate::frame::{read_frame, Frame, WireError, MAX_MESSAGE};
use crate::messages;
use crate::shared::Shared;
use bytes::BytesMut;
use tokio::io::{AsyncBufRead, AsyncWrite};

/// The database name that selects the admin views.
pub const DATABASE: &str = atoll_core::proxy_config::ADMIN_DATABASE;

/// A view's columns and rows.
type View = (Vec<&'static str>, Vec<Vec<Option<String>>>);

/// Answers the admin session's queries until the client leaves.
pub async fn serve<C: AsyncBufRead + AsyncWrite + Unpin>(
    client: &mut C,
    shared: &Shared,
) -> Result<(), WireError> {
    loop {
        let f = read_frame(client, MAX_MESSAGE).await?;
        let mut out = BytesMut::new();
        match f.tag {
            b'X' => return Ok(()),
            b'Q' => answer(&f, shared, &mut out)?,
            _ => messages::error(
                &mut out,
                false,
                "0A000",
                "the atoll admin database answers simple queries only (SHOW atoll.pools, SHOW atoll.shards, SHOW atoll.holds)",
            ),
        }
        messages::ready(&mut out, b'I');
        crate::frame::send(client, &out).await?;
    }
}

fn answer(f: &Frame, shared: &Shared, out: &mut BytesMut) -> Result<(), WireError> {
    let text = f.query_text()?;
    let lower = text.trim().trim_end_matches(';').to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let view = match words[..] {
        ["show", "atoll.pools"] => pools(shared),
        ["show", "atoll.shards"] => shards(shared),
        ["show", "atoll.holds"] => holds(shared),
        _ => {
            let shown: String = text.chars().take(60).collect();
            let m = format!("{shown:?}: the atoll admin database answers SHOW atoll.pools, SHOW atoll.shards and SHOW atoll.holds");
            messages::error(out, false, "42601", &m);
            return Ok(());
        }
    };
    let (columns, rows) = view;
    messages::row_description(out, &columns);
    for row in &rows {
        messages::data_row(out, row);
    }
    messages::complete(out, &format!("SELECT {}", rows.len()));
    Ok(())
}

fn pools(shared: &Shared) -> View {
    let rows = crate::status::pools(shared)
        .into_iter()
        .map(|p| {
            vec![
                Some(p.node),
                Some(p.leased.to_string()),
                Some(p.idle.to_string()),
                Some(p.limit.to_string()),
            ]
        })
        .collect();
    (vec!["node", "leased", "idle", "limit"], rows)
}

fn shards(shared: &Shared) -> View {
    let snapshot = shared.cluster.snapshot();
    // One lookup per island, not per shard (there may be 10,000).
    let mut masters = std::collections::HashMap::new();
    let rows = snapshot
        .active_shards()
        .map(|(shard, island)| {
            let master = masters
                .entry(island)
                .or_insert_with(|| {
                    let i = snapshot.island(island)?;
                    i.master().map(|m| m.addr.clone())
                })
                .clone();
            vec![
                Some(shard.get().to_string()),
                Some(shard.schema()),
                Some(island.to_string()),
                master,
            ]
        })
        .collect();
    (vec!["shard", "schema", "island", "master"], rows)
}

fn holds(shared: &Shared) -> View {
    let h = crate::status::holds(shared);
    let ms = |v: f64| Some(format!("{v:.1}"));
    let row = vec![
        Some(h.holding.to_string()),
        Some(h.released.to_string()),
        Some(h.expired.to_string()),
        Some(h.rerun.to_string()),
        ms(h.p50_ms),
        ms(h.p99_ms),
        ms(h.max_ms),
    ];
    (
        vec![
            "holding", "released", "expired", "rerun", "p50_ms", "p99_ms", "max_ms",
        ],
        vec![row],
    )
}
