//! Shard notices: what an island master announces when a shard's registry row changes
//! (a move's switch and activation, `atoll shard activate|deactivate`, an abort's
//! reactivation, allocation), so clients update their snapshot at once instead of finding
//! out through an error and a rediscovery (docs/architecture.md, "Shard notices").
//!
//! The islands send them with PostgreSQL's `NOTIFY` on [`CHANNEL`] from a trigger on
//! `atoll.shards` (catalog step 6), so they are delivered when the changing transaction
//! commits and never for one that rolls back. The payload is one line of text:
//!
//! ```text
//! v1 shard=42 island=1 active=true gen=1763700060123456
//! ```
//!
//! `gen` is the registry row's generation: every change of a shard's row, on any island,
//! gets a larger one than every earlier change of that shard that the writer knew of (see
//! [`ShardNotice::gen`]), so a client can tell an old notice from a new one. Fields are
//! `key=value` tokens separated by single spaces after the version; unknown keys are
//! ignored (a later v1 may add some), a missing or repeated key, a bad value or another
//! version is refused. [`ShardNotice::parse`] never panics on any input.

use crate::island::IslandId;
use crate::shard::ShardNo;
use std::fmt;

/// The `LISTEN`/`NOTIFY` channel of shard notices.
pub const CHANNEL: &str = "atoll_shards";

/// The payload version this build writes and reads.
pub const VERSION: &str = "v1";

/// The longest payload accepted (PostgreSQL's own limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 1000;

/// One registry change, as announced by the master of the island whose row changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardNotice {
    /// The shard whose registry row changed.
    pub shard: ShardNo,
    /// The island whose master holds the row (and sent the notice).
    pub island: IslandId,
    /// The row's active flag after the change.
    pub active: bool,
    /// The row's generation after the change: larger than the row's previous one, than the
    /// writer's clock in microseconds since the Unix epoch, and than any generation of the
    /// shard the writer passed on (a move's activation passes the switch's). Comparable
    /// across islands for one shard, not across shards.
    pub gen: u64,
}

/// Why a payload is not a shard notice this build reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// The payload is of another version (or none): a newer atoll wrote it.
    #[error("shard notice of unknown version {0:?} (this build reads {VERSION})")]
    Version(String),
    /// The payload is of this version but malformed.
    #[error("malformed shard notice: {0}")]
    Malformed(String),
}

impl ShardNotice {
    /// Parses a payload. Never panics; see the module docs for the format.
    pub fn parse(payload: &str) -> Result<ShardNotice, NoticeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(NoticeError::Malformed(format!(
                "{} bytes, more than {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        let mut tokens = payload.split(' ');
        let version = tokens.next().unwrap_or_default();
        if version != VERSION {
            return Err(NoticeError::Version(shorten(version)));
        }
        let mut fields = Fields::default();
        for token in tokens {
            let (key, value) = token.split_once('=').ok_or_else(|| {
                NoticeError::Malformed(format!("{:?} is not key=value", shorten(token)))
            })?;
            fields.set(key, value)?;
        }
        fields.finish()
    }
}

impl fmt::Display for ShardNotice {
    /// The payload form [`ShardNotice::parse`] reads (what the catalog's trigger sends).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION} shard={} island={} active={} gen={}",
            self.shard.get(),
            self.island,
            self.active,
            self.gen
        )
    }
}

/// A value quoted in an error, cut to a readable length on a character boundary.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[derive(Default)]
struct Fields {
    shard: Option<ShardNo>,
    island: Option<IslandId>,
    active: Option<bool>,
    gen: Option<u64>,
}

