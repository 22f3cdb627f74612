//! The failover loop: every `loop_interval`, read the local server, renew the lease,
//! publish the member record, and act as the leader, a follower of the leader, or a
//! candidate when there is none. Actions that change the node (a switchover, a join) run
//! alone: while one runs the loop only renews, publishes and, if it must, demotes.

use super::election::Candidate;
use super::follower::Follow;
use super::local::{self, Local};
use super::{sync, Etcd, EtcdError, HaHandle};
use crate::attributes::AttributeReader;
use crate::pg_tools::PgTools;
use crate::queue::now_ms;
use atoll_core::ha::{LeaderRecord, MemberRecord, Optime};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The loop's memory between rounds.
pub(super) struct Loop {
    pub(super) h: Arc<HaHandle>,
    pub(super) tools: PgTools,
    pub(super) reader: Arc<AttributeReader>,
    /// Earliest moment the lease may expire (send time of the last successful renewal plus
    /// the TTL); the master demotes itself a margin before it.
    lease_deadline: Instant,
    /// Since when the local server, as leader, has not answered.
    unhealthy_since: Option<Instant>,
    /// The election under way: the store revision at which the leader was first seen gone.
    pub(super) candidate: Option<Candidate>,
    /// The last etcd error logged (each different one is logged once).
    last_error: Option<String>,
    /// The task making this node follow the leader, while it runs.
    following: Option<tokio::task::JoinHandle<()>>,
    /// The last error of that task that was logged (shared with it).
    follow_error: Arc<std::sync::Mutex<Option<String>>>,
    /// The last CHECKPOINT started to bring the control file up to the timeline
    /// (`timeline.rs`): when, and its task. One at a time, at most every `CATCH_UP_EVERY`:
    /// a replica catches up only once it has replayed the master's first checkpoint on
    /// the new timeline.
    control_catch_up: Option<(Instant, tokio::task::JoinHandle<()>)>,
}

/// How often a lagging control file is checkpointed again.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);

/// Runs the loop until `stop` turns true.
pub async fn run(
    h: Arc<HaHandle>,
    tools: PgTools,
    reader: Arc<AttributeReader>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(island = %h.cfg.island, ttl_s = h.ha.ttl.as_secs(), synchronous = h.ha.synchronous, "failover loop started");
    let mut l = Loop {
        lease_deadline: Instant::now() + h.ha.ttl,
        h,
        tools,
        reader,
        unhealthy_since: None,
        candidate: None,
        last_error: None,
        following: None,
        follow_error: Arc::default(),
        control_catch_up: None,
    };
    loop {
        l.round().await;
        // Wake at the demotion moment if it comes before the next loop.
        let next = Instant::now() + l.h.ha.loop_interval;
        let wake = match l.demote_at() {
            d if d > Instant::now() && d < next => d,
            _ => next,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stop.wait_for(|v| *v) => break,
        }
    }
    tracing::info!("failover loop stopped");
}

impl Loop {
    pub(super) fn me(&self) -> String {
        self.h.cfg.node.addr()
    }

    /// When a master that has not renewed its lease since must demote itself.
    fn demote_at(&self) -> Instant {
        self.lease_deadline
            .checked_sub(self.h.ha.demote_margin())
            .unwrap_or(self.lease_deadline)
    }

    fn probe_timeout(&self) -> Duration {
        (self.h.ha.ttl / 4).min(Duration::from_secs(1))
    }

