//! Scatter-gather: one piece of work per shard, run with a concurrency limit, results as a
//! stream in completion order, each tagged with its shard so per-shard errors are reported,
//! not swallowed.

use crate::cluster::Cluster;
use crate::error::ClientError;
use crate::shard::Shard;
use atoll_core::ShardNo;
use futures::stream::{self, Stream, StreamExt};
use std::future::Future;

impl Cluster {
    /// Runs `work` on every shard of `shards` (`None`: every active shard other than shard 0,
    /// as of now), at most `concurrency` at a time. Each shard's result, success or error,
    /// arrives as its own item.
    pub fn scatter<T, F, Fut>(
        &self,
        shards: Option<Vec<ShardNo>>,
        concurrency: usize,
        work: F,
    ) -> impl Stream<Item = (ShardNo, Result<T, ClientError>)>
    where
        F: Fn(Shard) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let list = shards.unwrap_or_else(|| self.active_shard_numbers());
        let cluster = self.clone();
        stream::iter(list)
            .map(move |no| {
                let fut = work(cluster.shard(no));
                async move { (no, fut.await) }
            })
            .buffer_unordered(concurrency.max(1))
    }
}
