//! Bounds and failures: the learned-route cache under a flood of distinct prefixes (10×
//! its cap), a cell address down (marked by health, idempotent and never-sent requests
//! retried at another address, a request the cell received not retried), the active probe
//! alone marking an address down and up, 404 jitter,
//! oversized headers, a bad cache header, and a config reload.

use crate::common::*;
use anyhow::Result;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_its_caps() -> Result<()> {
    // Every path teaches its own prefix.
    let teacher = TestCell::start(
        "eu0",
        Arc::new(|s: &Seen| {
            let top = s.path.split('/').nth(1).unwrap_or("x").to_string();
            let mut r = reply(200, "ok");
            r.headers_mut().insert(
                "x-atoll-cell-cache",
                format!("/{top}/* => eu0").parse().unwrap(),
            );
            r
        }),
    )
    .await?;
    let toml = format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndefault_cell = \"eu0\"\n[cache]\nmax_entries = 50\nmax_bytes = 8192\n{}",
        cells_toml(&[("eu0", vec![teacher.addr], &[])])
    );
    let router = TestRouter::start(&toml).await?;
    for i in 0..500 {
        let (r, _) = get(
            &router.url(&format!("/tenant-{i:05}-{}/x", "p".repeat(i % 40))),
            &[],
        )
        .await?;
        assert_eq!(r.status().as_u16(), 200);
    }
    let m = router.metrics().await;
    let entries = metric(&m, "atoll_router_cache_entries");
    let bytes = metric(&m, "atoll_router_cache_bytes");
    assert!(entries <= 50.0 && bytes <= 8192.0, "{m}");
    assert!(
        metric(&m, "atoll_router_cache_evictions_total") >= 450.0,
        "{m}"
    );
    assert_eq!(metric(&m, "atoll_router_routes_learned_total"), 500.0);
    eprintln!("cache after 500 distinct prefixes: {entries} entries, {bytes} bytes");
    router.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_retries_and_jitter() -> Result<()> {
    let good = TestCell::start(
        "eu0",
        Arc::new(|s: &Seen| {
            if s.path.starts_with("/missing") {
                reply(404, "no")
            } else {
                reply(200, "ok")
            }
        }),
    )
    .await?;
    // An address that refuses connections (bound, then closed).
    let refused = {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?
    };
    // An address that accepts, reads the request and hangs up without answering.
    let taker = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let taker_addr = taker.local_addr()?;
    let taken = Arc::new(AtomicUsize::new(0));
    let t = taken.clone();
    let taker_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = taker.accept().await {
            t.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    let toml = format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndefault_cell = \"down\"\njitter_404_ms = 150\nmax_header_bytes = 2048\n\
         [health]\nprobe_interval_ms = 0\nfailures_to_down = 1\n{}",
        cells_toml(&[("down", vec![refused, good.addr], &[]), ("flaky", vec![taker_addr, good.addr], &[])])
    );
    let router = TestRouter::start(&toml).await?;
    // Never received (refused): retried at the next address, POST included.
    for _ in 0..3 {
        let (r, body) = send("POST", &router.url("/write"), &[], Bytes::from_static(b"x")).await?;
        assert_eq!(r.status().as_u16(), 200, "{body}");
    }
    let m = router.metrics().await;
    assert!(
        m.contains(&format!(
            "atoll_router_cell_up{{cell=\"down\",addr=\"{refused}\"}} 0"
        )),
        "{m}"
    );
    // Received then lost: a POST is not retried, a GET is.
    std::fs::write(
        &router.path,
        std::fs::read_to_string(&router.path)?
            .replace("default_cell = \"down\"", "default_cell = \"flaky\""),
    )?;
    wait_reload(&router).await?;
    let mut post_failed = false;
    for _ in 0..4 {
        // Round robin: some attempts start at the taker.
        let before = taken.load(Ordering::SeqCst);
        let (r, _) = send("POST", &router.url("/write"), &[], Bytes::from_static(b"x")).await?;
        if taken.load(Ordering::SeqCst) > before {
            assert_eq!(r.status().as_u16(), 502, "a received POST is not retried");
            post_failed = true;
        }
        let (r, _) = get(&router.url("/read"), &[]).await?;
        assert_eq!(r.status().as_u16(), 200, "a GET is retried");
    }
    assert!(post_failed, "no POST reached the taker");
    // 404 jitter: delays spread over the configured range.
    let mut spent = Vec::new();
    for _ in 0..12 {
        let t0 = Instant::now();
        let (r, _) = get(&router.url("/missing"), &[]).await?;
        assert_eq!(r.status().as_u16(), 404);
        spent.push(t0.elapsed());
    }
    let (lo, hi) = (spent.iter().min().unwrap(), spent.iter().max().unwrap());
    assert!(
        *hi - *lo > Duration::from_millis(20),
        "no jitter: {spent:?}"
    );
    // Oversized headers: 431 with a reason.
    let (r, body) = get(&router.url("/read"), &[("x-big", &"a".repeat(4000))]).await?;
    assert_eq!(r.status().as_u16(), 431, "{body}");
    let m = router.metrics().await;
    assert!(metric(&m, "atoll_router_jitter_seconds_total") > 0.0, "{m}");
    router.shutdown().await;
    taker_task.abort();
    Ok(())
}

async fn wait_reload(router: &TestRouter) -> Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if metric(&router.metrics().await, "atoll_router_config_reloads_total") >= 1.0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("config not reloaded")
}

/// The active probe alone (no request is sent) marks a cell address down while nothing
/// listens there, and up again once a cell answers its probe path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_probe_marks_an_address_down_then_up() -> Result<()> {
    let free = {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?
    };
    let toml = format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndefault_cell = \"c\"\n\
         [health]\nprobe_interval_ms = 100\nfailures_to_down = 2\n{}",
        cells_toml(&[("c", vec![free], &[])])
    );
    let router = TestRouter::start(&toml).await?;
    let up = format!("atoll_router_cell_up{{cell=\"c\",addr=\"{free}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&router.metrics().await, &up) != 0.0 {
        assert!(Instant::now() < deadline, "never marked down by the probe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cell = TestCell::start_on(free, "c", ok_cell()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&router.metrics().await, &up) != 1.0 {
        assert!(Instant::now() < deadline, "never marked up by the probe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cell.count(), 0, "only probes reached the cell");
    router.shutdown().await;
    Ok(())
}
