//! `atoll ha status` and `atoll failover`: automated failover's state read from etcd, and a
//! manual failover carried out by the island master's agent (`docs/failover.md`). The
//! loop itself runs in the agents (`atoll_agent::ha`).

mod render;

use crate::agent::AgentClient;
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_agent::ha::IslandHa;
use atoll_core::Config;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

pub use render::island_lines;

#[derive(clap::Subcommand)]
pub enum HaCommand {
    /// Per island: the leader and since when, each member's role, position and lag, the
    /// synchronous standbys, the last election and the last failover
    Status,
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// The island whose master hands over
    #[arg(long, value_name = "N")]
    pub island: u16,
    /// The node to promote, HOST:PORT [default: the most advanced replica]
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// The agents' token by reference (env:VAR or file:PATH)
    #[arg(long, value_name = "REF")]
    pub token: Option<String>,
    /// Refuse a candidate further behind than this, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_lag_bytes: u64,
    /// Bound on the whole handover, in seconds
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub timeout: u64,
}

fn config(ctx: &Context) -> Result<Config, Failure> {
    let cfg = Config::load(ctx.config.as_deref()).map_err(Failure::input)?;
    if cfg.ha.is_none() {
        return Err(Failure::input(format!(
            "{}: no [ha] section: automated failover is not configured",
            cfg.source
        )));
    }
    Ok(cfg)
}

async fn read(cfg: &Config) -> Result<Vec<IslandHa>, Failure> {
    atoll_agent::ha::read_status(cfg)
        .await
        .map_err(|e| Failure::failed(format!("cannot read the failover state: {e}")))?
        .ok_or_else(|| Failure::input("no [ha] section"))
}

pub async fn status(ctx: &Context, _cmd: HaCommand) -> CmdResult {
    let cfg = config(ctx)?;
    let islands = read(&cfg).await?;
    let leaderless = islands.iter().any(|i| i.leader.is_none());
    if ctx.json {
        print_json(&json!({ "islands": islands }))?;
    } else {
        for i in &islands {
            for line in island_lines(i, true) {
                println!("{line}");
            }
        }
    }
    Ok(if leaderless {
        ExitCode::from(crate::exit::UNHEALTHY)
    } else {
        ExitCode::SUCCESS
    })
}

/// A manual failover: `node.switchover` on the leader's agent (found in its member
/// record), which hands the leader key to the candidate.
pub async fn failover(ctx: &Context, a: FailoverArgs) -> CmdResult {
    let cfg = config(ctx)?;
    let island = cfg
        .islands
        .iter()
        .find(|i| i.id.0 == a.island)
        .ok_or_else(|| {
            Failure::input(format!(
                "--island {}: no such island in {}",
                a.island, cfg.source
            ))
        })?;
    if let Some(to) = &a.to {
        if !island.nodes.iter().any(|n| &n.addr() == to) {
            return Err(Failure::input(format!(
                "--to {to}: not a node of island {}",
                a.island
            )));
        }
    }
    let state = read(&cfg).await?;
    let Some(here) = state.iter().find(|i| i.island.0 == a.island) else {
        return Err(Failure::failed("the island has no failover state"));
    };
    let leader = here.leader.as_ref().ok_or_else(|| {
        Failure::failed(format!(
            "island {} has no leader now; automated failover is choosing one (see atoll ha status)",
            a.island
        ))
    })?;
    if a.to.as_deref() == Some(leader.node.as_str()) {
        return Err(Failure::input(format!(
            "--to {}: it is the master already",
            leader.node
        )));
    }
    let agent = here
        .members
        .iter()
        .find(|m| m.node == leader.node)
        .map(|m| m.agent.clone())
        .ok_or_else(|| {
            Failure::failed(format!("the agent of {} has no member record", leader.node))
        })?;
    let client = AgentClient::new(&agent, a.token.as_deref(), Duration::from_secs(10))?;
    let id = format!("failover-{}-{}", a.island, crate::agent::now_id());
    let mut args = json!({ "max_lag_bytes": a.max_lag_bytes, "timeout_ms": a.timeout * 1000 });
    if let Some(to) = &a.to {
        args["candidate"] = json!(to);
    }
    let body = json!({ "id": id, "kind": "node.switchover", "args": args });
    let ans = client.post("/v1/actions", &body).await?;
    if ans.status != 201 {
        return Err(crate::agent::refusal(&agent, &ans));
    }
    let record = crate::agent::wait(ctx, &client, &id, Duration::from_secs(a.timeout + 30)).await?;
    if ctx.json {
        print_json(&record)?;
    } else if record["state"] == "DONE" {
        let o = &record["output"];
        println!(
            "island {}: {} -> {}  writes refused {} ms  (old master: {})",
            a.island,
            o["old_master"].as_str().unwrap_or("?"),
            o["new_master"].as_str().unwrap_or("?"),
            o["write_refusal_ms"],
            o["old_master_rejoined"].as_str().unwrap_or("?")
        );
    } else {
        println!(
            "island {}: refused: {} ({})",
            a.island,
            record["error"]["message"].as_str().unwrap_or("?"),
            record["error"]["code"].as_str().unwrap_or("?")
        );
    }
    Ok(if record["state"] == "DONE" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}
