//! Live updates for the console. One task ([`publish`]) builds the overview every 100 ms
//! and publishes its JSON when it changed; `/api/v1/events` is a server-sent event stream
//! per page that sends the latest overview (`event: overview`) at once and then every new
//! one, so the page follows the cluster within ~0.1 s of the snapshot changing, and the cost
//! does not grow with the number of pages open. A stream ends when the server stops, so a
//! graceful shutdown does not wait on it.

use crate::actions::Actions;
use crate::api::App;
use crate::overview;
use crate::view::CatalogView;
use atoll_client::Cluster;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the overview is rebuilt and compared with the last one published.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The latest overview's JSON, as published.
pub type Published = watch::Receiver<Arc<String>>;

/// Builds the overview every [`CHECK_EVERY`] and sends it on `tx` when it changed, until
/// `stopped` changes.
pub async fn publish(
    cluster: Cluster,
    catalog: Arc<arc_swap::ArcSwap<CatalogView>>,
    actions: Arc<Actions>,
    tx: watch::Sender<Arc<String>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let o = overview::build(&cluster.snapshot(), &catalog.load(), &actions.state());
        match serde_json::to_string(&o) {
            Ok(json) => {
                tx.send_if_modified(|cur| {
                    let changed = **cur != json;
                    if changed {
                        *cur = Arc::new(json);
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "atoll-serve: the overview does not serialise"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The event stream of one page.
#[utoipa::path(get, path = "/api/v1/events", tag = "read",
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-sent events: `event: overview` with the overview's JSON at once, then each time it changes (checked every 100 ms)")))]
pub async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = app.overview.clone();
    // The current overview goes out first, whatever was sent before.
    rx.mark_changed();
    let s = stream::unfold((rx, app.stopped), |(mut rx, mut stopped)| async move {
        let json = loop {
            if *stopped.borrow() {
                return None;
            }
            tokio::select! {
                r = rx.changed() => r.ok()?,
                _ = stopped.changed() => return None,
            }
            let json = rx.borrow_and_update().clone();
            // Empty until the first overview is built.
            if !json.is_empty() {
                break json;
            }
        };
        let event = Event::default().event("overview").data(json.as_str());
        Some((Ok(event), (rx, stopped)))
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