    async fn round(&mut self) {
        let local = local::read(&self.h.cfg.node, self.probe_timeout()).await;
        // A renewal still pending at the demotion moment counts as failed: a slow etcd
        // must not delay the demotion past the lease's expiry.
        // Only a master has a demotion moment: a replica's renewals are bounded by the
        // request timeouts alone (a demoted master's old moment would starve them).
        let is_master = matches!(&local, Local::Up(f) if !f.in_recovery);
        let demote_at = if is_master {
            self.demote_at()
        } else {
            Instant::now() + self.h.ha.ttl
        };
        let renewal = tokio::time::timeout_at(demote_at.into(), async {
            let etcd = self.h.etcd().await?;
            self.renew(&etcd).await?;
            Ok::<Etcd, EtcdError>(etcd)
        })
        .await;
        let etcd = match renewal {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return self.etcd_lost(&local, e).await,
            Err(_) => {
                let e = EtcdError("no lease renewal before the demotion moment".into());
                return self.etcd_lost(&local, e).await;
            }
        };
        let (leader, rev) = match etcd.get(&self.h.keys.leader()).await {
            Ok(r) => r,
            Err(e) => return self.etcd_lost(&local, e).await,
        };
        self.last_error = None;
        if let Err(e) = self.publish(&etcd, &local).await {
            tracing::warn!(error = %e, "cannot publish the member record");
        }
        let leader = leader.and_then(|e| {
            serde_json::from_str::<LeaderRecord>(&e.value)
                .ok()
                .map(|r| (r, e))
        });
        match leader {
            Some((r, e)) if r.node == self.me() => self.as_leader(&etcd, &local, e).await,
            Some((r, _)) => {
                self.candidate = None;
                self.unhealthy_since = None;
                self.as_follower(&local, &r.node).await
            }
            None => self.without_leader(&etcd, &local, rev).await,
        }
    }

    /// Renews the session lease (or grants a new one), moving the deadline.
    async fn renew(&mut self, etcd: &Etcd) -> Result<(), EtcdError> {
        let sent = Instant::now();
        let alive = match self.h.lease() {
            Some(id) => etcd.renew(id).await?,
            None => false,
        };
        if !alive {
            if self.h.lease().is_some() {
                tracing::warn!("the etcd lease expired: its keys are gone");
            }
            let id = etcd.grant(self.h.ha.ttl).await?;
            self.h.set_lease(Some(id));
        }
        self.lease_deadline = sent + self.h.ha.ttl;
        Ok(())
    }

    /// etcd cannot be reached: a master that may hold the leader key demotes itself a
    /// margin before its lease can expire; nobody else does anything.
    async fn etcd_lost(&mut self, local: &Local, e: EtcdError) {
        self.h.drop_etcd().await;
        let msg = e.to_string();
        if self.last_error.as_ref() != Some(&msg) {
            tracing::warn!(error = %msg, "etcd unreachable");
            self.last_error = Some(msg);
        }
        let is_master = matches!(local, Local::Up(f) if !f.in_recovery);
        if !is_master || Instant::now() < self.demote_at() {
            return;
        }
        let Some(dir) = self.reader.data_dir() else {
            tracing::error!("cannot demote: the data directory is unknown");
            return;
        };
        tracing::warn!("cannot renew the leader lease: demoting before it can expire");
        metrics::counter!("atoll_agent_ha_demotions_total").increment(1);
        if let Err(e) = local::demote(&self.tools, &dir, self.h.ha.demote_margin() / 2).await {
            tracing::error!(error = %e, "demotion failed");
        }
    }

    async fn publish(&self, etcd: &Etcd, local: &Local) -> Result<(), EtcdError> {
        let f = local.facts();
        let rec = MemberRecord {
            node: self.me(),
            agent: self.h.agent_addr.clone(),
            role: local.role(),
            position: f.map_or(0, |f| f.position),
            timeline: f.map_or(0, |f| f.timeline),
            replay_age_ms: f.and_then(|f| f.replay_age_ms),
            upstream: f.and_then(|f| f.upstream.clone()),
            at_ms: now_ms().max(0) as u64,
        };
        let text = serde_json::to_string(&rec).map_err(|e| EtcdError(e.to_string()))?;
        etcd.put(&self.h.keys.member(&self.me()), text, self.h.lease())
            .await
    }

