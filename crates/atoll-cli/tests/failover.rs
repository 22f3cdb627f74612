//! Automated failover on a real etcd (`sandbox.enable_ha`) with one `atoll agent` process
//! per node of an island of 1 master + 2 replicas (TTL 4 s, loop 200 ms), while an
//! atoll-client writer runs and a probe asks every node every 20 ms whether it takes
//! writes. Each test kills, freezes or cuts off something and checks that a replica takes
//! over (or, rightly, none does), that no acknowledged write is lost in synchronous mode,
//! and that two writable masters are never seen.

use atoll_agent::ha::{read_status, IslandHa};
use atoll_sandbox::SandboxHa;
use atoll_testkit::agent::AgentProcess;
use atoll_testkit::failover::{island_follows, signal_pids, signal_server, WritableProbe};
use atoll_testkit::{shard, writer, TestCluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One failover test at a time: their timings are the point, and two would share 2 cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Ha {
    // Fields drop in declaration order: the agents stop before the sandbox (and its etcd).
    agents: Vec<AgentProcess>,
    c: TestCluster,
    ports: Vec<u16>,
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

async fn ha_cluster(synchronous: bool, extra: &str) -> Ha {
    let mut c = TestCluster::setup(1, 2).shards([1]).start().await.unwrap();
    let island = &c.sandbox().islands()[0];
    let ports: Vec<u16> = island.nodes.iter().map(|n| n.port).collect();
    let dirs: Vec<_> = island.nodes.iter().map(|n| n.data_dir.clone()).collect();
    c.psql(ports[0], "create table sh0001.items (id bigint primary key default sh0001.id_gen(), payload bigint not null unique)");
    c.sandbox()
        .enable_ha(SandboxHa {
            ttl_s: 4,
            loop_ms: Some(200),
            synchronous,
        })
        .unwrap();
    if !extra.is_empty() {
        let path = c.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{extra}\n")).unwrap();
    }
    c.reload_config().unwrap();
    let states = c.sandbox().dir().join("agents");
    std::fs::create_dir_all(&states).unwrap();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_atoll"));
    let agents = ports
        .iter()
        .zip(&dirs)
        .map(|(p, d)| {
            AgentProcess::start(
                &bin,
                &c.config_path(),
                &addr(*p),
                &states.join(p.to_string()),
                d,
            )
            .unwrap()
        })
        .collect();
    let ha = Ha { agents, c, ports };
    ha.wait_leader(|l| l == addr(ha.ports[0]), "the first master to lead")
        .await;
    if synchronous {
        let names = ha
            .until(Duration::from_secs(20), "synchronous standbys set", || {
                ha.query(0, "show synchronous_standby_names")
                    .filter(|v| !v.is_empty())
            })
            .await;
        assert!(names.starts_with("ANY 1"), "{names}");
    }
    ha
}

impl Ha {
    /// The island's failover state; etcd may be slow to answer right after a restart.
    async fn status(&self) -> IslandHa {
        for _ in 0..20 {
            if let Ok(Some(mut s)) = read_status(self.c.config()).await {
                return s.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("etcd does not answer");
    }

    async fn until<T>(&self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a leader that `ok` accepts; returns it.
    async fn wait_leader(&self, ok: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.status().await;
            if let Some(l) = s.leader.as_ref().filter(|l| ok(&l.node)) {
                return l.node.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn index_of(&self, node: &str) -> usize {
        self.ports.iter().position(|p| addr(*p) == node).unwrap()
    }

    /// The host dies: kill -9 of the node's agent, postmaster and every backend.
    fn kill_node(&mut self, i: usize) {
        self.agents[i].kill9();
        signal_server(
            &self.c.sandbox().islands()[0].nodes[i].data_dir,
            libc::SIGKILL,
        );
    }

    /// `sql`'s one value on node `i`, `None` when the node does not answer.
    fn query(&self, i: usize, sql: &str) -> Option<String> {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.ports[i].to_string(),
                "-U",
                "postgres",
                "-Atc",
                sql,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn in_recovery(&self, i: usize) -> Option<bool> {
        self.query(i, "select pg_is_in_recovery()")
            .map(|v| v == "t")
    }

    /// The port node `i` streams from, if it does.
    fn upstream_port(&self, i: usize) -> Option<String> {
        self.query(
            i,
            "select sender_port from pg_stat_wal_receiver where status = 'streaming'",
        )
        .filter(|v| !v.is_empty())
    }
}

/// Waits until the rows on `leader` grow: the writer's inserts are acknowledged there.
async fn writes_continue(h: &Ha, leader: &str) {
    let i = h.index_of(leader);
    let count = || {
        h.query(i, "select count(*) from sh0001.items")?
            .parse::<i64>()
            .ok()
    };
    let before = h
        .until(Duration::from_secs(20), "the new master to answer", count)
        .await;
    h.until(
        Duration::from_secs(40),
        "writes acknowledged by the new master",
        || count().filter(|n| *n > before + 5),
    )
    .await;
}

fn remove_wal_segments(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir.join("pg_wal")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

/// Whether a `<dir>.replaced-<ms>` directory sits beside `dir`.
fn replaced_beside(dir: &std::path::Path) -> bool {
    let name = format!("{}.replaced-", dir.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&name))
}

/// Three masters killed in a row, each old master restarted and rejoined before the next
/// kill: the nodes go through three timelines, and the last kill hits a node that was
/// itself rewound after an earlier failover, and whose WAL is then removed, so that
/// pg_rewind fails and the node is copied anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kill_9_failovers_in_a_row_every_old_master_rejoins() {
    let _one = SERIAL.lock().await;
    let mut h = ha_cluster(false, "").await;
    let probe = WritableProbe::start(h.ports.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer::run_idempotent(
        h.c.config().clone(),
        shard(1),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut leader = addr(h.ports[0]);
    let mut leaders = Vec::new();
    for round in 1..=3 {
        let i = h.index_of(&leader);
        let killed = Instant::now();
        h.kill_node(i);
        let old = leader.clone();
        leader = h
            .wait_leader(|l| l != old, &format!("failover {round}"))
            .await;
        leaders.push((leader.clone(), killed.elapsed()));
        writes_continue(&h, &leader).await;
        let dir = h.c.sandbox().islands()[0].nodes[i].data_dir.clone();
        if round == 3 {
            // Its WAL lost as well: pg_rewind cannot help, the node is copied anew.
            remove_wal_segments(&dir);
        }
        // The old master comes back and rejoins as a replica of the new one.
        h.agents[i].restart().unwrap();
        let port = leader.rsplit(':').next().map(str::to_string);
        h.until(Duration::from_secs(90), "the old master to rejoin", || {
            (h.upstream_port(i) == port).then_some(())
        })
        .await;
        island_follows(&h.ports, &leader).await;
        if round == 3 {
            assert!(
                replaced_beside(&dir),
                "the old data directory is kept aside"
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let stats = w.await.unwrap();
    let (two, _) = probe.finish().await;
    let s = h.status().await;
    eprintln!(
        "failovers: {leaders:?}; acked {}; errors {}; last {:?}",
        stats.acked.len(),
        stats.errors.len(),
        s.last_failover
    );
    assert_eq!(two, 0, "probe rounds with two writable masters");
    assert!(s.last_failover.is_some_and(|f| f.to == leader));
    assert!(stats.acked.len() > 10, "the writer kept writing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_mode_loses_no_acknowledged_write() {
    let _one = SERIAL.lock().await;
    let mut h = ha_cluster(true, "").await;
    let probe = WritableProbe::start(h.ports.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer::run(h.c.config().clone(), shard(1), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.kill_node(0);
    let leader = h
        .wait_leader(|l| l != addr(h.ports[0]), "a replica to lead")
        .await;
    writes_continue(&h, &leader).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let stats = w.await.unwrap();
    assert_eq!(
        probe.finish().await.0,
        0,
        "probe rounds with two writable masters"
    );
    assert!(stats.acked.len() > 10, "acked {}", stats.acked.len());
    // Every acknowledged row is on the new master, none twice.
    writer::check_acked(h.c.config(), shard(1), &stats.acked).await;
    let f = h.status().await.last_failover.unwrap();
    assert_eq!(f.to, leader);
    assert!(f.synchronous);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_nobody_promotes_and_the_master_stops_taking_writes() {
    let _one = SERIAL.lock().await;
    let h = ha_cluster(false, "").await;
    let probe = WritableProbe::start(h.ports.clone());
    h.c.sandbox().stop_etcd().unwrap();
    let cut = Instant::now();
    // The master demotes itself before its lease (4 s) can expire: at 3 s plus a shutdown.
    h.until(
        Duration::from_secs(10),
        "the master to demote itself",
        || (h.in_recovery(0) == Some(true)).then_some(()),
    )
    .await;
    let demoted = cut.elapsed();
    assert!(
        demoted < Duration::from_secs(4),
        "demoted after {demoted:?}, past the TTL"
    );
    // Nobody is promoted while etcd is away.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for i in 0..3 {
        assert_eq!(
            h.in_recovery(i),
            Some(true),
            "node {i} took writes without etcd"
        );
    }
    h.c.sandbox().start_etcd().unwrap();
    let leader = h.wait_leader(|_| true, "a leader once etcd is back").await;
    // The old master has everything: it wins.
    assert_eq!(leader, addr(h.ports[0]));
    h.until(Duration::from_secs(20), "writes on the leader", || {
        (h.in_recovery(0) == Some(false)).then_some(())
    })
    .await;
    assert_eq!(probe.finish().await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_is_fenced_and_takes_no_writes_when_resumed() {
    let _one = SERIAL.lock().await;
    let h = ha_cluster(false, "").await;
    let probe = WritableProbe::start(h.ports.clone());
    let dir = h.c.sandbox().islands()[0].nodes[0].data_dir.clone();
    let frozen = signal_server(&dir, libc::SIGSTOP);
    let leader = h
        .wait_leader(|l| l != addr(h.ports[0]), "a replica to lead")
        .await;
    // Resumed past the TTL: its agent killed it meanwhile; nothing of it takes writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal_pids(&frozen, libc::SIGCONT);
    assert_ne!(
        h.in_recovery(0),
        Some(false),
        "the frozen master took writes after it resumed"
    );
    // And it comes back as a replica of the new master.
    let port = leader.rsplit(':').next().unwrap().to_string();
    h.until(
        Duration::from_secs(60),
        "the fenced master to rejoin",
        || (h.upstream_port(0) == Some(port.clone())).then_some(()),
    )
    .await;
    assert_eq!(probe.finish().await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_beyond_the_lag_limit_is_never_promoted() {
    let _one = SERIAL.lock().await;
    let mut h = ha_cluster(false, "max_lag_bytes = 10000").await;
    // Both replicas stop receiving (agents stopped, upstream pointed nowhere), the master
    // writes ~1 MB and publishes its position, then dies; the replicas' agents come back.
    for i in 1..3 {
        h.agents[i].kill9();
        h.c.psql(
            h.ports[i],
            "alter system set primary_conninfo = 'host=127.0.0.1 port=1'",
        );
        h.c.psql(h.ports[i], "select pg_reload_conf()");
    }
    h.c.psql(
        h.ports[0],
        "insert into sh0001.items (payload) select g from generate_series(1, 20000) g",
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.kill_node(0);
    for i in 1..3 {
        h.agents[i].restart().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let why = loop {
        let s = h.status().await;
        if let Some(atoll_core::ha::Election::NoWinner { refused, .. }) = &s.last_election {
            if refused.len() == 2 {
                break refused.clone();
            }
        }
        assert!(Instant::now() < deadline, "no refusal recorded: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (_, r) in &why {
        assert!(
            matches!(
                r,
                atoll_core::ha::Refusal::LagBytes {
                    max_lag_bytes: 10000,
                    ..
                }
            ),
            "{why:?}"
        );
    }
    // And none is promoted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.status().await.leader.is_none());
    assert_eq!(h.in_recovery(1), Some(true));
    assert_eq!(h.in_recovery(2), Some(true));
}

fn atoll(h: &Ha, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(h.c.config_path())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_hands_the_leader_key_to_the_chosen_replica() {
    let _one = SERIAL.lock().await;
    let h = ha_cluster(false, "").await;
    let token = format!("file:{}", h.agents[0].token_file.display());
    let to = addr(h.ports[2]);
    // Bad input is refused before anything is asked of the agents.
    let bad = atoll(
        &h,
        &[
            "failover",
            "--island",
            "0",
            "--to",
            "127.0.0.1:1",
            "--token",
            &token,
        ],
    );
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--to 127.0.0.1:1: not a node of island 0")
    );
    let out = atoll(
        &h,
        &[
            "--json", "failover", "--island", "0", "--to", &to, "--token", &token,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["state"], "DONE", "{record}");
    assert_eq!(record["output"]["new_master"], to.as_str());
    // The key follows, under the new master's own lease; the old master follows it.
    h.wait_leader(|l| l == to, "the chosen replica to lead")
        .await;
    assert_eq!(h.in_recovery(2), Some(false));
    let port = h.ports[2].to_string();
    h.until(
        Duration::from_secs(30),
        "the old master to stream from the new one",
        || {
            (h.upstream_port(0) == Some(port.clone()) && h.upstream_port(1) == Some(port.clone()))
                .then_some(())
        },
    )
    .await;
    let status = atoll(&h, &["--json", "ha", "status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["islands"][0]["leader"]["node"], to.as_str(), "{v}");
    assert_eq!(v["islands"][0]["last_failover"]["manual"], true, "{v}");
    assert_eq!(v["islands"][0]["last_failover"]["to"], to.as_str(), "{v}");
    // Five loops later it still leads: nobody took the key back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.status().await.leader.unwrap().node, to);
}
