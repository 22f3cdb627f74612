//! `atoll route SQL`: which microshard a statement names and which node would run it, as a
//! PostgreSQL-protocol router decides it (`atoll_core::statement_route`).

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_core::statement_route::{self, ReadFrom, SessionChange, SessionRoute};
use atoll_core::ShardNo;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RouteArgs {
    /// The query text (one or more statements, as a simple query sends them)
    #[arg(value_name = "SQL")]
    pub sql: String,
    /// The session's `SET atoll.shard` (a number or shNNNN)
    #[arg(long, value_name = "SHARD")]
    pub shard: Option<ShardNo>,
    /// The session's `search_path` (comma-separated schemas)
    #[arg(long, value_name = "SCHEMAS")]
    pub search_path: Option<String>,
    /// The session's `SET atoll.read = 'replica'`: a read may go to a replica
    #[arg(long)]
    pub replica: bool,
}

pub async fn run(ctx: &Context, args: RouteArgs) -> CmdResult {
    let mut session = SessionRoute {
        shard: args.shard,
        read: if args.replica {
            ReadFrom::Replica
        } else {
            ReadFrom::Master
        },
        ..SessionRoute::default()
    };
    if let Some(path) = &args.search_path {
        let set = statement_route::read(&format!("set search_path to {path}"))
            .map_err(|e| Failure::input(format!("--search-path: {e}")))?;
        if let Some(change) = set.change {
            session.apply(change);
        }
    }
    let refused = |e: statement_route::RouteError| {
        Failure::input(format!("refused (SQLSTATE {}): {e}", e.sqlstate()))
    };
    let info = statement_route::read(&args.sql).map_err(refused)?;
    if let Some(change) = info.change {
        return setting(ctx, change);
    }
    let (shard, why) = session.route(&info).map_err(refused)?;
    let Cluster { snapshot, .. } = ctx.cluster(Need::Masters).await?;
    let island = snapshot
        .active_island(shard)
        .map_err(|e| Failure::input(format!("{}: {e}", shard.schema())))?;
    let master = snapshot
        .island(island)
        .and_then(|i| i.master())
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    if ctx.json {
        print_json(&serde_json::json!({
            "shard": shard, "schema": shard.schema(), "why": why, "island": island, "master": master,
            "session": session,
        }))?;
    } else {
        println!(
            "{} ({}) on island {island}, master {master}",
            shard.schema(),
            explain(why)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(why: statement_route::Why) -> &'static str {
    use statement_route::Why;
    match why {
        Why::Qualified => "named by a schema-qualified name",
        Why::ShardHint => "named by an atoll:shard hint",
        Why::IdHint => "the shard of the atoll:id hint's ID",
        Why::SessionShard => "the session's atoll.shard",
        Why::SearchPath => "the session's search_path",
        Why::Default => "no shard named: shard 0, the cluster-wide tables",
    }
}

/// A `SET` a router keeps for the session instead of running it.
fn setting(ctx: &Context, change: SessionChange) -> CmdResult {
    if ctx.json {
        print_json(&serde_json::json!({ "session_change": change }))?;
    } else {
        println!("a session setting the router keeps: {change:?}");
    }
    Ok(ExitCode::SUCCESS)
}
