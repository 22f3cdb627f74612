//! Property tests for the ID codecs (database and application ranges) and for key routing.

use atoll_core::keys::{jump_hash, KeyRouter, RouteKey};
use atoll_core::{Id, IdGenError, IdGenerator, ShardNo, GENERATOR_EPOCH_UNIX_S, SEQUENCE_MAX};
use proptest::prelude::*;
use std::collections::HashSet;

fn shards(n: u16) -> Vec<ShardNo> {
    (1..=n as i64).map(|s| ShardNo::new(s).unwrap()).collect()
}

proptest! {
    #[test]
    fn id_codec_round_trips(env in 1u8..=8, shard in 0i64..=9999, counter in 0i64..100_000_000_000_000) {
        let s = ShardNo::new(shard).unwrap();
        let id = Id::new(env, s, counter).unwrap();
        prop_assert_eq!(id.to_string().len(), 19);
        prop_assert_eq!(Id::parse(id.get()).unwrap(), id);
        prop_assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
        prop_assert_eq!((id.env(), id.shard(), id.counter()), (env, s, counter));
    }

    #[test]
    fn out_of_range_ids_are_refused(raw in any::<i64>()) {
        let ok = (1_000_000_000_000_000_000..9_000_000_000_000_000_000).contains(&raw);
        prop_assert_eq!(Id::parse(raw).is_ok(), ok);
    }

    #[test]
    fn app_ids_decode_to_what_made_them(
        env in 1u8..=8, node in 0u16..1000, shard in 0i64..=9999,
        secs in 0u64..800_000_000, ms in 0u64..1000,
    ) {
        let g = IdGenerator::new(env, node).unwrap();
        let s = ShardNo::new(shard).unwrap();
        let now_ms = (GENERATOR_EPOCH_UNIX_S + secs) * 1000 + ms;
        let id = g.next_at(s, now_ms).unwrap();
        prop_assert!(id.counter() > SEQUENCE_MAX);
        let p = IdGenerator::parts(id).unwrap();
        prop_assert_eq!((p.shard, p.node, p.seq, p.unix_s), (s, node, 0, now_ms / 1000));
        prop_assert_eq!(Id::parse(id.get()).unwrap(), id);
    }

    /// Whatever the clock does (jumps back and forth), one generator never repeats an ID and
    /// its IDs increase per shard; two generators with different node ids never collide.
    #[test]
    fn app_ids_unique_under_any_clock(steps in proptest::collection::vec((0u64..120_000, 0i64..3, any::<bool>()), 1..400)) {
        let a = IdGenerator::new(1, 1).unwrap();
        let b = IdGenerator::new(1, 2).unwrap();
        let base = (GENERATOR_EPOCH_UNIX_S + 10_000_000) * 1000;
        let mut seen = HashSet::new();
        let mut last = [None; 3];
        for (offset, shard, which) in steps {
            let g = if which { &a } else { &b };
            let s = ShardNo::new(shard + 1).unwrap();
            match g.next_at(s, base + offset) {
                Ok(id) => {
                    prop_assert!(seen.insert(id));
                    if which {
                        prop_assert!(Some(id) > last[shard as usize]);
                        last[shard as usize] = Some(id);
                    }
                }
                Err(IdGenError::Ahead { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
    }

    /// Growing the declared list moves keys only onto the added shards, never between old ones.
    #[test]
    fn growing_the_declared_list_only_moves_keys_to_new_shards(
        keys in proptest::collection::vec(any::<i64>(), 1..200), n in 1u16..100, add in 1u16..50,
    ) {
        let small = KeyRouter::new(shards(n)).unwrap();
        let big = KeyRouter::new(shards(n + add)).unwrap();
        for k in keys {
            let before = small.shard_for(&k);
            let after = big.shard_for(&k);
            prop_assert!(after == before || after.get() > n, "{k}: {before} -> {after}");
        }
    }

    #[test]
    fn routing_is_deterministic_and_in_range(key in ".*", n in 1u16..200) {
        let r = KeyRouter::new(shards(n)).unwrap();
        let s = r.shard_for(key.as_str());
        prop_assert_eq!(s, KeyRouter::new(shards(n)).unwrap().shard_for(&key));
        prop_assert!((1..=n).contains(&s.get()));
        prop_assert!(jump_hash(key.route_hash(), n as u32) < n as u32);
    }
}

/// Balance over 64 shards for 1 M sequential keys, integers and strings: each shard within
/// ±10% of the mean.
#[test]
fn sequential_keys_balance_within_ten_percent() {
    let router = KeyRouter::new(shards(64)).unwrap();
    let mean = 1_000_000.0 / 64.0;
    let check = |counts: &[u32; 64], what: &str| {
        for (i, c) in counts.iter().enumerate() {
            let dev = (*c as f64 - mean) / mean;
            assert!(
                dev.abs() <= 0.10,
                "{what}: shard {} has {c} keys ({:+.1}%)",
                i + 1,
                dev * 100.0
            );
        }
    };
    let mut ints = [0u32; 64];
    let mut strs = [0u32; 64];
    for k in 0..1_000_000i64 {
        ints[router.shard_for(&k).get() as usize - 1] += 1;
        strs[router.shard_for(format!("user-{k}").as_str()).get() as usize - 1] += 1;
    }
    check(&ints, "i64 keys");
    check(&strs, "string keys");
}
