//! Creates objects on random shards, reads them back by ID (read-your-writes through a
//! timeline), and lists them across all shards with scatter-gather.
//!
//! ```sh
//! cargo run -p atoll-cli -- demo --dir /tmp/atoll-demo          # a sandbox with shards 0-64
//! cargo run -p atoll-client --example objects -- --config /tmp/atoll-demo/atoll.toml --count 20
//! ```
//! The config may also come from `ATOLL_CONFIG` or `./atoll.toml`. App-side IDs carry a node
//! id leased from the cluster (`atoll.id_leases`; run `atoll init` on an older cluster to
//! create it); `--node N` uses a fixed node id instead; `--db-ids` uses `shNNNN.id_gen()`.

use anyhow::{bail, Context, Result};
use atoll_client::{Cluster, ClusterOptions, Freshness, IdGenerator, IdNode, Timeline, Write};
use futures::StreamExt;
use std::path::PathBuf;

struct Args {
    config: Option<PathBuf>,
    count: usize,
    node: Option<u16>,
    db_ids: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        config: None,
        count: 10,
        node: None,
        db_ids: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => a.config = Some(it.next().context("--config needs a path")?.into()),
            "--count" => a.count = it.next().context("--count needs a number")?.parse()?,
            "--node" => a.node = Some(it.next().context("--node needs a number")?.parse()?),
            "--db-ids" => a.db_ids = true,
            "-h" | "--help" => {
                println!("usage: objects [--config PATH] [--count N] [--node N] [--db-ids]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let options = ClusterOptions {
        id_node: match (args.db_ids, args.node) {
            (true, _) => IdNode::None,
            (false, Some(n)) => IdNode::Fixed(n),
            (false, None) => IdNode::lease(),
        },
        ..Default::default()
    };
    let cluster = Cluster::load(args.config.as_deref(), options).await?;
    if let Some(lease) = cluster.id_lease() {
        println!("leased node id {:?} for app-side IDs", lease.node);
    }
    let shards = cluster.shards();
    if shards.is_empty() {
        bail!("no active shards: run `atoll allocate --shards 1-16 --activate` first");
    }
    println!("{} active shards", shards.len());

    // The logical table `objects`: the same DDL in every shard (a migration tool's job in
    // real life; idempotent here).
    let timeline = Timeline::new();
    let tl = &timeline;
    let mut ddl = cluster.scatter(None, 4, |s| async move {
        let sql = format!(
            "create table if not exists {}.objects (id bigint primary key, title text not null,
             created_at timestamptz not null default now())",
            s.schema()
        );
        let how = Write::idempotent().timeline(tl);
        s.write(&sql, &[], how).await.map(|_| ())
    });
    while let Some((no, r)) = ddl.next().await {
        r.with_context(|| format!("creating {no}.objects"))?;
    }

    // Create: a random shard per object, the ID says which.
    let mut ids = Vec::new();
    for i in 0..args.count {
        let shard = cluster.random_shard()?;
        let id = if args.db_ids {
            shard.new_db_id().await?
        } else {
            cluster.new_id(shard.no()).await?
        };
        let sql = format!(
            "insert into {}.objects (id, title) values ($1, $2)",
            shard.schema()
        );
        let title = format!("object #{i}");
        shard
            .write(
                &sql,
                &[&id.get(), &title],
                Write::once().timeline(&timeline),
            )
            .await?;
        ids.push(id);
    }
    println!("created {} objects; timeline {}", ids.len(), timeline);

    // Read back by ID: the shard comes from the ID alone; the timeline sends the read to a
    // replica only if it has replayed the write.
    for id in &ids {
        let shard = cluster.shard_for_id(id.get())?;
        let sql = format!(
            "select title, pg_is_in_recovery() from {}.objects where id = $1",
            shard.schema()
        );
        let rows = shard
            .query(&sql, &[&id.get()], Freshness::Timeline(&timeline))
            .await?;
        let Some(row) = rows.first() else {
            bail!("object {id} not found in {}", shard.no());
        };
        let from = if row.get::<_, bool>(1) {
            "replica"
        } else {
            "master"
        };
        let made = IdGenerator::timestamp(*id)
            .map(|t| format!(", app ID made at unix {t}"))
            .unwrap_or_default();
        println!(
            "{id} in {} from the {from}: {}{made}",
            shard.no(),
            row.get::<_, &str>(0)
        );
    }

    // List across shards: each shard's count, errors reported per shard. The timeline
    // holds this run's DDL and inserts, so a lagging replica is not asked.
    let mut counts = cluster.scatter(None, 4, |s| async move {
        let sql = format!("select count(*) from {}.objects", s.schema());
        let rows = s.query(&sql, &[], Freshness::Timeline(tl)).await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
    });
    let (mut total, mut failed) = (0, 0);
    while let Some((no, r)) = counts.next().await {
        match r {
            Ok(n) => total += n,
            Err(e) => {
                failed += 1;
                eprintln!("{no}: {e}");
            }
        }
    }
    println!(
        "listed {total} objects across {} shards ({failed} shards failed)",
        shards.len()
    );
    // Release the leased node id now rather than letting it expire.
    cluster.close().await;
    if failed > 0 {
        bail!("{failed} shards could not be listed");
    }
    Ok(())
}
