//! Reading the attributes from the local server: one kept connection, one pipeline of
//! queries on PostgreSQL's views and the replicated atoll catalog.

use super::{
    decide, semver_of, Attributes, Lag, NodeRole, Offset, OffsetUnit, ShardAttributes, ShardState,
    StatusInputs, AGENT_VERSION,
};
use crate::config::AgentConfig;
use atoll_core::{IslandCatalog, Lsn, ShardNo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_postgres::Client;

/// What the node says about itself, in one row.
const NODE_SQL: &str = "select pg_is_in_recovery(),
    current_setting('server_version_num')::int4,
    case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end,
    pg_last_wal_receive_lsn()::text,
    pg_last_wal_replay_lsn()::text,
    (extract(epoch from pg_last_xact_replay_timestamp()) * 1000)::float8,
    (extract(epoch from clock_timestamp()) * 1000)::float8,
    case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end,
    current_setting('data_directory'),
    (select status from pg_stat_wal_receiver limit 1),
    (extract(epoch from (select last_msg_receipt_time from pg_stat_wal_receiver limit 1)) * 1000)::float8,
    case when pg_is_in_recovery() then (select received_tli from pg_stat_wal_receiver limit 1)::int8
         else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 end";

/// The settings operators look at, and slot/sender use.
const SETTINGS_SQL: &str = "select name, setting, vartype from pg_settings
    where name in ('max_replication_slots', 'max_wal_senders', 'wal_level',
                   'synchronous_standby_names', 'synchronous_commit', 'hot_standby',
                   'max_connections', 'wal_keep_size', 'primary_slot_name')
    union all select 'replication_slots.used', count(*)::text, 'integer' from pg_replication_slots
    union all select 'replication_slots.active', count(*) filter (where active)::text, 'integer'
              from pg_replication_slots
    union all select 'wal_senders.streaming', count(*) filter (where state = 'streaming')::text,
              'integer' from pg_stat_replication";

/// Reads attributes; shared by the HTTP handlers and the actions.
pub struct AttributeReader {
    cfg: Arc<AgentConfig>,
    client: tokio::sync::Mutex<Option<Client>>,
    started: Instant,
    data_dir: Mutex<Option<PathBuf>>,
    /// Kind of the running action, if any (JOINING / LEAVING come from it).
    running: Mutex<Option<(crate::actions::ActionKind, Value)>>,
    pg_bin: Option<PathBuf>,
}

/// The facts of [`NODE_SQL`].
struct NodeRow {
    in_recovery: bool,
    version_num: i32,
    current: Option<Lsn>,
    receive: Option<Lsn>,
    replay: Option<Lsn>,
    replay_ts_ms: Option<f64>,
    now_ms: f64,
    paused: bool,
    data_dir: String,
    receiver_status: Option<String>,
    receipt_ms: Option<f64>,
    timeline: Option<i64>,
}

impl AttributeReader {
    /// A reader for the node of `cfg`; `data_dir` is what is known before the first reading.
    pub fn new(
        cfg: Arc<AgentConfig>,
        data_dir: Option<PathBuf>,
        pg_bin: Option<PathBuf>,
    ) -> AttributeReader {
        AttributeReader {
            cfg,
            client: tokio::sync::Mutex::new(None),
            started: Instant::now(),
            data_dir: Mutex::new(data_dir),
            running: Mutex::new(None),
            pg_bin,
        }
    }

    /// The node's data directory as last known.
    pub fn data_dir(&self) -> Option<PathBuf> {
        lock(&self.data_dir).clone()
    }

    /// Records the data directory (a join or init creates it).
    pub fn set_data_dir(&self, dir: PathBuf) {
        *lock(&self.data_dir) = Some(dir);
    }

    /// The kind of the action running now, if any (failover leaves the node alone then).
    pub fn running(&self) -> Option<crate::actions::ActionKind> {
        lock(&self.running).as_ref().map(|(k, _)| *k)
    }

    /// Records which action runs (for JOINING / LEAVING), `None` when idle.
    pub fn set_running(&self, running: Option<(crate::actions::ActionKind, Value)>) {
        *lock(&self.running) = running;
    }

    /// Drops the kept connection (after a restart or a role change of the server).
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }

    /// Takes a reading now.
    pub async fn read(&self) -> Attributes {
        let t0 = Instant::now();
        let read_at_ms = crate::queue::now_ms();
        let mut inputs = StatusInputs::default();
        self.membership(&mut inputs);
        let mut a = Attributes {
            cluster_id: None,
            node_id: self.cfg.node_id.clone(),
            island: self.cfg.island.0,
            agent_version: AGENT_VERSION.to_string(),
            store_version: None,
            status: super::NodeStatus::Unknown,
            status_reasons: Vec::new(),
            status_message: None,
            role: None,
            shards: Vec::new(),
            store_attributes: BTreeMap::new(),
            agent_attributes: BTreeMap::new(),
            read_at_ms,
            read_took_ms: 0.0,
        };
        match self.query().await {
            Err(Failure::Connect(m)) => inputs.unavailable = Some(m),
            Err(Failure::Query(m)) => inputs.unknown = Some(m),
            Ok((row, settings, catalog, moving)) => {
                self.fill(&mut a, &mut inputs, row, settings, catalog, moving)
            }
        }
        let (status, reasons, message) = decide(&inputs);
        a.status = status;
        a.status_reasons = reasons;
        a.status_message = message;
        a.agent_attributes = self.agent_attributes();
        a.read_took_ms = t0.elapsed().as_secs_f64() * 1000.0;
        metrics::histogram!("atoll_agent_attribute_read_seconds").record(t0.elapsed());
        a
    }

    fn membership(&self, inputs: &mut StatusInputs) {
        use crate::actions::ActionKind;
        if let Some((kind, args)) = lock(&self.running).as_ref() {
            inputs.joining = *kind == ActionKind::ClusterJoin;
            inputs.leaving = *kind == ActionKind::ClusterRemove
                && args.get("node").and_then(Value::as_str) == Some(&self.cfg.node.addr());
        }
    }

    fn fill(
        &self,
        a: &mut Attributes,
        inputs: &mut StatusInputs,
        row: NodeRow,
        settings: BTreeMap<String, Value>,
        catalog: IslandCatalog,
        moving: HashSet<ShardNo>,
    ) {
        a.store_version = semver_of(row.version_num);
        a.role = Some(if row.in_recovery {
            NodeRole::Replica
        } else {
            NodeRole::Master
        });
        a.cluster_id = catalog.cluster_id.clone();
        inputs.has_catalog = catalog.cluster_id.is_some();
        inputs.in_recovery = row.in_recovery;
        inputs.streaming = row.receiver_status.as_deref() == Some("streaming");
        inputs.replay_paused = row.paused;
        inputs.island_mismatch = catalog.catalog_island.is_some_and(|i| i != self.cfg.island);
        let offset = if row.in_recovery {
            row.replay
        } else {
            row.current
        };
        let lag = row.in_recovery.then(|| lag_of(&row));
        for s in catalog.shards.iter().filter(|s| s.schema_exists) {
            let state = match (moving.contains(&s.shard), s.active, row.in_recovery) {
                (true, _, _) => ShardState::Moving,
                (false, false, _) => ShardState::Inactive,
                (false, true, false) => ShardState::Primary,
                (false, true, true) => ShardState::Secondary,
            };
            a.shards.push(ShardAttributes {
                id: s.shard.schema(),
                shard: s.shard.get(),
                state,
                commit_offset: Offset {
                    value: offset.map_or(0, |l| l.0 as i64),
                    unit: OffsetUnit::Bytes,
                },
                replication_lag: lag,
            });
        }
        a.shards.sort_by_key(|s| s.shard);
        let mut store = settings;
        store.insert("postgresql.in_recovery".into(), json!(row.in_recovery));
        store.insert("postgresql.replay_paused".into(), json!(row.paused));
        store.insert("postgresql.timeline".into(), json!(row.timeline));
        store.insert(
            "postgresql.server_version_num".into(),
            json!(row.version_num),
        );
        store.insert(
            "postgresql.wal_receiver.status".into(),
            json!(row.receiver_status),
        );
        store.insert(
            "postgresql.wal_lsn".into(),
            json!(offset.map(|l| l.0 as i64)),
        );
        if let Some(l) = &lag {
            store.insert("postgresql.lag.bytes".into(), json!(l.bytes));
            store.insert("postgresql.lag.ms".into(), json!(l.ms));
        }
        a.store_attributes = store;
        let dir = PathBuf::from(&row.data_dir);
        if self.data_dir().as_ref() != Some(&dir) {
            self.set_data_dir(dir);
        }
    }

    fn agent_attributes(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "atoll.agent.uptime_ms".into(),
            json!(self.started.elapsed().as_millis() as u64),
        );
        m.insert(
            "atoll.agent.data_directory".into(),
            json!(self.data_dir().map(|d| d.display().to_string())),
        );
        m.insert(
            "atoll.agent.state_directory".into(),
            json!(self.cfg.state_dir.display().to_string()),
        );
        m.insert("atoll.agent.node".into(), json!(self.cfg.node.to_string()));
        m.insert("atoll.island".into(), json!(self.cfg.island.0));
        let bin = self.pg_bin.clone();
        m.insert(
            "atoll.agent.pg_bin".into(),
            json!(bin.as_ref().map(|b| b.display().to_string())),
        );
        for tool in ["pg_ctl", "pg_basebackup", "pg_rewind", "initdb"] {
            let found = bin.as_ref().is_some_and(|b| b.join(tool).is_file());
            m.insert(format!("atoll.agent.binaries.{tool}"), json!(found));
        }
        m.insert(
            "atoll.agent.running_action".into(),
            json!(lock(&self.running).as_ref().map(|(k, _)| k.as_str())),
        );
        m
    }

    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, Failure> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let c = atoll_pg::connect_as(
                &self.cfg.node,
                "atoll-agent",
                self.cfg.cluster.connect_timeout,
            )
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
            *guard = Some(c);
        }
        Ok(guard)
    }

    async fn query(
        &self,
    ) -> Result<
        (
            NodeRow,
            BTreeMap<String, Value>,
            IslandCatalog,
            HashSet<ShardNo>,
        ),
        Failure,
    > {
        let guard = self.client().await?;
        let Some(c) = guard.as_ref() else {
            return Err(Failure::Connect("no connection".into()));
        };
        let q = |e: tokio_postgres::Error| {
            // A broken connection reads as the server being away.
            if e.is_closed() || e.code().is_none() {
                Failure::Connect(atoll_pg::describe(&e))
            } else {
                Failure::Query(atoll_pg::describe(&e))
            }
        };
        let (node, settings, catalog) = futures::try_join!(
            c.query_one(NODE_SQL, &[]),
            c.query(SETTINGS_SQL, &[]),
            atoll_pg::read_catalog(c, false),
        )
        .map_err(q)?;
        let moving = atoll_pg::catalog::moves::unfinished(c, &self.cfg.node)
            .await
            .map_err(|e| Failure::Query(e.to_string()))?
            .into_iter()
            .map(|m| m.record.shard)
            .collect();
        let lsn = |i: usize| -> Option<Lsn> {
            node.get::<_, Option<String>>(i)
                .as_deref()
                .and_then(Lsn::parse)
        };
        let row = NodeRow {
            in_recovery: node.get(0),
            version_num: node.get(1),
            current: lsn(2),
            receive: lsn(3),
            replay: lsn(4),
            replay_ts_ms: node.get(5),
            now_ms: node.get(6),
            paused: node.get(7),
            data_dir: node.get(8),
            receiver_status: node.get(9),
            receipt_ms: node.get(10),
            timeline: node.get(11),
        };
        Ok((row, settings_map(&settings), catalog, moving))
    }
}

