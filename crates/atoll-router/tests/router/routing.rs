//! Routing by shard on a real sandbox (2 islands): an ID rule and a key rule place requests
//! on the cell serving the island where the shard is active; after a real move the next
//! requests go to the new owner, and the negative routes are dropped; unknown routes go to
//! the default cell; HTTP/2 works; shutdown lets a request in flight finish; `/metrics`
//! counts by cell and source.

use crate::common::*;
use anyhow::Result;
use atoll_core::keys::KeyRouter;
use atoll_core::{Id, IslandId};
use atoll_move::MoveOptions;
use atoll_testkit::{shard, shards, TestCluster};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn served_by(r: &http::Response<()>) -> String {
    header_str(r, "x-served-by").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_id_and_key_and_follows_a_move() -> Result<()> {
    let cluster = TestCluster::setup(2, 0).shards(1..=4).start().await?;
    cluster
        .on_each_shard(&shards(1..=4), |sc| {
            format!("create table {sc}.items (id bigint primary key)")
        })
        .await?;
    let snap = cluster.discover().await;
    let env = cluster.config().env_digit;
    let eu0 = TestCell::start("eu0", ok_cell()).await?;
    let eu1 = TestCell::start("eu1", ok_cell()).await?;
    let newest = TestCell::start(
        "newest",
        Arc::new(|s: &Seen| {
            if s.path.starts_with("/gone") {
                let mut r = reply(404, "nobody");
                r.headers_mut()
                    .insert("x-atoll-cell-cache", "/gone/* => none".parse().unwrap());
                r
            } else {
                reply(200, "newest")
            }
        }),
    )
    .await?;
    let toml = format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\natoll_config = \"{}\"\n\
         default_cell = \"newest\"\njitter_404_ms = 0\n\
         {}\n\
         [[rule]]\nname = \"object\"\nsource = \"path\"\npattern = '^/o/(?P<id>\\d+)'\nkind = \"id\"\n\
         [[rule]]\nname = \"tenant\"\nsource = \"header\"\nfield = \"X-Tenant\"\npattern = '^(?P<key>[a-z]+)$'\nkind = \"key\"\nshards = \"1-4\"\n",
        cluster.config_path().display(),
        cells_toml(&[("eu0", vec![eu0.addr], &[0]), ("eu1", vec![eu1.addr], &[1]), ("newest", vec![newest.addr], &[])]),
    );
    let router = TestRouter::start(&toml).await?;
    let name = |i: IslandId| if i == IslandId(0) { "eu0" } else { "eu1" };

    // By ID.
    let s = shard(1);
    let home = snap.active_island(s)?;
    let id = Id::new(env, s, 42)?.get();
    let (r, body) = get(&router.url(&format!("/o/{id}/items")), &[]).await?;
    assert_eq!(
        (r.status().as_u16(), served_by(&r).as_str()),
        (200, name(home)),
        "{body}"
    );
    assert!(header_str(&r, "x-request-id").is_some());
    // By key.
    let ks = KeyRouter::new(shards(1..=4))?.shard_for("acme");
    let (r, _) = get(&router.url("/dashboard"), &[("x-tenant", "acme")]).await?;
    assert_eq!(served_by(&r), name(snap.active_island(ks)?));
    // Unknown → default; an ID of another environment is no shard → default too.
    let (r, _) = get(&router.url("/static/app.js"), &[]).await?;
    assert_eq!(served_by(&r), "newest");
    let other_env = Id::new(if env == 1 { 2 } else { 1 }, s, 42)?.get();
    let (r, _) = get(&router.url(&format!("/o/{other_env}")), &[]).await?;
    assert_eq!(served_by(&r), "newest");
    // A negative route: the second request is answered by the router.
    let (r, _) = get(&router.url("/gone/x"), &[]).await?;
    assert_eq!(r.status().as_u16(), 404);
    let before = newest.count();
    let (r, body) = get(&router.url("/gone/y"), &[]).await?;
    assert_eq!(
        (r.status().as_u16(), newest.count()),
        (404, before),
        "{body}"
    );
    assert!(body.contains("no cell owns"), "{body}");

    // HTTP/2 (prior knowledge) through the router.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = h2.get(router.url(&format!("/o/{id}")).parse()?).await?;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-served-by"], name(home));
    let _ = resp.into_body().collect().await?;

    // A real move: the next requests go to the new owner.
    let to = if home == IslandId(0) {
        IslandId(1)
    } else {
        IslandId(0)
    };
    atoll_move::start_move(
        cluster.config(),
        &cluster.discover().await,
        s,
        to,
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await?;
    let moved = Instant::now();
    let mut served = String::new();
    while moved.elapsed() < Duration::from_secs(5) {
        let (r, _) = get(&router.url(&format!("/o/{id}")), &[]).await?;
        served = served_by(&r);
        if served == name(to) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        served,
        name(to),
        "not routed to the new owner within 5 s of the move"
    );
    eprintln!(
        "routed to the new owner {:?} after the move",
        moved.elapsed()
    );
    // The shard map changed: the negative route is gone, the cell is asked again.
    let before = newest.count();
    get(&router.url("/gone/z"), &[]).await?;
    assert_eq!(newest.count(), before + 1);

    let m = router.metrics().await;
    assert!(
        metric(&m, "atoll_router_shard_map_changes_total") >= 1.0,
        "{m}"
    );
    assert!(m.contains("source=\"rule\""), "{m}");
    assert!(
        m.contains(
            "atoll_router_requests_total{cell=\"newest\",source=\"default\",status=\"200\"}"
        ),
        "{m}"
    );

    // Graceful shutdown: a request in flight finishes.
    let slow = tokio::spawn(get_owned(router.url("/slow/report")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = router.h().addr;
    router.shutdown().await;
    let (r, _) = slow.await??;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
    Ok(())
}

async fn get_owned(url: String) -> Result<(http::Response<()>, String)> {
    get(&url, &[]).await
}
