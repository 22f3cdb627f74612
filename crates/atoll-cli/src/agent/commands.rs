//! `atoll agent status|actions|schedule`.

use super::client::{refusal, AgentClient};
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Agent address HOST:PORT (repeat for several)
    #[arg(long = "agent", value_name = "HOST:PORT", required = true)]
    pub agents: Vec<String>,
    /// Token by reference (env:VAR or file:PATH), for agents whose reads need it
    #[arg(long, value_name = "REF")]
    pub token: Option<String>,
}

#[derive(clap::Args)]
pub struct ActionsArgs {
    /// Agent address HOST:PORT
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agent: String,
    /// Only one action, by id
    #[arg(long)]
    pub id: Option<String>,
    /// Only actions in this state: NEW, RUNNING, DONE, FAILED
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many records
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Token by reference, for agents whose reads need it
    #[arg(long, value_name = "REF")]
    pub token: Option<String>,
}

#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// Agent address HOST:PORT
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agent: String,
    /// The action kind (cluster.add, node.switchover, shard.activate, …)
    #[arg(long)]
    pub kind: String,
    /// The action id, chosen by you: scheduling the same id again is refused (409)
    #[arg(long)]
    pub id: String,
    /// Arguments as a JSON object
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub args: String,
    /// The agent's token by reference (env:VAR or file:PATH)
    #[arg(long, value_name = "REF")]
    pub token: Option<String>,
    /// Wait until the action is DONE or FAILED, showing its progress
    #[arg(long)]
    pub wait: bool,
    /// Bound on --wait, in seconds
    #[arg(long, value_name = "S", default_value_t = 600)]
    pub timeout: u64,
}

/// One line per agent; `--json`: the attributes of each (or the error).
pub async fn status(ctx: &Context, a: StatusArgs) -> CmdResult {
    let mut reports = Vec::new();
    let mut healthy = true;
    for addr in &a.agents {
        let client = AgentClient::new(addr, a.token.as_deref(), HTTP_TIMEOUT)?;
        let report = match client.get("/v1/attributes").await {
            Ok(ans) if ans.status == 200 => ans.body,
            Ok(ans) => json!({ "agent": addr, "error": refusal(addr, &ans).message }),
            Err(e) => json!({ "agent": addr, "error": e.message }),
        };
        healthy &= report["status"] == "HEALTHY";
        reports.push((addr.clone(), report));
    }
    if ctx.json {
        let list: Vec<Value> = reports
            .into_iter()
            .map(|(addr, mut r)| {
                r["agent"] = json!(addr);
                r
            })
            .collect();
        print_json(&json!({ "agents": list }))?;
    } else {
        for (addr, r) in &reports {
            println!("{}", status_line(addr, r));
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::UNHEALTHY)
    })
}

/// `agent node island role status [reasons] shards lag`.
pub fn status_line(addr: &str, r: &Value) -> String {
    if let Some(e) = r["error"].as_str() {
        return format!("{addr}  unreachable: {e}");
    }
    let shards = r["shards"].as_array().map_or(0, Vec::len);
    let mut line = format!(
        "{addr}  node {}  island {}  {}  {}",
        r["node_id"].as_str().unwrap_or("?"),
        r["island"],
        r["role"].as_str().unwrap_or("-"),
        r["status"].as_str().unwrap_or("?"),
    );
    if let Some(reasons) = r["status_reasons"].as_array().filter(|v| !v.is_empty()) {
        let names: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(" ({})", names.join(", ")));
    }
    if let Some(m) = r["status_message"].as_str() {
        line.push_str(&format!(" ({m})"));
    }
    line.push_str(&format!("  {shards} shard(s)"));
    let lag = &r["shards"][0]["replication_lag"];
    if lag.is_object() {
        line.push_str(&format!("  lag {} B / {} ms", lag["bytes"], lag["ms"]));
    }
    line
}

pub async fn actions(ctx: &Context, a: ActionsArgs) -> CmdResult {
    let client = AgentClient::new(&a.agent, a.token.as_deref(), HTTP_TIMEOUT)?;
    let path = match &a.id {
        Some(id) => format!("/v1/actions/{id}"),
        None => {
            let mut p = format!("/v1/actions?limit={}", a.limit);
            if let Some(s) = &a.state {
                p.push_str(&format!("&state={s}"));
            }
            p
        }
    };
    let ans = client.get(&path).await?;
    if ans.status != 200 {
        return Err(refusal(&a.agent, &ans));
    }
    if ctx.json {
        print_json(&ans.body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let records = match ans.body["actions"].as_array() {
        Some(list) => list.clone(),
        None => vec![ans.body.clone()],
    };
    for r in &records {
        println!("{}", record_line(r));
    }
    Ok(ExitCode::SUCCESS)
}

/// `seq id kind state [progress|error]`.
pub fn record_line(r: &Value) -> String {
    let mut line = format!(
        "{:>5}  {}  {}  {}",
        r["seq"],
        r["id"].as_str().unwrap_or("?"),
        r["kind"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?"),
    );
    if let Some(e) = r["error"]["message"].as_str() {
        line.push_str(&format!(
            "  {} ({})",
            e,
            r["error"]["code"].as_str().unwrap_or("")
        ));
    } else if let Some(p) = r["progress"].as_str() {
        line.push_str(&format!("  {p}"));
    }
    line
}

pub async fn schedule(ctx: &Context, a: ScheduleArgs) -> CmdResult {
    let args: Value = serde_json::from_str(&a.args)
        .map_err(|e| Failure::input(format!("--args: not JSON: {e}")))?;
    let client = AgentClient::new(&a.agent, a.token.as_deref(), HTTP_TIMEOUT)?;
    let body = json!({ "id": a.id, "kind": a.kind, "args": args });
    let ans = client.post("/v1/actions", &body).await?;
    if ans.status != 201 {
        return Err(refusal(&a.agent, &ans));
    }
    let mut record = ans.body;
    if a.wait {
        record = wait(ctx, &client, &a.id, Duration::from_secs(a.timeout)).await?;
    }
    if ctx.json {
        print_json(&record)?;
    } else {
        println!("{}", record_line(&record));
    }
    Ok(if record["state"] == "FAILED" {
        ExitCode::from(crate::exit::FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Polls action `id` until it is DONE or FAILED, showing its progress on stderr.
pub async fn wait(
    ctx: &Context,
    client: &AgentClient,
    id: &str,
    timeout: Duration,
) -> Result<Value, Failure> {
    let t0 = Instant::now();
    let mut shown = String::new();
    loop {
        let ans = client.get(&format!("/v1/actions/{id}")).await?;
        if ans.status != 200 {
            return Err(refusal(client.addr(), &ans));
        }
        let r = ans.body;
        if r["state"] == "DONE" || r["state"] == "FAILED" {
            return Ok(r);
        }
        let progress = r["progress"].as_str().unwrap_or("").to_string();
        if !ctx.json && progress != shown && !progress.is_empty() {
            eprintln!("{id}: {progress}");
            shown = progress;
        }
        if t0.elapsed() > timeout {
            return Err(Failure::failed(format!(
                "action {id} still {} after {timeout:?}",
                r["state"]
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
