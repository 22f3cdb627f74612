//! `atoll status`: discovery rendered for people or as JSON, with what moves left behind
//! (`debris.rs`).

use crate::cluster::{Cluster, Need};
use crate::debris;
use crate::exit::{Failure, UNHEALTHY};
use crate::output::{bytes, print_json};
use crate::{CmdResult, Context};
use atoll_core::{Config, NodeRole, Snapshot};
use atoll_move::MoveDebris;
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Leave out the per-shard list (islands and totals only)
    #[arg(long)]
    pub summary: bool,
    /// Also show what the agent at HOST:PORT reports (repeat for several; `atoll sandbox
    /// up --agents` prints them); an agent not HEALTHY makes the status unhealthy
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agents: Vec<String>,
    /// Token by reference (env:VAR or file:PATH), for agents whose reads need it
    #[arg(long, value_name = "REF")]
    pub agent_token: Option<String>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    config: String,
    cluster_id: Option<&'a str>,
    healthy: bool,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    /// What moves left behind.
    moves: &'a MoveDebris,
    /// What the agents asked with `--agent` report (their attributes, or an error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    agents: Vec<serde_json::Value>,
    /// The problems `moves` makes, each naming the command that ends it.
    move_problems: Vec<String>,
    /// Shard 0's read-only copies on other islands, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    global_copies: Vec<atoll_move::global_copy::CopyStatus>,
    /// What is wrong with them, each naming the command that repairs it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    global_problems: Vec<String>,
    /// Automated failover's state per island, with `[ha]` (`ha_error` when etcd did not
    /// answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    ha: Option<Vec<atoll_agent::ha::IslandHa>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ha_error: Option<String>,
}

pub async fn run(ctx: &Context, args: StatusArgs) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Snapshot).await?;
    let moves = atoll_move::move_debris(&config, &snapshot).await;
    let move_problems = debris::problems(&moves);
    let (global_copies, global_problems) = crate::global::problems(&config, &snapshot).await;
    let agents = agent_reports(&args).await?;
    let agents_healthy = agents.iter().all(|a| a["status"] == "HEALTHY");
    let (ha, ha_error) = match atoll_agent::ha::read_status(&config).await {
        Ok(h) => (h, None),
        Err(e) => (None, Some(format!("failover state unreadable: {e}"))),
    };
    // An island without a leader is one failover could not (yet) repair.
    let ha_healthy = ha_error.is_none()
        && ha
            .as_ref()
            .is_none_or(|islands| islands.iter().all(|i| i.leader.is_some()));
    let healthy = snapshot.problems.is_empty()
        && move_problems.is_empty()
        && global_problems.is_empty()
        && agents_healthy
        && ha_healthy;
    if ctx.json {
        print_json(&StatusJson {
            config: config.source.to_string(),
            cluster_id: snapshot.cluster_id(),
            healthy,
            snapshot: &snapshot,
            moves: &moves,
            agents,
            move_problems,
            global_copies,
            global_problems,
            ha,
            ha_error,
        })?;
    } else {
        let problems: Vec<String> = move_problems.into_iter().chain(global_problems).collect();
        print!(
            "{}",
            render_with(&config, &snapshot, !args.summary, &moves, &problems)
        );
        if let Some(e) = &ha_error {
            println!("failover: {e}");
        }
        for i in ha.iter().flatten() {
            for line in crate::ha::island_lines(i, false) {
                println!("{line}");
            }
        }
        if !agents.is_empty() {
            println!("agents:");
            for a in &agents {
                println!(
                    "  {}",
                    crate::agent::status_line(a["agent"].as_str().unwrap_or("?"), a)
                );
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

/// Each `--agent`'s attributes, with `agent` set to its address (or `error`).
async fn agent_reports(args: &StatusArgs) -> Result<Vec<serde_json::Value>, Failure> {
    let mut out = Vec::new();
    for addr in &args.agents {
        let client = crate::agent::AgentClient::new(
            addr,
            args.agent_token.as_deref(),
            std::time::Duration::from_secs(5),
        )?;
        let mut report = match client.get("/v1/attributes").await {
            Ok(a) if a.status == 200 => a.body,
            Ok(a) => {
                serde_json::json!({ "error": format!("HTTP {}: {}", a.status, a.body["error"]["message"]) })
            }
            Err(e) => serde_json::json!({ "error": e.message }),
        };
        report["agent"] = serde_json::json!(addr);
        out.push(report);
    }
    Ok(out)
}

/// The cluster as discovery found it, without the moves' part (the demo's view).
pub fn render(config: &Config, s: &Snapshot, shards: bool) -> String {
    render_with(config, s, shards, &MoveDebris::default(), &[])
}

/// The cluster, then what moves left behind and every problem (discovery's first).
fn render_with(
    config: &Config,
    s: &Snapshot,
    shards: bool,
    moves: &MoveDebris,
    move_problems: &[String],
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} (id {}) from {}",
        config.name,
        s.cluster_id().unwrap_or("-"),
        config.source
    );
    for island in &s.islands {
        let copies: Vec<_> = s
            .shards
            .values()
            .flatten()
            .filter(|c| c.island == island.id)
            .collect();
        let active = copies.iter().filter(|c| c.active).count();
        let size: u64 = copies.iter().filter_map(|c| c.size_bytes).sum();
        let _ = writeln!(
            out,
            "island {}: {} shards ({} active), {}",
            island.id,
            copies.len(),
            active,
            bytes(size)
        );
        for n in &island.nodes {
            let line = match (&n.error, n.role) {
                (Some(e), _) => format!("  down     {:<21} {e}", n.addr),
                (None, Some(NodeRole::Master)) => format!(
                    "  master   {:<21} {:<7} wal {}",
                    n.addr,
                    n.server_version.as_deref().unwrap_or("?"),
                    n.lsn.map(|l| l.to_string()).unwrap_or_default()
                ),
                (None, _) => format!(
                    "  replica  {:<21} {:<7} wal {}  lag {}, {}",
                    n.addr,
                    n.server_version.as_deref().unwrap_or("?"),
                    n.lsn.map(|l| l.to_string()).unwrap_or_default(),
                    n.lag_bytes.map(bytes).unwrap_or_else(|| "?".into()),
                    // Unknown until the replica has replayed a transaction.
                    n.lag_seconds
                        .map(|s| format!("{s:.1} s"))
                        .unwrap_or_else(|| "? s".into())
                ),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    if shards && !s.shards.is_empty() {
        let _ = writeln!(out, "shards:");
        for (shard, copies) in &s.shards {
            for c in copies {
                let _ = writeln!(
                    out,
                    "  {shard}  island {:<3} {:<8} {}",
                    c.island,
                    if c.active { "active" } else { "inactive" },
                    c.size_bytes.map(bytes).unwrap_or_default()
                );
            }
        }
    }
    out.push_str(&debris::render(moves, !shards));
    if s.problems.is_empty() && move_problems.is_empty() {
        let _ = writeln!(out, "healthy: no problems found");
    } else {
        let _ = writeln!(out, "problems:");
        for p in &s.problems {
            let _ = writeln!(out, "  - {p}");
        }
        for p in move_problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}
