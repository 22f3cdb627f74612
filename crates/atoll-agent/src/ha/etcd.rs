//! The few etcd operations failover needs, each bounded by a timeout: one session lease per
//! agent (granted, renewed, revoked), reads of an island's keys, puts under the lease, and
//! the two compare-and-swap transactions on the leader key (take it when absent; hand it
//! over when held).

use atoll_core::ha::HaConfig;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};
use std::time::Duration;

/// Bound on one request: a slow etcd is a lost etcd for the loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Why an etcd operation failed (unreachable, timed out, refused).
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd: {0}")]
pub struct EtcdError(pub String);

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        EtcdError(e.to_string())
    }
}

type R<T> = Result<T, EtcdError>;

async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> R<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(EtcdError::from),
        Err(_) => Err(EtcdError(format!(
            "{what} timed out after {} ms",
            REQUEST_TIMEOUT.as_millis()
        ))),
    }
}

/// A connection to the etcd cluster of `[ha]`.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
}

/// A key's value with the revision facts the loop compares.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value (UTF-8; JSON or a node address).
    pub value: String,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

impl Entry {
    fn from_kv(kv: &KeyValue) -> Entry {
        Entry {
            value: String::from_utf8_lossy(kv.value()).into_owned(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }
}

impl Etcd {
    /// Connects to the endpoints of `cfg`.
    pub async fn connect(cfg: &HaConfig) -> R<Etcd> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let client = bounded("connect", Client::connect(&cfg.endpoints, Some(opts))).await?;
        Ok(Etcd { client })
    }

    /// Grants a lease of `ttl`; returns its id.
    pub async fn grant(&self, ttl: Duration) -> R<i64> {
        let mut c = self.client.clone();
        let r = bounded("lease grant", c.lease_grant(ttl.as_secs() as i64, None)).await?;
        Ok(r.id())
    }

    /// Renews lease `id` once; false when etcd no longer knows it (it expired).
    pub async fn renew(&self, id: i64) -> R<bool> {
        let mut c = self.client.clone();
        let renew = async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match bounded("lease renewal", renew).await {
            Ok(r) => Ok(r.is_some_and(|m| m.ttl() > 0)),
            // An expired lease is refused rather than answered with a TTL of 0.
            Err(e) if e.0.contains("lease not found") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Revokes lease `id`: every key under it is deleted at once.
    pub async fn revoke(&self, id: i64) -> R<()> {
        let mut c = self.client.clone();
        bounded("lease revoke", c.lease_revoke(id)).await.map(drop)
    }

    /// The value of `key`, and the store's revision at the read.
    pub async fn get(&self, key: &str) -> R<(Option<Entry>, i64)> {
        let mut c = self.client.clone();
        let r = bounded("get", c.get(key, None)).await?;
        let rev = r.header().map_or(0, |h| h.revision());
        Ok((r.kvs().first().map(Entry::from_kv), rev))
    }

    /// Every key under `prefix` with its entry.
    pub async fn get_prefix(&self, prefix: &str) -> R<Vec<(String, Entry)>> {
        let mut c = self.client.clone();
        let r = bounded(
            "get prefix",
            c.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        Ok(r.kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Entry::from_kv(kv),
                )
            })
            .collect())
    }

    /// Puts `value` at `key`, under `lease` when given.
    pub async fn put(&self, key: &str, value: String, lease: Option<i64>) -> R<()> {
        let mut c = self.client.clone();
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        bounded("put", c.put(key, value, opts)).await.map(drop)
    }

    /// Takes `key` for `value` under `lease` if nobody holds it; true when taken.
    pub async fn create(&self, key: &str, value: &str, lease: i64) -> R<bool> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(bounded("txn", c.txn(txn)).await?.succeeded())
    }

    /// Replaces `key`'s value and lease if it is still at `mod_revision`; true when done.
    pub async fn swap(&self, key: &str, mod_revision: i64, value: &str, lease: i64) -> R<bool> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(bounded("txn", c.txn(txn)).await?.succeeded())
    }
}
