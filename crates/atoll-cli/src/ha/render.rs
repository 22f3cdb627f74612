//! Text lines of an island's failover state, for `atoll ha status` and `atoll status`.

use crate::output::bytes;
use atoll_agent::ha::IslandHa;
use atoll_core::ha::{Election, MemberRole};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn age(at_ms: u64) -> String {
    let s = now_ms().saturating_sub(at_ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// The island's lines: a summary (leader, lease age, last failover, exposure), and with
/// `members` one line per member and the last election's refusals.
pub fn island_lines(i: &IslandHa, members: bool) -> Vec<String> {
    let mut out = Vec::new();
    let leader = match &i.leader {
        Some(l) => format!("leader {} for {}", l.node, age(l.since_ms)),
        None => "NO LEADER (election under way or impossible: see the last election)".into(),
    };
    let mut line = format!("island {}  ha: {leader}", i.island);
    if let Some(s) = &i.sync {
        line.push_str(&format!(
            "  synchronous: any 1 of [{}]",
            s.standbys.join(", ")
        ));
    }
    if let Some(b) = i.could_lose_bytes {
        line.push_str(&format!("  a failover now could lose {}", bytes(b)));
    }
    out.push(line);
    if let Some(f) = &i.last_failover {
        out.push(format!(
            "  last failover {} ago: {} -> {}, {} behind, writes refused <= {} ms{}",
            age(f.at_ms),
            f.from.as_deref().unwrap_or("?"),
            f.to,
            bytes(f.lag_bytes),
            f.writes_refused_ms
                .map_or("?".to_string(), |m| m.to_string()),
            if f.manual { " (manual)" } else { "" }
        ));
    }
    if !members {
        return out;
    }
    for m in &i.members {
        let role = match m.role {
            MemberRole::Master => "master",
            MemberRole::Replica => "replica",
            MemberRole::Down => "DOWN",
        };
        let lag = i
            .optime
            .as_ref()
            .filter(|o| m.role == MemberRole::Replica && o.timeline == m.timeline)
            .map(|o| format!("  lag {}", bytes(o.position.saturating_sub(m.position))))
            .unwrap_or_default();
        out.push(format!(
            "  {}  {role}  timeline {}{lag}{}  agent {}  seen {} ago",
            m.node,
            m.timeline,
            m.upstream
                .as_deref()
                .map_or(String::new(), |u| format!("  streams from {u}")),
            m.agent,
            age(m.at_ms)
        ));
    }
    match &i.last_election {
        Some(Election::NoWinner { why, refused }) => {
            out.push(format!("  last election: no winner: {why}"));
            for (n, r) in refused {
                out.push(format!(
                    "    {n}: {}",
                    serde_json::to_string(r).unwrap_or_default()
                ));
            }
        }
        Some(Election::Winner { node, refused, .. }) => {
            out.push(format!("  last election: {node} won"));
            for (n, r) in refused {
                out.push(format!(
                    "    {n}: {}",
                    serde_json::to_string(r).unwrap_or_default()
                ));
            }
        }
        None => {}
    }
    out
}