    async fn as_leader(&mut self, etcd: &Etcd, local: &Local, entry: super::etcd::Entry) {
        self.candidate = None;
        // `round` renewed or granted the lease just before; without one the key would be
        // put with no expiry at all.
        let Some(lease) = self.h.lease() else { return };
        if entry.lease != lease {
            // Handed over by a switchover, or held by this agent before a restart.
            let _ = etcd
                .swap(
                    &self.h.keys.leader(),
                    entry.mod_revision,
                    &entry.value,
                    lease,
                )
                .await;
        }
        metrics::gauge!("atoll_agent_ha_leader").set(1.0);
        match local {
            Local::Up(f) if !f.in_recovery => {
                self.unhealthy_since = None;
                if f.read_only {
                    log_err("make writable", local::make_writable(&self.h.cfg).await);
                }
                let o = Optime {
                    node: self.me(),
                    position: f.position,
                    timeline: f.timeline,
                    at_ms: now_ms().max(0) as u64,
                };
                if let Ok(t) = serde_json::to_string(&o) {
                    let _ = etcd.put(&self.h.keys.optime(), t, None).await;
                }
                let s = sync::manage(&self.h.cfg, self.h.ha.synchronous, etcd, &self.h.keys);
                log_err("synchronous standbys", s.await);
                self.catch_up_control(f);
            }
            Local::Up(_) => {
                if self.reader.running().is_none() {
                    tracing::info!("leader in recovery: promoting");
                    log_err("promotion", local::promote(&self.h.cfg).await);
                }
            }
            Local::Down | Local::Unresponsive => self.leader_unhealthy(etcd).await,
        }
    }

    /// The leader's own server does not answer: after `unhealthy_after`, kill what is left
    /// of it and revoke the lease so a replica takes over now rather than at the TTL.
    async fn leader_unhealthy(&mut self, etcd: &Etcd) {
        if self.reader.running().is_some() {
            return;
        }
        let since = *self.unhealthy_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.h.ha.unhealthy_after() {
            return;
        }
        tracing::warn!(
            waited_ms = since.elapsed().as_millis() as u64,
            "the master does not answer: fencing it and releasing the leader key"
        );
        if let Some(dir) = self.reader.data_dir() {
            log_err("fence", local::kill(&dir).await);
        }
        if let Some(id) = self.h.lease() {
            if etcd.revoke(id).await.is_ok() {
                self.h.set_lease(None);
            }
        }
        metrics::gauge!("atoll_agent_ha_leader").set(0.0);
        self.unhealthy_since = None;
    }

    /// Another node leads: anything this node must change to follow it runs as a task
    /// of its own (a rejoin may take a pg_rewind), so the loop keeps renewing meanwhile.
    async fn as_follower(&mut self, local: &Local, leader: &str) {
        metrics::gauge!("atoll_agent_ha_leader").set(0.0);
        if self.reader.running().is_some()
            || self.following.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let Some(master) = self.h.cfg.island_node(leader) else {
            tracing::warn!(%leader, "the leader is not a node of this island in atoll.toml");
            return;
        };
        let Some(dir) = self.reader.data_dir() else {
            return;
        };
        let Some(work) = Follow::needed(local, &master, &dir, &self.me()) else {
            if let Some(f) = local.facts() {
                self.catch_up_control(f);
            }
            return;
        };
        let (h, tools) = (self.h.clone(), self.tools.clone());
        let last = self.follow_error.clone();
        self.following = Some(tokio::spawn(async move {
            let result = work.run(&h, &tools, &dir, &master).await;
            let mut shown = last.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                // Each different failure is logged once (a dead leader fails every loop).
                Err(e) if shown.as_deref() != Some(&e.to_string()) => {
                    tracing::warn!(error = %e, ?work, "following the leader failed");
                    *shown = Some(e.to_string());
                }
                Err(_) => {}
                Ok(()) => *shown = None,
            }
        }));
    }
}

impl Loop {
    /// Starts a CHECKPOINT when the control file names an older timeline than the server
    /// works on (after a promotion, or on a replica after one), unless one runs or ran
    /// recently.
    fn catch_up_control(&mut self, f: &local::Facts) {
        if f.control_timeline >= f.timeline {
            return;
        }
        if let Some((at, task)) = &self.control_catch_up {
            if !task.is_finished() || at.elapsed() < CATCH_UP_EVERY {
                return;
            }
        }
        let node = self.h.cfg.node.clone();
        let timeout = self.h.cfg.cluster.connect_timeout;
        let task = tokio::spawn(async move {
            match crate::timeline::catch_up(&node, timeout).await {
                Ok(lag) => tracing::debug!(?lag, "control file after a checkpoint"),
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        });
        self.control_catch_up = Some((Instant::now(), task));
    }
}

pub(super) fn log_err<E: std::fmt::Display>(what: &str, r: Result<(), E>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "{what} failed");
    }
}
