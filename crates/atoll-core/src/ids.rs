//! Shard-encoded IDs: the decimal layout `E ssss RRRRRRRRRRRRRR` in an `i64`.
//!
//! - `E`: the environment digit, 1..=8 (0 would drop a digit; 9 overflows `i64` for
//!   shards above 2233), so every ID has exactly 19 decimal digits;
//! - `ssss`: the microshard, 0000..=9999, recoverable from any ID in O(1);
//! - `R`: 14 digits, split in two disjoint ranges so the two generators never collide:
//!   `R < 10^13` comes from the per-shard database sequence (`shNNNN.id_gen()`),
//!   `R >= 10^13` from application-side generators.

use crate::shard::ShardNo;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The smallest environment digit `E`.
pub const ENV_DIGIT_MIN: u8 = 1;
/// The largest environment digit `E` (9 would overflow `i64` for shards above 2233).
pub const ENV_DIGIT_MAX: u8 = 8;
const ENV_UNIT: i64 = 1_000_000_000_000_000_000; // 10^18
const SHARD_UNIT: i64 = 100_000_000_000_000; // 10^14
/// The largest value of a shard's database sequence; above it starts the application range.
pub const SEQUENCE_MAX: i64 = 10_000_000_000_000 - 1; // 10^13 - 1

/// A shard-encoded ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Id(i64);

/// Why a value is not a valid shard-encoded ID, or cannot be made into one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The integer does not have the layout (19 digits, environment digit in 1..=8).
    #[error("ID {0} is not a shard-encoded ID (expected 19 digits E ssss RRRRRRRRRRRRRR with E in 1..=8)")]
    Malformed(i64),
    /// The text is not a decimal integer.
    #[error("{0:?} is not an ID (expected a decimal integer)")]
    NotANumber(String),
    /// The environment digit is outside `ENV_DIGIT_MIN..=ENV_DIGIT_MAX`.
    #[error("environment digit {0} is out of range 1..=8")]
    BadEnv(u8),
    /// The counter is outside `0..10^14`.
    #[error("ID counter {0} is out of range 0..10^14")]
    BadCounter(i64),
}

impl Id {
    /// Builds the ID for environment digit `env`, `shard` and a 14-digit `counter`.
    pub fn new(env: u8, shard: ShardNo, counter: i64) -> Result<Id, IdError> {
        if !(ENV_DIGIT_MIN..=ENV_DIGIT_MAX).contains(&env) {
            return Err(IdError::BadEnv(env));
        }
        if !(0..SHARD_UNIT).contains(&counter) {
            return Err(IdError::BadCounter(counter));
        }
        Ok(Id(env as i64 * ENV_UNIT
            + shard.get() as i64 * SHARD_UNIT
            + counter))
    }

    /// Checks the layout; the shard is then known without any lookup.
    pub fn parse(raw: i64) -> Result<Id, IdError> {
        let env = raw / ENV_UNIT;
        if raw <= 0 || !(ENV_DIGIT_MIN as i64..=ENV_DIGIT_MAX as i64).contains(&env) {
            return Err(IdError::Malformed(raw));
        }
        Ok(Id(raw))
    }

    /// The ID as stored in the database.
    pub fn get(self) -> i64 {
        self.0
    }
    /// The environment digit `E`, 1..=8.
    pub fn env(self) -> u8 {
        (self.0 / ENV_UNIT) as u8
    }
    /// O(1): two divisions.
    pub fn shard(self) -> ShardNo {
        // In range by construction: (x / 10^14) % 10^4 < 10^4.
        match ShardNo::new((self.0 / SHARD_UNIT) % 10_000) {
            Ok(s) => s,
            Err(_) => ShardNo::GLOBAL,
        }
    }
    /// The 14-digit counter part.
    pub fn counter(self) -> i64 {
        self.0 % SHARD_UNIT
    }
    /// The SQL expression of a shard's database-side generator: the sequence value placed in
    /// the lower range of the counter.
    pub fn sql_generator(env: u8, shard: ShardNo, sequence: &str) -> String {
        format!(
            "{} + nextval('{sequence}')",
            env as i64 * ENV_UNIT + shard.get() as i64 * SHARD_UNIT
        )
    }
}

impl TryFrom<i64> for Id {
    type Error = IdError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Id::parse(v)
    }
}

impl From<Id> for i64 {
    fn from(id: Id) -> i64 {
        id.0
    }
}

impl std::str::FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: i64 = s
            .trim()
            .parse()
            .map_err(|_| IdError::NotANumber(s.to_string()))?;
        Id::parse(v)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let id = Id::new(1, ShardNo::new(42).unwrap(), 7).unwrap();
        assert_eq!(id.get(), 1_004_200_000_000_000_007);
        assert_eq!(id.to_string().len(), 19);
        assert_eq!(id.shard().get(), 42);
        assert_eq!(id.env(), 1);
        assert_eq!(id.counter(), 7);
        let max = Id::new(8, ShardNo::MAX, SHARD_UNIT - 1).unwrap();
        assert_eq!(Id::parse(max.get()).unwrap(), max);
    }

    #[test]
    fn malformed_ids_are_errors() {
        for bad in [
            0,
            -1,
            42,
            999_999_999_999_999_999,
            9_000_000_000_000_000_000,
            i64::MAX,
        ] {
            assert_eq!(Id::parse(bad), Err(IdError::Malformed(bad)), "{bad}");
        }
        assert!("12x".parse::<Id>().is_err());
        assert!(Id::new(0, ShardNo::GLOBAL, 1).is_err());
        assert!(Id::new(1, ShardNo::GLOBAL, SHARD_UNIT).is_err());
    }

    #[test]
    fn sql_generator_matches_codec() {
        let s = Id::sql_generator(2, ShardNo::new(5).unwrap(), "sh0005.id_seq");
        assert_eq!(s, "2000500000000000000 + nextval('sh0005.id_seq')");
    }
}
