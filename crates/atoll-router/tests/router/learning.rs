//! Learning from cells (no cluster needed): a bounced request is re-sent once and its
//! prefix learned, so the next goes straight; the loop guard; a redirect to an unknown
//! cell; spoofed inbound routing headers; a body over the buffer cap gets a 307 and is
//! never truncated.

use crate::common::*;
use anyhow::Result;
use bytes::Bytes;
use std::sync::Arc;

fn config(cells: &[(&str, Vec<std::net::SocketAddr>, &[u16])], extra: &str) -> String {
    format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndefault_cell = \"eu1\"\njitter_404_ms = 0\n{extra}\n{}",
        cells_toml(cells)
    )
}

/// eu1 (the default) owns nothing under /acme and sends it to eu0, teaching the prefix.
fn bouncer() -> Behavior {
    Arc::new(|s: &Seen| {
        if s.path.starts_with("/acme") {
            redirect("eu0", Some("/acme/* => eu0; ttl=60"))
        } else if s.path.starts_with("/loop") {
            redirect("eu0", None)
        } else if s.path.starts_with("/poison") {
            // Teaches a prefix it was not asked about, then garbage: both ignored.
            let mut r = reply(200, "eu1");
            let v = if s.path == "/poison" {
                "/acme/* => eu1"
            } else {
                "nonsense"
            };
            r.headers_mut()
                .insert("x-atoll-cell-cache", v.parse().unwrap());
            r
        } else if s.path.starts_with("/nowhere") {
            redirect("mars", None)
        } else {
            reply(200, "eu1")
        }
    })
}

