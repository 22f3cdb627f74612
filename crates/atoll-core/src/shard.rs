//! Microshard numbers and schema names (`sh0000`..`sh9999`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest microshard number: names have exactly four digits.
const MAX: u16 = 9999;

/// A microshard number, 0..=9999. Shard 0 is the global microshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ShardNo(u16);

/// Why a number, schema name or range text is not a valid microshard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// The number is outside 0..=9999.
    #[error("shard number {0} is out of range 0..=9999")]
    OutOfRange(i64),
    /// The text is not a decimal number.
    #[error("{0:?} is not a shard number (expected 0..=9999)")]
    NotANumber(String),
    /// The name is not exactly `sh` + four digits.
    #[error("{0:?} is not a shard schema name (expected sh0000..sh9999)")]
    BadName(String),
    #[error(
        "{0:?} is not a shard range (expected N, N-M or a comma list of those, within 0..=9999)"
    )]
    /// The text is not `N`, `N-M` or a comma list of those within 0..=9999.
    BadRange(String),
}

impl ShardNo {
    /// The global microshard.
    pub const GLOBAL: ShardNo = ShardNo(0);
    /// The largest microshard, `sh9999`.
    pub const MAX: ShardNo = ShardNo(MAX);

    /// The microshard `n`; refuses a number outside 0..=9999.
    pub fn new(n: i64) -> Result<ShardNo, ShardError> {
        if (0..=MAX as i64).contains(&n) {
            Ok(ShardNo(n as u16))
        } else {
            Err(ShardError::OutOfRange(n))
        }
    }

    /// The shard number, 0..=9999.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The schema name, `sh` + four digits.
    pub fn schema(self) -> String {
        format!("sh{:04}", self.0)
    }

    /// Parses a schema name; only names that round-trip exactly (`sh0042`, not `sh42` or
    /// `SH0042` or `sh00042`) are shards.
    pub fn from_schema(name: &str) -> Result<ShardNo, ShardError> {
        let bad = || ShardError::BadName(name.to_string());
        let digits = name.strip_prefix("sh").ok_or_else(bad)?;
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse::<u16>().map(ShardNo).map_err(|_| bad())
    }
}

impl fmt::Display for ShardNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sh{:04}", self.0)
    }
}

impl TryFrom<u16> for ShardNo {
    type Error = ShardError;
    fn try_from(n: u16) -> Result<Self, Self::Error> {
        ShardNo::new(n as i64)
    }
}

impl From<ShardNo> for u16 {
    fn from(s: ShardNo) -> u16 {
        s.0
    }
}

impl FromStr for ShardNo {
    type Err = ShardError;
    /// Accepts a plain number (`42`) or a schema name (`sh0042`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("sh") {
            return ShardNo::from_schema(s);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ShardError::NotANumber(s.to_string()));
        }
        match s.parse::<i64>() {
            Ok(n) => ShardNo::new(n),
            Err(_) => Err(ShardError::NotANumber(s.to_string())),
        }
    }
}

/// A sorted, duplicate-free set of shard numbers, parsed from `1-64`, `7` or `0,3,10-12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange(Vec<ShardNo>);

impl ShardRange {
    /// The shards, sorted and without duplicates.
    pub fn shards(&self) -> &[ShardNo] {
        &self.0
    }
    /// A range of exactly these shards, sorted and deduplicated.
    pub fn from_shards(mut shards: Vec<ShardNo>) -> ShardRange {
        shards.sort();
        shards.dedup();
        ShardRange(shards)
    }
}

/// The shortest text that parses back to the same shards: `1-64,70` (empty for none).
impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.0.len() {
            let mut j = i;
            while j + 1 < self.0.len() && self.0[j + 1].0 == self.0[j].0 + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if i == j {
                write!(f, "{}", self.0[i].0)?;
            } else {
                write!(f, "{}-{}", self.0[i].0, self.0[j].0)?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl FromStr for ShardRange {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError::BadRange(s.to_string());
        // Intervals, merged at the end, not a list of every shard of every part: `0-9999`
        // repeated a million times is ten thousand shards, not ten billion list entries.
        let mut parts: Vec<(u16, u16)> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: ShardNo = lo.parse().map_err(|e| match e {
                ShardError::OutOfRange(_) => e,
                _ => bad(),
            })?;
            let hi: ShardNo = hi.parse().map_err(|e| match e {
                ShardError::OutOfRange(_) => e,
                _ => bad(),
            })?;
            if lo > hi {
                return Err(bad());
            }
            parts.push((lo.0, hi.0));
        }
        parts.sort_unstable();
        let mut out: Vec<ShardNo> = Vec::new();
        for (lo, hi) in parts {
            // Sorted by start: only the part past the last shard taken is new.
            let from = out.last().map_or(lo, |last| lo.max(last.0 + 1));
            out.extend((from..=hi).map(ShardNo));
        }
        Ok(ShardRange(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_round_trip() {
        for n in [0u16, 1, 42, 999, 1000, 9999] {
            let s = ShardNo::new(n as i64).unwrap();
            assert_eq!(ShardNo::from_schema(&s.schema()).unwrap(), s);
        }
        assert_eq!(ShardNo::new(7).unwrap().schema(), "sh0007");
    }

    #[test]
    fn only_exact_names_parse() {
        for bad in [
            "sh42", "sh00042", "SH0042", "sh-001", "sh+001", "sh00a1", "xsh0001", "sh0001 ", "",
            "sh", "public",
        ] {
            assert!(ShardNo::from_schema(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(ShardNo::new(10000), Err(ShardError::OutOfRange(10000)));
        assert_eq!(ShardNo::new(-1), Err(ShardError::OutOfRange(-1)));
        assert!("10000".parse::<ShardNo>().is_err());
        assert!("-3".parse::<ShardNo>().is_err());
        assert_eq!("sh0010".parse::<ShardNo>().unwrap().get(), 10);
    }

    #[test]
    fn ranges() {
        let r: ShardRange = "1-3, 7,2".parse().unwrap();
        let got: Vec<u16> = r.shards().iter().map(|s| s.get()).collect();
        assert_eq!(got, vec![1, 2, 3, 7]);
        assert_eq!(r.to_string(), "1-3,7");
        assert_eq!(ShardRange::from_shards(vec![]).to_string(), "");
        assert_eq!(
            "0-9999".parse::<ShardRange>().unwrap().shards().len(),
            10000
        );
        assert!("5-3".parse::<ShardRange>().is_err());
        assert!("1-10000".parse::<ShardRange>().is_err());
        assert!("a-b".parse::<ShardRange>().is_err());
        assert!("".parse::<ShardRange>().is_err());
    }
}
