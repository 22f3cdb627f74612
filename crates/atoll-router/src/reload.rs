//! Hot reload: the config file is checked every half second; a new version that validates
//! replaces the cells, rules and limits in force (addresses that stayed keep their health),
//! a broken one is logged and counted and the running config stays. The listen addresses,
//! the workers, the cluster config, the cache bounds and the body budget apply at start only.

use crate::config::RouterConfig;
use crate::health::Health;
use crate::metrics::Event;
use crate::state::{Live, Shared};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches `path` until `stopped` changes.
pub async fn run(shared: Arc<Shared>, path: PathBuf, mut stopped: watch::Receiver<bool>) {
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stopped.changed() => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        apply(&shared, RouterConfig::from_file(&path));
    }
}

/// Installs `new` if it loaded; keeps the old config otherwise.
pub fn apply(shared: &Shared, new: Result<RouterConfig, crate::RouterError>) {
    match new {
        Ok(config) => {
            let old = shared.live.load_full();
            if config.listen != old.config.listen
                || config.atoll_config != old.config.atoll_config
                || config.workers != old.config.workers
            {
                tracing::warn!(
                    "atoll-router: listen, workers and atoll_config changes apply at the next start"
                );
            }
            let health = Arc::new(Health::new(&config, Some(&old.health)));
            shared.live.store(Arc::new(Live {
                config: Arc::new(config),
                health,
            }));
            shared.metrics.add(Event::ReloadApplied, 1);
            tracing::info!("atoll-router: config reloaded");
        }
        Err(e) => {
            shared.metrics.add(Event::ReloadRefused, 1);
            tracing::warn!(error = %e, "atoll-router: config changed but is invalid; keeping the old one");
        }
    }
}