/// eu0 owns /acme and bounces /loop back.
fn owner() -> Behavior {
    Arc::new(|s: &Seen| {
        if s.path.starts_with("/loop") {
            redirect("eu1", None)
        } else {
            reply(
                200,
                &format!(
                    "eu0 got {} bytes sum {}",
                    s.body.len(),
                    s.body.iter().map(|b| *b as u64).sum::<u64>()
                ),
            )
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learns_a_route_after_one_bounce() -> Result<()> {
    let eu0 = TestCell::start("eu0", owner()).await?;
    let eu1 = TestCell::start("eu1", bouncer()).await?;
    let router = TestRouter::start(&config(
        &[("eu0", vec![eu0.addr], &[]), ("eu1", vec![eu1.addr], &[])],
        "",
    ))
    .await?;
    let (r, body) = send(
        "POST",
        &router.url("/acme/project"),
        &[("x-request-id", "req-1")],
        Bytes::from_static(b"hello"),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200, "{body}");
    assert_eq!(
        body,
        format!(
            "eu0 got 5 bytes sum {}",
            b"hello".iter().map(|b| *b as u64).sum::<u64>()
        )
    );
    assert_eq!(
        (eu1.count(), eu0.count()),
        (1, 1),
        "bounced once, re-sent once"
    );
    assert_eq!(eu0.last().headers["x-atoll-router-hop"], "1");
    assert_eq!(eu0.last().headers["x-request-id"], "req-1");
    assert_eq!(header_str(&r, "x-request-id").as_deref(), Some("req-1"));
    assert!(
        r.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("x-atoll-")),
        "{:?}",
        r.headers()
    );
    // The second goes straight to the owner.
    let (r, _) = get(&router.url("/acme/other"), &[]).await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!((eu1.count(), eu0.count()), (1, 2));
    assert!(eu0.last().headers.get("x-atoll-router-hop").is_none());
    let m = router.metrics().await;
    assert!(
        m.contains("atoll_router_requests_total{cell=\"eu0\",source=\"learned\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "atoll_router_requests_total{cell=\"eu0\",source=\"redirect\",status=\"200\"} 1"
        ),
        "{m}"
    );
    assert_eq!(metric(&m, "atoll_router_routes_learned_total"), 1.0);
    router.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_guard_unknown_cells_and_spoofed_headers() -> Result<()> {
    let eu0 = TestCell::start("eu0", owner()).await?;
    let eu1 = TestCell::start("eu1", bouncer()).await?;
    let router = TestRouter::start(&config(
        &[("eu0", vec![eu0.addr], &[]), ("eu1", vec![eu1.addr], &[])],
        "",
    ))
    .await?;
    // eu1 → eu0 → eu1: one hop only.
    let (r, body) = get(&router.url("/loop/x"), &[]).await?;
    assert_eq!(r.status().as_u16(), 502);
    assert!(body.contains("loop guard"), "{body}");
    assert_eq!((eu1.count(), eu0.count()), (1, 1));
    // A redirect to a cell the router does not know.
    let (r, body) = get(&router.url("/nowhere"), &[]).await?;
    assert_eq!(r.status().as_u16(), 502);
    assert!(body.contains("unknown cell \"mars\""), "{body}");
    // A client cannot steer routing nor teach routes: its X-Atoll-* never reach a cell.
    let (r, _) = get(
        &router.url("/plain"),
        &[
            ("x-atoll-cell-redirect", "eu0"),
            ("x-atoll-cell-cache", "/plain/* => eu0"),
            ("x-atoll-router-hop", "1"),
        ],
    )
    .await?;
    assert_eq!(header_str(&r, "x-served-by").as_deref(), Some("eu1"));
    let seen = eu1.last();
    assert!(
        seen.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-atoll-")),
        "{:?}",
        seen.headers
    );
    let (r, _) = get(&router.url("/plain"), &[]).await?;
    assert_eq!(
        header_str(&r, "x-served-by").as_deref(),
        Some("eu1"),
        "nothing learned from a client"
    );
    // Cache headers that do not cover the request, or do not parse, teach nothing.
    for p in ["/poison", "/poison2"] {
        let (r, _) = get(&router.url(p), &[]).await?;
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers().get("x-atoll-cell-cache").is_none());
    }
    let m = router.metrics().await;
    assert_eq!(
        metric(&m, "atoll_router_bad_cell_headers_total"),
        3.0,
        "unknown redirect + 2 cache headers: {m}"
    );
    assert_eq!(metric(&m, "atoll_router_routes_learned_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "atoll_router_loop_guard_total"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "atoll_router_inbound_headers_stripped_total"),
        3.0,
        "{m}"
    );
    router.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_gets_a_307_and_is_never_truncated() -> Result<()> {
    let eu0 = TestCell::start("eu0", owner()).await?;
    let eu1 = TestCell::start("eu1", bouncer()).await?;
    let router = TestRouter::start(&config(
        &[("eu0", vec![eu0.addr], &[]), ("eu1", vec![eu1.addr], &[])],
        "body_buffer_bytes = 1024\nbody_budget_bytes = 4096",
    ))
    .await?;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = big.iter().map(|b| *b as u64).sum();
    let (r, body) = send(
        "PUT",
        &router.url("/acme/upload?part=1"),
        &[],
        Bytes::from(big.clone()),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 307, "{body}");
    assert_eq!(
        header_str(&r, "location").as_deref(),
        Some("/acme/upload?part=1")
    );
    assert_eq!(
        eu1.last().body.len(),
        big.len(),
        "the first cell got the whole body"
    );
    assert_eq!(eu0.count(), 0, "not re-sent");
    // The client re-sends: straight to the owner, whole.
    let (r, body) = send(
        "PUT",
        &router.url("/acme/upload?part=1"),
        &[],
        Bytes::from(big.clone()),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(body, format!("eu0 got {} bytes sum {sum}", big.len()));
    let m = router.metrics().await;
    assert_eq!(
        metric(&m, "atoll_router_redirects_passed_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "atoll_router_body_held_bytes"),
        0.0,
        "budget returned: {m}"
    );
    router.shutdown().await;
    Ok(())
}
