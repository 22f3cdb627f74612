//! Automated failover's pure part (`docs/failover.md`): the `[ha]` settings, the etcd key
//! layout, the records the agents keep there, and the election: which replica may take
//! over an island whose master lost its leader key, and why the others may not.
//!
//! The agents (atoll-agent's `ha/`) hold the keys under etcd leases and carry the decisions
//! out; nothing here talks to etcd or PostgreSQL.

use crate::IslandId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default leader TTL: a dead master is replaced within about this long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default candidate lag limit (bytes of WAL behind the last position the master published).
pub const DEFAULT_MAX_LAG_BYTES: u64 = 16 * 1024 * 1024;

/// The `[ha]` section of `atoll.toml`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaConfig {
    /// etcd endpoints (`http://host:port`), tried in turn.
    pub endpoints: Vec<String>,
    /// Prefix of every key atoll writes (default `/atoll/<cluster name>`), no trailing `/`.
    pub prefix: String,
    /// TTL of an agent's etcd lease, which holds the island's leader key.
    pub ttl: Duration,
    /// How often an agent renews its lease, publishes its facts and decides.
    pub loop_interval: Duration,
    /// A candidate further behind than this (bytes) is never promoted.
    pub max_lag_bytes: u64,
    /// A candidate that lacks WAL and whose last replayed commit is older than this is
    /// never promoted (`None`: no limit).
    pub max_lag: Option<Duration>,
    /// Synchronous mode: every acknowledged commit is on at least one replica, and a
    /// failover never loses one.
    pub synchronous: bool,
}

impl HaConfig {
    /// The master demotes itself when it could not renew its lease for this long: a
    /// margin before the lease can expire, so two masters never accept writes at once.
    pub fn demote_after(&self) -> Duration {
        self.ttl.saturating_sub(self.demote_margin())
    }

    /// Time kept between the self-demotion and the lease's earliest expiry: two loops or
    /// a quarter of the TTL, whichever is longer (a fast shutdown must fit in it).
    pub fn demote_margin(&self) -> Duration {
        (self.loop_interval * 2).max(self.ttl / 4)
    }

    /// How long a master's unresponsive server is waited for before it is fenced and the
    /// leader key released.
    pub fn unhealthy_after(&self) -> Duration {
        (self.ttl / 2).max(self.loop_interval * 2)
    }

    /// How long candidates wait after seeing the leader gone before choosing: one loop,
    /// for every member to publish its final position (the election also waits for every
    /// live member's record to be newer than the leader's disappearance).
    pub fn election_wait(&self) -> Duration {
        self.loop_interval
    }

    /// The keys of `island`.
    pub fn keys(&self, island: IslandId) -> IslandKeys {
        IslandKeys {
            base: format!("{}/islands/{}", self.prefix, island.0),
        }
    }
}

/// Limits of `[ha]` fields.
pub(crate) const TTL_RANGE_S: std::ops::RangeInclusive<u64> = 2..=300;
pub(crate) const LOOP_RANGE_MS: std::ops::RangeInclusive<u64> = 50..=60_000;

/// Raw `[ha]` as written in the file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHa {
    pub endpoints: Vec<String>,
    pub prefix: Option<String>,
    pub ttl_s: Option<i64>,
    pub loop_ms: Option<i64>,
    pub max_lag_bytes: Option<i64>,
    pub max_lag_ms: Option<i64>,
    #[serde(default)]
    pub synchronous: bool,
}

impl RawHa {
    /// Validates the section; the error names the field.
    pub(crate) fn validate(self, cluster_name: &str) -> Result<HaConfig, String> {
        if self.endpoints.is_empty() {
            return Err("ha.endpoints is empty: list at least one etcd endpoint".into());
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/') || r.contains(' ')) {
                return Err(format!(
                    "ha.endpoints: {e:?} is not http://host:port or https://host:port"
                ));
            }
        }
        let prefix = match self.prefix {
            Some(p) if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') => {
                return Err(format!(
                    "ha.prefix = {p:?} must start with '/' and not end with one"
                ));
            }
            Some(p) => p,
            None => format!("/atoll/{cluster_name}"),
        };
        let ttl = match self.ttl_s {
            Some(t) => Duration::from_secs(in_range("ha.ttl_s", t, TTL_RANGE_S)?),
            None => DEFAULT_TTL,
        };
        let loop_interval = match self.loop_ms {
            Some(l) => Duration::from_millis(in_range("ha.loop_ms", l, LOOP_RANGE_MS)?),
            None => (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        };
        if loop_interval * 4 > ttl {
            return Err(format!(
                "ha.loop_ms = {} leaves fewer than 4 loops in ha.ttl_s = {}: the lease could expire between two renewals",
                loop_interval.as_millis(),
                ttl.as_secs()
            ));
        }
        let max_lag_bytes = match self.max_lag_bytes {
            Some(b) => in_range("ha.max_lag_bytes", b, 0..=u64::MAX)?,
            None => DEFAULT_MAX_LAG_BYTES,
        };
        let max_lag = match self.max_lag_ms {
            Some(m) => Some(Duration::from_millis(in_range(
                "ha.max_lag_ms",
                m,
                0..=86_400_000,
            )?)),
            None => None,
        };
        Ok(HaConfig {
            endpoints: self.endpoints,
            prefix,
            ttl,
            loop_interval,
            max_lag_bytes,
            max_lag,
            synchronous: self.synchronous,
        })
    }
}