impl Fields {
    fn set(&mut self, key: &str, value: &str) -> Result<(), NoticeError> {
        let bad =
            |what: &str| NoticeError::Malformed(format!("{key}={:?}: {what}", shorten(value)));
        // Only ASCII digits: `u64::from_str` would also take a leading '+'.
        let number = |max: u64| -> Result<u64, NoticeError> {
            if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a decimal number"));
            }
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad("out of range"))
        };
        let repeated = || NoticeError::Malformed(format!("{key} given twice"));
        match key {
            "shard" => {
                let n = number(ShardNo::MAX.get() as u64)?;
                let s = ShardNo::new(n as i64).map_err(|e| bad(&e.to_string()))?;
                self.shard.replace(s).map_or(Ok(()), |_| Err(repeated()))
            }
            "island" => {
                let i = IslandId(number(u16::MAX as u64)? as u16);
                self.island.replace(i).map_or(Ok(()), |_| Err(repeated()))
            }
            "active" => {
                let a = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("not true or false")),
                };
                self.active.replace(a).map_or(Ok(()), |_| Err(repeated()))
            }
            "gen" => {
                let g = number(i64::MAX as u64)?;
                self.gen.replace(g).map_or(Ok(()), |_| Err(repeated()))
            }
            // A later v1 may add fields; this build has no use for them.
            _ if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
                Ok(())
            }
            _ => Err(NoticeError::Malformed(format!(
                "{:?} is not a field name",
                shorten(key)
            ))),
        }
    }

    fn finish(self) -> Result<ShardNotice, NoticeError> {
        let missing = |k: &str| NoticeError::Malformed(format!("{k} missing"));
        Ok(ShardNotice {
            shard: self.shard.ok_or_else(|| missing("shard"))?,
            island: self.island.ok_or_else(|| missing("island"))?,
            active: self.active.ok_or_else(|| missing("active"))?,
            gen: self.gen.ok_or_else(|| missing("gen"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(shard: i64, island: u16, active: bool, gen: u64) -> ShardNotice {
        ShardNotice {
            shard: ShardNo::new(shard).unwrap(),
            island: IslandId(island),
            active,
            gen,
        }
    }

    #[test]
    fn the_trigger_payload_parses() {
        let p = ShardNotice::parse("v1 shard=42 island=1 active=true gen=1763700060123456");
        assert_eq!(p, Ok(n(42, 1, true, 1763700060123456)));
        assert_eq!(
            n(42, 1, true, 1763700060123456).to_string(),
            "v1 shard=42 island=1 active=true gen=1763700060123456"
        );
        // Order does not matter; unknown fields are skipped.
        let p = ShardNotice::parse("v1 gen=7 active=false future_field=x island=0 shard=0");
        assert_eq!(p, Ok(n(0, 0, false, 7)));
    }

    #[test]
    fn what_is_refused() {
        let version = |s: &str| matches!(ShardNotice::parse(s), Err(NoticeError::Version(_)));
        assert!(version(""));
        assert!(version("v2 shard=1 island=0 active=true gen=1"));
        assert!(version("shard=1 island=0 active=true gen=1"));
        for bad in [
            "v1",
            "v1 shard=1 island=0 active=true",
            "v1 shard=1 island=0 active=yes gen=1",
            "v1 shard=10000 island=0 active=true gen=1",
            "v1 shard=-1 island=0 active=true gen=1",
            "v1 shard=+1 island=0 active=true gen=1",
            "v1 shard=1 island=65536 active=true gen=1",
            "v1 shard=1 island=0 active=true gen=9223372036854775808",
            "v1 shard=1 shard=2 island=0 active=true gen=1",
            "v1 shard=1 island=0 active=true gen=1 ",
            "v1  shard=1 island=0 active=true gen=1",
            "v1 shard=1 island=0 active=true gen=1 Bad=1",
            "v1 shard=1 island=0 active=true gen",
            "v1 shard=1 island=0 active=true gen=",
            "v1 shard=١ island=0 active=true gen=1",
        ] {
            let r = ShardNotice::parse(bad);
            assert!(
                matches!(r, Err(NoticeError::Malformed(_))),
                "{bad:?}: {r:?}"
            );
        }
        let long = format!(
            "v1 shard=1 island=0 active=true gen=1 x={}",
            "y".repeat(1000)
        );
        assert!(ShardNotice::parse(&long).is_err());
    }
}
