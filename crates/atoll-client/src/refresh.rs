//! The background task that keeps a cluster's snapshot fresh: a discovery round every
//! jittered period, at once when a query hits a routing error (a `Notify`), and a reload of
//! the config file whenever its modification time or size changes (then the `Discoverer` and
//! the pools are rebuilt for the new islands list).

use crate::cluster::Shared;
use crate::pools;
use crate::ClusterOptions;
use atoll_core::{Config, ConfigSource};
use atoll_pg::{Discoverer, DiscoveryOptions};
use rand::Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What identifies a version of the config file without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub(crate) fn discoverer(config: &Config, options: &ClusterOptions) -> Discoverer {
    Discoverer::new(
        config.clone(),
        DiscoveryOptions {
            sizes: options.shard_sizes,
            node_timeout: options.node_timeout,
        },
    )
}

/// The watched config file, when the config came from one.
pub(crate) struct Watch {
    path: PathBuf,
    stamp: Stamp,
}

impl Watch {
    pub(crate) fn new(config: &Config) -> Option<Watch> {
        match &config.source {
            ConfigSource::File(p) => Some(Watch {
                path: p.clone(),
                stamp: stamp(p),
            }),
            _ => None,
        }
    }

    /// The new config if the file changed and parses; a broken file is logged and ignored
    /// (the running config stays), so a half-written edit cannot take the client down.
    fn changed(&mut self) -> Option<Config> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return None;
        }
        self.stamp = now;
        match Config::from_file(&self.path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "atoll-client: config file changed but does not parse; keeping the old one");
                None
            }
        }
    }
}

fn jittered(period: Duration) -> Duration {
    let f: f64 = rand::thread_rng().gen_range(0.75..1.25);
    period.mul_f64(f)
}

pub(crate) async fn run(shared: Arc<Shared>, mut disc: Discoverer, mut watch: Option<Watch>) {
    let opts = shared.options.clone();
    let mut last_round = Instant::now();
    // Shard notices: one listener per island master, moved along with each round.
    let mut notices = crate::notices::listener(&shared);
    // And one warm pooled connection per master (`warm_masters`).
    let follow = |notices: &mut Option<atoll_pg::notices::ShardNotices>| {
        let state = shared.state.load();
        let masters = crate::notices::masters(&state.config, &state.snapshot);
        if let Some(n) = notices.as_mut() {
            n.follow(&masters);
        }
        if opts.warm_masters {
            pools::warm_masters(&state.pools, &masters);
        }
    };
    follow(&mut notices);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(opts.refresh_period)) => {}
            _ = shared.wake.notified() => {}
        }
        let since = last_round.elapsed();
        if since < opts.min_refresh_interval {
            tokio::time::sleep(opts.min_refresh_interval - since).await;
        }
        let old = shared.state.load_full();
        let mut config = old.config.clone();
        let mut pools = old.pools.clone();
        let changed = match watch.as_mut().and_then(Watch::changed) {
            Some(new) => match atoll_pg::endpoints::resolve(&new).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "atoll-client: config file changed but its endpoints do not resolve; keeping the old config");
                    None
                }
            },
            None => None,
        };
        if let Some(new) = changed {
            tracing::info!(source = %new.source, islands = new.islands.len(), "atoll-client: config reloaded");
            disc = discoverer(&new, &opts);
            pools = pools::build(&new, &opts, Some(&old.pools));
            config = Arc::new(new);
        }
        let covers = shared.round_start();
        let t0 = Instant::now();
        let snapshot = disc.discover().await;
        shared.counters.record_discovery(t0.elapsed());
        last_round = Instant::now();
        shared.install(config, snapshot, pools, covers);
        follow(&mut notices);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[cluster]\nname = \"t\"\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 1, user = \"u\", database = \"d\" }]\n";

    #[test]
    fn config_file_changes_are_noticed_and_broken_files_ignored() {
        let dir = std::env::temp_dir().join(format!("atoll-client-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("atoll.toml");
        std::fs::write(&path, ONE).unwrap();
        let config = Config::from_file(&path).unwrap();
        let mut watch = Watch::new(&config).unwrap();
        assert!(watch.changed().is_none(), "unchanged file");
        let two = ONE.replace("port = 1,", "port = 1 }, { host = \"127.0.0.1\", port = 2,");
        std::fs::write(&path, &two).unwrap();
        let new = watch.changed().expect("changed file is reloaded");
        assert_eq!(new.islands[0].nodes.len(), 2);
        assert!(watch.changed().is_none(), "reloaded once");
        std::fs::write(&path, "[[island]\nbroken").unwrap();
        assert!(
            watch.changed().is_none(),
            "a broken file keeps the old config"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // A config that is not from a file is not watched.
        let inline = Config::parse(ONE, ConfigSource::Inline).unwrap();
        assert!(Watch::new(&inline).is_none());
    }
}