fn in_range(field: &str, v: i64, r: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    u64::try_from(v)
        .ok()
        .filter(|v| r.contains(v))
        .ok_or_else(|| format!("{field} = {v} is out of range {}..={}", r.start(), r.end()))
}

/// Where an island's HA state lives in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IslandKeys {
    base: String,
}

impl IslandKeys {
    /// The prefix of every key of the island (ends with `/`).
    pub fn island(&self) -> String {
        format!("{}/", self.base)
    }
    /// The leader key: the master's node address, under its agent's lease.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.base)
    }
    /// Prefix of the member records, one per running agent, each under its agent's lease.
    pub fn members(&self) -> String {
        format!("{}/members/", self.base)
    }
    /// One member's record.
    pub fn member(&self, addr: &str) -> String {
        format!("{}{addr}", self.members())
    }
    /// The last position the master published ([`Optime`]); no lease: it outlives the master.
    pub fn optime(&self) -> String {
        format!("{}/optime", self.base)
    }
    /// The synchronous standby set ([`SyncSet`]) in synchronous mode.
    pub fn sync(&self) -> String {
        format!("{}/sync", self.base)
    }
    /// The last failover ([`FailoverRecord`]).
    pub fn last_failover(&self) -> String {
        format!("{}/last_failover", self.base)
    }
    /// Why each member was or was not promoted in the last election ([`Election`]).
    pub fn last_election(&self) -> String {
        format!("{}/last_election", self.base)
    }
}

/// A member's replication name: the `application_name` its WAL receiver uses (how the
/// master names it in `synchronous_standby_names` and `pg_stat_replication`) and the name
/// of its physical replication slot on the master.
pub fn standby_name(addr: &str) -> String {
    let mut s = String::from("atoll_");
    s.extend(addr.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    s
}

/// `synchronous_standby_names` for `names`: a commit waits for any one of them.
pub fn standby_names_setting(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("ANY 1 ({})", quoted.join(", "))
}

/// The leader key's value: the master and since when it holds the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The master's node address (`host:port`).
    pub node: String,
    /// When it took the key (ms since the Unix epoch).
    pub since_ms: u64,
}

/// What a node is, as its agent last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Accepts writes.
    Master,
    /// In recovery (a replica, or a master that demoted itself).
    Replica,
    /// The server is not running, or does not answer.
    Down,
}

/// One agent's record in etcd, refreshed every loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The node's address (`host:port`).
    pub node: String,
    /// The agent's API address.
    pub agent: String,
    /// What the node is.
    pub role: MemberRole,
    /// The furthest WAL position the node has: written (master) or received/replayed.
    pub position: u64,
    /// The node's timeline.
    pub timeline: u32,
    /// Milliseconds since the last replayed transaction was committed on the master, at
    /// the time of the record (replicas only).
    pub replay_age_ms: Option<u64>,
    /// The upstream the WAL receiver streams from (`host:port`), when streaming.
    pub upstream: Option<String>,
    /// Wall clock of the record (ms since the Unix epoch), for display only.
    pub at_ms: u64,
}

/// The master's last published position; kept without a lease so candidates can compare
/// against it after the master is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Optime {
    /// The master that published it.
    pub node: String,
    /// Its WAL position.
    pub position: u64,
    /// Its timeline.
    pub timeline: u32,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

/// The synchronous standby set the master has configured (a commit waits for one of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncSet {
    /// The master that configured it.
    pub master: String,
    /// Node addresses, sorted.
    pub standbys: Vec<String>,
}

/// One failover, written by the node that took over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// When the new master accepted writes (ms since the Unix epoch).
    pub at_ms: u64,
    /// The old master (from the last position it published).
    pub from: Option<String>,
    /// The new master.
    pub to: String,
    /// How far the new master was behind the old one's last published position (bytes).
    pub lag_bytes: u64,
    /// From the old master's last published position to the new master's promotion: an
    /// upper bound on how long writes were refused.
    pub writes_refused_ms: Option<u64>,
    /// Whether the cluster was in synchronous mode.
    pub synchronous: bool,
    /// Manual (`atoll failover`) or automatic.
    pub manual: bool,
}

