//! Routing external keys (strings, integers, UUIDs) onto a declared, fixed list of shards.
//!
//! Objects that have no atoll [`crate::Id`] of their own (an email, a tenant slug, an
//! external UUID) are placed by `hash(key)`: the key is hashed with **xxh3-64, seed
//! [`KEY_HASH_SEED`]**, and the hash picks one of the declared shards with Lamping & Veach's
//! *jump consistent hash*. Both are part of the on-disk contract: a key's shard is where its
//! rows already are, so the hash function, the seed and the byte encoding of each key type
//! below must never change across atoll versions.
//!
//! The declared list does not follow allocation: allocating more microshards later changes
//! nothing for existing keys. Growing the declared list itself (appending shards) moves
//! only the keys that jump hash sends to the new shards (about `added / total` of them),
//! never between the old shards; that migration is the application's decision.

use crate::shard::ShardNo;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed of the key hash ("atoll" in ASCII). Fixed forever.
pub const KEY_HASH_SEED: u64 = 0x61_74_6f_6c_6c;

/// A key that can be routed. The byte encodings are fixed forever:
/// strings hash their UTF-8 bytes, integers their 8 big-endian bytes, UUIDs their 16 bytes.
pub trait RouteKey {
    /// The key's hash: xxh3-64 with [`KEY_HASH_SEED`] over the key's fixed byte encoding.
    fn route_hash(&self) -> u64;
}

impl RouteKey for str {
    fn route_hash(&self) -> u64 {
        xxh3_64_with_seed(self.as_bytes(), KEY_HASH_SEED)
    }
}
impl RouteKey for String {
    fn route_hash(&self) -> u64 {
        self.as_str().route_hash()
    }
}
impl RouteKey for [u8] {
    fn route_hash(&self) -> u64 {
        xxh3_64_with_seed(self, KEY_HASH_SEED)
    }
}
impl RouteKey for i64 {
    fn route_hash(&self) -> u64 {
        xxh3_64_with_seed(&self.to_be_bytes(), KEY_HASH_SEED)
    }
}
impl RouteKey for u64 {
    fn route_hash(&self) -> u64 {
        xxh3_64_with_seed(&self.to_be_bytes(), KEY_HASH_SEED)
    }
}
impl RouteKey for uuid::Uuid {
    fn route_hash(&self) -> u64 {
        xxh3_64_with_seed(self.as_bytes(), KEY_HASH_SEED)
    }
}
impl<T: RouteKey + ?Sized> RouteKey for &T {
    fn route_hash(&self) -> u64 {
        (**self).route_hash()
    }
}

/// Jump consistent hash (Lamping & Veach, 2014): a bucket in `0..buckets` for `key`;
/// growing `buckets` only moves keys into the new buckets. `buckets` must be > 0.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

/// Why a shard list cannot make a [`KeyRouter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRouterError {
    /// The list is empty.
    #[error("a key router needs at least one shard")]
    Empty,
    /// The list names this shard more than once.
    #[error("{0} is declared twice in the key router's shard list")]
    Duplicate(ShardNo),
}

/// Routes keys onto a declared list of shards (for example `1-64`). The order of the list
/// is part of the mapping: keep it as declared, append to grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRouter {
    shards: Vec<ShardNo>,
}

impl KeyRouter {
    /// A router over `shards`, in the declared order; refuses an empty list or a duplicate.
    pub fn new(shards: Vec<ShardNo>) -> Result<KeyRouter, KeyRouterError> {
        if shards.is_empty() {
            return Err(KeyRouterError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = shards.iter().find(|s| !seen.insert(**s)) {
            return Err(KeyRouterError::Duplicate(*d));
        }
        Ok(KeyRouter { shards })
    }

    /// The declared shards, in the declared order.
    pub fn shards(&self) -> &[ShardNo] {
        &self.shards
    }

    /// The shard that owns `key`.
    pub fn shard_for<K: RouteKey + ?Sized>(&self, key: &K) -> ShardNo {
        let i = jump_hash(key.route_hash(), self.shards.len() as u32) as usize;
        // jump_hash returns < len, and len > 0 by construction.
        self.shards[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: i64, b: i64) -> Vec<ShardNo> {
        (a..=b).map(|n| ShardNo::new(n).unwrap()).collect()
    }

    #[test]
    fn hash_values_are_frozen() {
        // These values are the contract: if this test fails, existing data would be
        // looked for on the wrong shard. Never update them.
        let got = (
            "alice@example.com".route_hash(),
            42i64.route_hash(),
            uuid::Uuid::from_u128(1).route_hash(),
        );
        let r = KeyRouter::new(range(1, 64)).unwrap();
        let shards: Vec<u16> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|k| r.shard_for(*k).get())
            .collect();
        assert_eq!(
            got,
            (
                8751762000150413784,
                9775322748048606109,
                16330316997889071601
            )
        );
        assert_eq!(shards, vec![40, 9, 7, 20]);
    }

    #[test]
    fn jump_hash_basics() {
        assert_eq!(jump_hash(0, 1), 0);
        for k in 0..1000u64 {
            assert!(jump_hash(k.route_hash(), 7) < 7);
        }
    }

    #[test]
    fn router_refuses_bad_lists() {
        assert_eq!(KeyRouter::new(vec![]), Err(KeyRouterError::Empty));
        let mut l = range(1, 3);
        l.push(ShardNo::new(2).unwrap());
        assert!(matches!(
            KeyRouter::new(l),
            Err(KeyRouterError::Duplicate(_))
        ));
    }

    #[test]
    fn key_types_route() {
        let r = KeyRouter::new(range(1, 16)).unwrap();
        let u = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        for s in [
            r.shard_for("x"),
            r.shard_for(&String::from("x")),
            r.shard_for(&42i64),
            r.shard_for(&u),
        ] {
            assert!((1..=16).contains(&s.get()));
        }
        assert_eq!(r.shard_for("x"), r.shard_for(&String::from("x")));
        assert_eq!(r.shard_for("x"), r.shard_for(b"x".as_slice()));
    }
}