enum Failure {
    Connect(String),
    Query(String),
}

fn lag_of(row: &NodeRow) -> Lag {
    let (recv, replay) = (
        row.receive.unwrap_or_default(),
        row.replay.unwrap_or_default(),
    );
    let bytes = recv.0.saturating_sub(replay.0) as i64;
    let ms = match (bytes, row.replay_ts_ms) {
        (0, _) => 0,
        (_, Some(ts)) => (row.now_ms - ts).max(0.0) as i64,
        // Nothing replayed yet since start: behind by an unknown time; say so as 0 bytes
        // would lie, so report the time since the receipt.
        (_, None) => row
            .receipt_ms
            .map_or(0, |r| (row.now_ms - r).max(0.0) as i64),
    };
    Lag {
        bytes,
        ms,
        age_ms: row.receipt_ms.map(|r| (row.now_ms - r).max(0.0) as i64),
    }
}

fn settings_map(rows: &[tokio_postgres::Row]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| {
            let (name, setting, kind): (String, Option<String>, String) =
                (r.get(0), r.get(1), r.get(2));
            let setting = setting.unwrap_or_default();
            let value = match kind.as_str() {
                "integer" => setting.parse::<i64>().map_or(json!(setting), |n| json!(n)),
                "real" => setting.parse::<f64>().map_or(json!(setting), |n| json!(n)),
                "bool" => json!(setting == "on"),
                _ => json!(setting),
            };
            (format!("postgresql.{name}"), value)
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
