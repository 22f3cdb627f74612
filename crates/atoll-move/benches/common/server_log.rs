//! What the islands' servers did, read back from their logs after the run: checkpoints,
//! new connections, slow statements, autovacuum runs, WAL senders and replication workers
//! starting, errors. [`log_more`] turns the extra logging on at the start (the sandbox's
//! defaults log only checkpoints and errors); [`read`] places each line on the bench's
//! clock through a (wall clock, monotonic clock) pair taken at the start.

use atoll_core::IslandId;
use atoll_testkit::TestCluster;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a log line says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Checkpoint,
    Connection,
    SlowStatement,
    Autovacuum,
    WalSender,
    ReplicationWorker,
    Error,
}

/// One event on a master, spanning `[from, to]` (a point when equal).
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub island: IslandId,
    pub kind: EventKind,
    pub from: Instant,
    pub to: Instant,
    /// The message, shortened.
    pub text: String,
}

/// Bench-only logging on every master: connections, statements over 20 ms (with their
/// duration), every autovacuum run. Checkpoints are logged by default (PostgreSQL 15).
pub async fn log_more(tc: &TestCluster) -> anyhow::Result<()> {
    for island in &tc.config().islands {
        let c = tc.master(island.id).await?;
        for sql in [
            "alter system set log_connections = on",
            "alter system set log_min_duration_statement = 20",
            "alter system set log_autovacuum_min_duration = 0",
            "select pg_reload_conf()",
        ] {
            c.batch_execute(sql).await?;
        }
    }
    Ok(())
}

/// The clocks at one moment, to place the logs' wall-clock times on the bench's clock.
#[derive(Debug, Clone, Copy)]
pub struct ClockPair {
    mono: Instant,
    wall: SystemTime,
}

impl ClockPair {
    pub fn now() -> ClockPair {
        ClockPair {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn place(&self, unix_ms: i64) -> Option<Instant> {
        let anchor = self.wall.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
        let d = unix_ms - anchor;
        if d >= 0 {
            self.mono.checked_add(Duration::from_millis(d as u64))
        } else {
            self.mono.checked_sub(Duration::from_millis((-d) as u64))
        }
    }
}

/// Every event of every island's nodes' logs since `clock` (lines it cannot read are
/// skipped).
pub fn read(tc: &TestCluster, clock: ClockPair) -> Vec<ServerEvent> {
    let mut out = Vec::new();
    for island in tc.sandbox().islands() {
        for node in &island.nodes {
            let Ok(text) = std::fs::read_to_string(&node.log_file) else {
                continue;
            };
            out.extend(parse(&text, IslandId(island.id), clock));
        }
    }
    out.sort_by_key(|e| e.from);
    out
}

fn parse(text: &str, island: IslandId, clock: ClockPair) -> Vec<ServerEvent> {
    let mut out = Vec::new();
    let mut checkpoint_start: Option<Instant> = None;
    for line in text.lines() {
        let Some((unix_ms, rest)) = timestamp(line) else {
            continue;
        };
        let Some(at) = clock.place(unix_ms) else {
            continue;
        };
        if at < clock.mono {
            continue;
        }
        // After "[pid] ": "LOG:  message" or "ERROR:  message".
        let Some(msg_at) = rest.find("] ") else {
            continue;
        };
        let msg = rest[msg_at + 1..].trim_start();
        let short = |m: &str| m.chars().take(140).collect::<String>();
        let event = |kind, from, text: &str| ServerEvent {
            island,
            kind,
            from,
            to: at,
            text: short(text),
        };
        if let Some(m) = msg.strip_prefix("LOG:") {
            let m = m.trim_start();
            if m.starts_with("checkpoint starting") {
                checkpoint_start = Some(at);
            } else if m.starts_with("checkpoint complete") {
                out.push(event(
                    EventKind::Checkpoint,
                    checkpoint_start.take().unwrap_or(at),
                    m,
                ));
            } else if m.starts_with("connection authorized") {
                out.push(event(EventKind::Connection, at, m));
            } else if let Some(d) = m.strip_prefix("duration: ") {
                let ms: f64 = d
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                let from = at
                    .checked_sub(Duration::from_secs_f64(ms / 1e3))
                    .unwrap_or(at);
                out.push(event(EventKind::SlowStatement, from, m));
            } else if m.starts_with("automatic vacuum") || m.starts_with("automatic analyze") {
                out.push(event(EventKind::Autovacuum, at, m));
            } else if m.starts_with("starting logical decoding") {
                out.push(event(EventKind::WalSender, at, m));
            } else if m.starts_with("logical replication") {
                out.push(event(EventKind::ReplicationWorker, at, m));
            }
        } else if let Some(m) = msg.strip_prefix("ERROR:") {
            out.push(event(EventKind::Error, at, m.trim_start()));
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC ` at the start of `line` (the sandbox's log prefix `%m`):
/// Unix milliseconds and the rest of the line. Other time zones are not read.
fn timestamp(line: &str) -> Option<(i64, &str)> {
    let zone = line.get(23..28)?;
    if zone != " UTC " && zone != " GMT " {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let days = days_from_civil(y, mo, d);
    let unix_ms = (((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms;
    Some((unix_ms, line.get(28..)?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}
