//! `node.switchover`, on the master: check the candidate (or pick the most advanced
//! streaming replica), refusing with a reason code and its figures; then stop writes (a
//! fast shutdown: its checkpoint is streamed to the replicas), wait until the candidate
//! replayed past it, promote the candidate, and restart the old master as its replica
//! (pg_rewind when it cannot follow). Reports how long writes were refused. Not safe to
//! re-run after a crash: FAILED `interrupted` (look at both nodes' attributes).

use super::{ActionCtx, ActionError, ErrorCode, SwitchoverArgs};
use crate::error::AgentError;
use crate::pg_tools::wait_for;
use atoll_core::{Lsn, NodeConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// What the master knows of itself when checking.
struct MasterFacts {
    lsn: Lsn,
    timeline: i64,
}

/// A replica that passed the checks.
struct Candidate {
    node: NodeConfig,
    client: Client,
    lag_bytes: i64,
}

const CANDIDATE_SQL: &str = "select pg_is_in_recovery(),
    (select status from pg_stat_wal_receiver limit 1),
    (select received_tli from pg_stat_wal_receiver limit 1)::int8,
    (select sender_port from pg_stat_wal_receiver limit 1),
    pg_last_wal_replay_lsn()::text,
    case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end";

pub(super) async fn run(ctx: &ActionCtx<'_>, a: SwitchoverArgs) -> Result<Value, ActionError> {
    let cfg = &ctx.ex.cfg;
    let master = ctx.local_master().await?;
    let row = master
        .query_one(
            "select pg_current_wal_lsn()::text,
                    ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8",
            &[],
        )
        .await
        .map_err(|e| AgentError::query(&cfg.node, e))?;
    let facts = MasterFacts {
        lsn: Lsn::parse(row.get(0)).unwrap_or_default(),
        timeline: row.get(1),
    };
    drop(master);
    ctx.progress("checking the candidate").await;
    let cand = choose(ctx, &a, &facts).await?;
    let dir = ctx.data_dir()?;
    let started = Instant::now();
    ctx.progress(format!("stopping writes: fast shutdown of {}", cfg.node))
        .await;
    ctx.ex.tools.stop(&dir, "fast").await?;
    ctx.ex.reader.reset().await;
    let last = ctx.ex.tools.checkpoint_lsn(&dir).await?;
    ctx.progress(format!(
        "waiting for {} to replay past {}",
        cand.node.addr(),
        show(last)
    ))
    .await;
    let replayed = wait_for(Duration::from_millis(a.timeout_ms), || async {
        replay_lsn(&cand.client).await.is_some_and(|l| l > last)
    })
    .await;
    if !replayed {
        ctx.ex.tools.start(&dir).await?;
        return Err(ActionError::new(
            ErrorCode::CatchUpTimeout,
            format!(
                "{} did not replay past {} within {} ms; {} restarted as master",
                cand.node.addr(),
                show(last),
                a.timeout_ms,
                cfg.node
            ),
        )
        .with("write_refusal_ms", started.elapsed().as_millis() as u64)
        .with(
            "candidate_replay_lsn",
            replay_lsn(&cand.client).await.map(|l| l.0),
        ));
    }
    if let Some(ha) = &ctx.ex.ha {
        ctx.progress(format!("handing the leader key to {}", cand.node.addr()))
            .await;
        if let Err(why) = ha.hand_over(&cand.node.addr()).await {
            ctx.ex.tools.start(&dir).await?;
            return Err(ActionError::new(
                ErrorCode::LeaderKey,
                format!(
                    "cannot hand the leader key to {}: {why}; {} restarted as master",
                    cand.node.addr(),
                    cfg.node
                ),
            )
            .with("write_refusal_ms", started.elapsed().as_millis() as u64));
        }
    }
    ctx.progress(format!("promoting {}", cand.node.addr()))
        .await;
    cand.client
        .query_one("select pg_promote(true, 60)", &[])
        .await
        .map_err(|e| AgentError::query(&cand.node, e))?;
    let refusal_ms = started.elapsed().as_millis() as u64;
    if let Some(ha) = &ctx.ex.ha {
        ha.record_manual(&cand.node.addr(), cand.lag_bytes.max(0) as u64, refusal_ms)
            .await;
    }
    let rejoined = rejoin(ctx, &dir, &cand).await?;
    Ok(json!({
        "old_master": cfg.node.addr(),
        "new_master": cand.node.addr(),
        "candidate_lag_bytes": cand.lag_bytes,
        "last_checkpoint_lsn": last.0,
        "write_refusal_ms": refusal_ms,
        "old_master_rewound": rejoined == crate::follow::Rejoined::Rewound,
        "old_master_rejoined": rejoined,
        "took_ms": started.elapsed().as_millis() as u64,
    }))
}

fn show(l: Lsn) -> String {
    format!("{:X}/{:X}", l.0 >> 32, l.0 & 0xffff_ffff)
}

async fn replay_lsn(c: &Client) -> Option<Lsn> {
    let row = c
        .query_one("select pg_last_wal_replay_lsn()::text", &[])
        .await
        .ok()?;
    row.get::<_, Option<String>>(0)
        .as_deref()
        .and_then(Lsn::parse)
}

/// The named candidate if it passes, else the passing replica with the least lag.
async fn choose(
    ctx: &ActionCtx<'_>,
    a: &SwitchoverArgs,
    m: &MasterFacts,
) -> Result<Candidate, ActionError> {
    let cfg = &ctx.ex.cfg;
    if let Some(addr) = &a.candidate {
        let node = cfg
            .island_node(addr)
            .filter(|n| n.addr() != cfg.node.addr())
            .ok_or_else(|| {
                ActionError::new(
                    ErrorCode::UnknownNode,
                    format!(
                        "args.candidate: {addr} is not another node of island {}",
                        cfg.island
                    ),
                )
            })?;
        return check(ctx, node, a, m).await;
    }
    let mut refused = Vec::new();
    let mut best: Option<Candidate> = None;
    for node in cfg.island_peers() {
        match check(ctx, node.clone(), a, m).await {
            Ok(c) if best.as_ref().is_none_or(|b| c.lag_bytes < b.lag_bytes) => best = Some(c),
            Ok(_) => {}
            Err(e) => refused.push(json!({ "node": node.addr(), "reason": e.to_json() })),
        }
    }
    best.ok_or_else(|| {
        ActionError::new(
            ErrorCode::NoCandidate,
            format!("no replica of island {} can take over", cfg.island),
        )
        .with("candidates", refused)
    })
}

/// Checks one replica against the master's facts.
async fn check(
    ctx: &ActionCtx<'_>,
    node: NodeConfig,
    a: &SwitchoverArgs,
    m: &MasterFacts,
) -> Result<Candidate, ActionError> {
    let addr = node.addr();
    let not_streaming = |why: String| {
        ActionError::new(
            ErrorCode::CandidateNotStreaming,
            format!(
                "{addr} is not streaming from {}: {why}",
                ctx.ex.cfg.node.addr()
            ),
        )
        .with("candidate", &addr)
    };
    let client = ctx
        .connect(&node)
        .await
        .map_err(|e| not_streaming(e.message))?;
    let r = client
        .query_one(CANDIDATE_SQL, &[])
        .await
        .map_err(|e| not_streaming(atoll_pg::describe(&e)))?;
    let (in_recovery, status, tli, port): (bool, Option<String>, Option<i64>, Option<i32>) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let replay = r
        .get::<_, Option<String>>(4)
        .as_deref()
        .and_then(Lsn::parse);
    let paused: bool = r.get(5);
    if !in_recovery {
        return Err(not_streaming("it is a master".into()));
    }
    if status.as_deref() != Some("streaming") || port != Some(i32::from(ctx.ex.cfg.node.port)) {
        return Err(not_streaming(format!(
            "WAL receiver {}",
            status.as_deref().unwrap_or("not running")
        ))
        .with("sender_port", port));
    }
    if tli != Some(m.timeline) {
        return Err(ActionError::new(
            ErrorCode::TimelineMismatch,
            format!(
                "{addr} follows timeline {tli:?}, the master is on {}",
                m.timeline
            ),
        )
        .with("candidate", &addr)
        .with("candidate_timeline", tli)
        .with("master_timeline", m.timeline));
    }
    let lag = m.lsn.0.saturating_sub(replay.unwrap_or_default().0) as i64;
    if lag as u64 > a.max_lag_bytes {
        return Err(ActionError::new(
            ErrorCode::CandidateLagBytes,
            format!("{addr} replayed {lag} bytes less than the master has written (more than max_lag_bytes {})", a.max_lag_bytes),
        )
        .with("candidate", &addr)
        .with("candidate_lag_bytes", lag)
        .with("max_lag_bytes", a.max_lag_bytes)
        .with("master_lsn", m.lsn.0)
        .with("candidate_replay_lsn", replay.map(|l| l.0)));
    }
    if paused {
        return Err(ActionError::new(
            ErrorCode::CandidateReplayPaused,
            format!("{addr} has its replay paused ({lag} bytes behind)"),
        )
        .with("candidate", &addr)
        .with("candidate_lag_bytes", lag));
    }
    Ok(Candidate {
        node,
        client,
        lag_bytes: lag,
    })
}

/// Turns the stopped old master into a replica of the new one.
async fn rejoin(
    ctx: &ActionCtx<'_>,
    dir: &Path,
    cand: &Candidate,
) -> Result<crate::follow::Rejoined, ActionError> {
    let cfg = &ctx.ex.cfg;
    ctx.progress(format!(
        "restarting {} as a replica of {}",
        cfg.node,
        cand.node.addr()
    ))
    .await;
    Ok(crate::follow::rejoin(
        cfg,
        &ctx.ex.tools,
        dir,
        &cand.node,
        crate::follow::Stopped::Handover,
    )
    .await?)
}