/// Why a member may not be promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// Its server is down.
    Down,
    /// It is further behind than `max_lag_bytes`.
    LagBytes {
        /// How far behind.
        lag_bytes: u64,
        /// The limit.
        max_lag_bytes: u64,
    },
    /// Its last replayed transaction is older than `max_lag_ms`.
    LagTime {
        /// How old.
        replay_age_ms: u64,
        /// The limit.
        max_lag_ms: u64,
    },
    /// It follows an older timeline than the last master published.
    TimelineBehind {
        /// Its timeline.
        timeline: u32,
        /// The master's.
        master_timeline: u32,
    },
    /// Another member is further ahead.
    NotMostAdvanced {
        /// The member chosen instead.
        winner: String,
    },
}

/// The outcome of an election among the members that published after the leader was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Election {
    /// This member should take the leader key.
    Winner {
        /// The member's address.
        node: String,
        /// Bytes behind the master's last published position.
        lag_bytes: u64,
        /// The others and why they were not chosen.
        refused: Vec<(String, Refusal)>,
    },
    /// Nobody may take over now: `why` says what is awaited (synchronous standbys that did
    /// not publish) or every member's refusal.
    NoWinner {
        /// One line.
        why: String,
        /// Each member's refusal.
        refused: Vec<(String, Refusal)>,
    },
}

/// Chooses the member to promote: among `fresh` (records published after the leader was
/// lost), the most advanced that is within the lag limits and not on an older timeline;
/// ties go to the lowest address. In synchronous mode, every standby of `sync` must have
/// published, or an acknowledged commit could be on the one that is missing.
pub fn elect(
    cfg: &HaConfig,
    fresh: &[MemberRecord],
    optime: Option<&Optime>,
    sync: Option<&SyncSet>,
) -> Election {
    if cfg.synchronous {
        if let Some(s) = sync {
            let missing: Vec<&String> = s
                .standbys
                .iter()
                .filter(|n| {
                    !fresh
                        .iter()
                        .any(|m| &m.node == *n && m.role != MemberRole::Down)
                })
                .collect();
            if !missing.is_empty() {
                return Election::NoWinner {
                    why: format!(
                        "synchronous mode: standby {} has not reported; it may hold acknowledged commits",
                        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    refused: Vec::new(),
                };
            }
        }
    }
    let mut refused = Vec::new();
    let mut eligible: Vec<&MemberRecord> = Vec::new();
    for m in fresh {
        match refusal(cfg, m, optime) {
            Some(r) => refused.push((m.node.clone(), r)),
            None => eligible.push(m),
        }
    }
    eligible.sort_by(|a, b| b.position.cmp(&a.position).then(a.node.cmp(&b.node)));
    let Some(best) = eligible.first() else {
        return Election::NoWinner {
            why: if fresh.is_empty() {
                "no member has reported since the leader was lost".into()
            } else {
                "no member qualifies".into()
            },
            refused,
        };
    };
    for m in &eligible[1..] {
        refused.push((
            m.node.clone(),
            Refusal::NotMostAdvanced {
                winner: best.node.clone(),
            },
        ));
    }
    Election::Winner {
        node: best.node.clone(),
        lag_bytes: optime.map_or(0, |o| o.position.saturating_sub(best.position)),
        refused,
    }
}

fn refusal(cfg: &HaConfig, m: &MemberRecord, optime: Option<&Optime>) -> Option<Refusal> {
    if m.role == MemberRole::Down {
        return Some(Refusal::Down);
    }
    let mut lag = 0;
    if let Some(o) = optime {
        if m.timeline < o.timeline {
            return Some(Refusal::TimelineBehind {
                timeline: m.timeline,
                master_timeline: o.timeline,
            });
        }
        if m.timeline == o.timeline {
            lag = o.position.saturating_sub(m.position);
        }
        if lag > cfg.max_lag_bytes {
            return Some(Refusal::LagBytes {
                lag_bytes: lag,
                max_lag_bytes: cfg.max_lag_bytes,
            });
        }
    }
    // The age of the last replayed commit counts only for a member that lacks WAL: on an
    // idle master every replica's last commit grows old without any lag.
    if let (Some(limit), Some(age)) = (cfg.max_lag, m.replay_age_ms) {
        if lag > 0 && m.role == MemberRole::Replica && age > limit.as_millis() as u64 {
            return Some(Refusal::LagTime {
                replay_age_ms: age,
                max_lag_ms: limit.as_millis() as u64,
            });
        }
    }
    None
}

#[cfg(test)]
#[path = "ha_tests.rs"]
mod tests;
