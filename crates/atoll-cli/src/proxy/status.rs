//! `atoll proxy status`: a running proxy's clients, server connections, islands and holds,
//! read from its `GET /status` (served next to `/metrics`). Exit 0 when every island has
//! a master, 3 when one has none (the proxy cannot route there), 1 when the proxy cannot
//! be reached.

use crate::exit::{Failure, UNHEALTHY};
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_proxy::Status;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Where the proxy serves /metrics and /status (its --metrics) [default: [proxy]
    /// metrics]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Bound on the request, in ms
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,
}

pub fn run(ctx: &Context, args: StatusArgs) -> CmdResult {
    let addr = match args.metrics {
        Some(a) => a,
        None => atoll_core::Config::load(ctx.config.as_deref())
            .map_err(Failure::input)?
            .proxy
            .metrics
            .map(|a| a.to_string())
            .ok_or_else(|| {
                Failure::input("no address: give --metrics ADDR or set [proxy] metrics")
            })?,
    };
    let status =
        crate::runtime()?.block_on(fetch(&addr, Duration::from_millis(args.timeout_ms)))?;
    if ctx.json {
        print_json(&status)?;
    } else {
        print(&addr, &status);
    }
    Ok(if status.islands.iter().all(|i| i.master.is_some()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

async fn fetch(addr: &str, timeout: Duration) -> Result<Status, Failure> {
    let url = format!("http://{addr}/status");
    let fail =
        |e: reqwest::Error| Failure::failed(format!("atoll proxy at {addr}: {}", e.without_url()));
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(fail)?;
    let res = http.get(&url).send().await.map_err(fail)?;
    if !res.status().is_success() {
        return Err(Failure::failed(format!(
            "atoll proxy at {addr}: GET /status answered {}",
            res.status()
        )));
    }
    res.json::<Status>().await.map_err(|e| {
        Failure::failed(format!(
            "atoll proxy at {addr}: /status is not a proxy's status: {}",
            e.without_url()
        ))
    })
}

fn print(addr: &str, s: &Status) {
    println!(
        "atoll proxy at {addr}: {} clients, {} pooling, database {:?}",
        s.clients,
        s.pool_mode.as_str(),
        s.database
    );
    println!("server connections:");
    if s.pools.is_empty() {
        println!("  (none yet)");
    }
    for p in &s.pools {
        println!(
            "  {:<24} leased {:>4}  idle {:>4}  limit {:>4}",
            p.node, p.leased, p.idle, p.limit
        );
    }
    println!("islands:");
    for i in &s.islands {
        println!(
            "  {:<4} master {:<24} {} shards",
            i.island.to_string(),
            i.master.as_deref().unwrap_or("NONE"),
            i.shards
        );
    }
    let h = &s.holds;
    println!(
        "holds: {} now, {} released, {} expired, {} run again; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        h.holding, h.released, h.expired, h.rerun, h.p50_ms, h.p99_ms, h.max_ms
    );
}
