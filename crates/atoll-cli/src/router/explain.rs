//! `atoll router explain METHOD PATH [-H 'Name: value' ...]`.

use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_pg::{Discoverer, DiscoveryOptions};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The request method (GET, POST, ...)
    method: String,
    /// The request path, with its query (/o/1000100000000000042?x=1)
    path: String,
    /// A request header, `Name: value` (repeat for more; cookies as `Cookie: a=b`)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
}

pub async fn run(ctx: &Context, args: ExplainArgs) -> CmdResult {
    let config = super::load(ctx)?;
    let headers = atoll_router::explain::parse_headers(&args.headers)?;
    let (snapshot, env) = match &config.atoll_config {
        Some(p) => {
            let cluster = atoll_core::Config::from_file(p).map_err(Failure::input)?;
            let env = cluster.env_digit;
            let snap = Discoverer::new(
                cluster,
                DiscoveryOptions {
                    sizes: false,
                    ..Default::default()
                },
            )
            .discover()
            .await;
            (Some(snap), env)
        }
        None => (None, 0),
    };
    let e = atoll_router::explain(
        &config,
        snapshot.as_ref(),
        env,
        &args.method,
        &args.path,
        headers,
    )?;
    if ctx.json {
        print_json(&e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let d = &e.decision;
    println!("{} {}", e.method, e.path);
    if e.stripped_headers > 0 {
        println!(
            "  {} inbound X-Atoll-* header(s) removed before routing",
            e.stripped_headers
        );
    }
    for s in &d.skipped {
        println!("  skipped {s}");
    }
    match &d.cell {
        Some(cell) => println!(
            "  → cell {cell} ({}) via {:?}",
            e.addrs.join(", "),
            d.source
        ),
        None => println!("  → 404 from the router (negative route)"),
    }
    if let Some(rule) = &d.rule {
        let shard = d.shard.map(|s| s.to_string()).unwrap_or_default();
        let island = d.island.map(|i| i.to_string()).unwrap_or_default();
        println!(
            "  rule {rule}: {:?} → {shard} → island {island}",
            d.value.as_deref().unwrap_or("")
        );
    }
    if d.source == atoll_router::RouteSource::Default {
        println!("  (learned routes live in a running router; explain does not see them)");
    }
    Ok(ExitCode::SUCCESS)
}
