//! Active health probes: a `GET` of the probe path on every cell address each interval;
//! an answer below 500 is healthy.

use crate::body::full;
use crate::state::Shared;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Probes until `stopped` changes.
pub async fn run(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let live = shared.live.load_full();
        let interval = live.config.health.probe_interval;
        if !interval.is_zero() {
            let limit = live.config.connect_timeout.max(Duration::from_millis(500));
            let mut probes = Vec::new();
            for (_, cell) in live.health.all() {
                for a in &cell.addrs {
                    let uri = format!("http://{}{}", a.addr, live.config.health.probe_path);
                    let Ok(req) = http::Request::get(uri).body(full(Bytes::new())) else {
                        continue;
                    };
                    let (client, a, health) =
                        (shared.client.clone(), a.clone(), live.health.clone());
                    probes.push(async move {
                        match tokio::time::timeout(limit, client.request(req)).await {
                            Ok(Ok(r)) if r.status().as_u16() < 500 => health.succeeded(&a),
                            _ => health.failed(&a),
                        }
                    });
                }
            }
            futures::future::join_all(probes).await;
        }
        let wait = if interval.is_zero() {
            Duration::from_secs(1)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}
