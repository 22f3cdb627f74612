//! What every request reads: the config and health in force (swapped whole on a reload),
//! the learned routes, the body budget, the counters, the upstream client, discovery.

use crate::body::RouterBody;
use crate::cache::RouteCache;
use crate::config::RouterConfig;
use crate::discovery::Discovery;
use crate::health::Health;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Pooled HTTP/1.1 connections to the cells.
pub type Upstream = Client<HttpConnector, RouterBody>;

fn upstream(config: &RouterConfig) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .http1_writev(false)
        .build(connector)
}

/// The config in force and its cells' health.
pub struct Live {
    /// The config.
    pub config: Arc<RouterConfig>,
    /// Health of its cells' addresses.
    pub health: Arc<Health>,
}

/// Shared by every connection of a router.
pub struct Shared {
    /// Swapped whole by a reload.
    pub live: ArcSwap<Live>,
    /// Learned routes (bounds from the config the router started with).
    pub cache: RouteCache,
    /// Bytes of request bodies that may be held at once.
    pub budget: Arc<Semaphore>,
    /// The budget's size.
    pub budget_total: u64,
    /// Counters.
    pub metrics: Metrics,
    /// Connections to the cells for the health probes (HTTP/1.1, pooled); each proxy
    /// worker has its own pool ([`Shared::upstream`]).
    pub client: Upstream,
    /// The cluster, when the config names one.
    pub discovery: Option<Discovery>,
}

impl Shared {
    /// The state for `config`.
    pub fn new(config: RouterConfig, discovery: Option<Discovery>) -> Shared {
        let client = upstream(&config);
        let budget_total = config.body_budget_bytes;
        let health = Arc::new(Health::new(&config, None));
        Shared {
            cache: RouteCache::new(config.cache.clone()),
            budget: Arc::new(Semaphore::new(budget_total.min(u32::MAX as u64) as usize)),
            budget_total,
            metrics: Metrics::default(),
            client,
            discovery,
            live: ArcSwap::from_pointee(Live {
                config: Arc::new(config),
                health,
            }),
        }
    }

    /// A new pool of connections to the cells, for one proxy worker: its connections are
    /// driven by the runtime of the thread that opens them.
    pub fn upstream(&self) -> Upstream {
        upstream(&self.live.load().config)
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        let live = self.live.load();
        self.metrics.render(
            &self.cache,
            &live.health,
            (self.budget.available_permits() as u64, self.budget_total),
        )
    }
}
