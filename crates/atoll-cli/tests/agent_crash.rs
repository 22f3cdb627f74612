//! `atoll agent` as a process: a kill -9 while an action runs, then a restart on the same
//! state directory. A kind that is safe to re-run (`node.restart`) continues and ends DONE
//! on its second attempt; one that is not (`cluster.init` with initdb) is FAILED
//! `interrupted`, and scheduled again on an emptied directory it makes a new island. A
//! SIGTERM stops the agent gracefully (exit 0). Then every other kind is killed at its worst
//! moment, its work done and its outcome not yet recorded (the sandbox-only test hook
//! `ATOLL_AGENT_TEST_HOLD`): the re-runnable ones end DONE on a second attempt that changes
//! nothing twice, the others FAILED `interrupted` with their work left as it was.

use atoll_testkit::agent::{AgentProcess, TOKEN};
use atoll_testkit::TestCluster;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The built binary's agent, killed (by its pid) if the test ends while it runs.
struct AgentProc;

impl AgentProc {
    fn start(config: &Path, node: &str, state: &Path, data_dir: &Path) -> AgentProcess {
        AgentProc::start_with(config, node, state, data_dir, false)
    }

    /// `hold`: with the test hook that holds each action once its work is done.
    fn start_with(
        config: &Path,
        node: &str,
        state: &Path,
        data_dir: &Path,
        hold: bool,
    ) -> AgentProcess {
        let bin = Path::new(env!("CARGO_BIN_EXE_atoll"));
        AgentProcess::start_with(bin, config, node, state, data_dir, hold).unwrap()
    }
}

/// A port no server listens on now (for a node the test adds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn schedule(a: &AgentProcess, id: &str, kind: &str, args: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/actions", a.url))
        .bearer_auth(TOKEN)
        .json(&json!({"id": id, "kind": kind, "args": args}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

async fn wait_state(a: &AgentProcess, id: &str, done: impl Fn(&str) -> bool) -> Value {
    wait_record(a, id, |v| done(v["state"].as_str().unwrap_or(""))).await
}

async fn wait_record(a: &AgentProcess, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&format!("{}/v1/actions/{id}", a.url)).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{id}: {v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until no process runs with `dir` on its command line (an initdb the killed agent
/// started goes on by itself).
fn wait_no_process_on(dir: &Path) {
    let needle = dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .replace('\0', " ")
                            .contains(&needle)
                    })
                    .unwrap_or(false)
            });
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a process still runs on {needle}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the server in `dir` (started by the agent) by its checked pid.
struct ServerGuard(PathBuf);
impl Drop for ServerGuard {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.0.join("postmaster.pid")) else {
            return;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return;
        };
        if std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
            != std::fs::canonicalize(&self.0).ok()
        {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        );
        for _ in 0..500 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_actions_then_restart() {
    let c = TestCluster::setup(1, 1).start().await.unwrap();
    let island = &c.sandbox().islands()[0];
    let (replica_port, replica_dir) = (island.nodes[1].port, island.nodes[1].data_dir.clone());
    let island_dir = replica_dir.parent().unwrap().to_path_buf();
    let new_port = free_port();
    let config = c.sandbox().dir().join("agents.toml");
    let text = std::fs::read_to_string(c.config_path()).unwrap();
    std::fs::write(&config, format!("{text}\n[[island]]\nid = 1\nnodes = [ {{ host = \"127.0.0.1\", port = {new_port} }} ]\n")).unwrap();
    let states = c.sandbox().dir().join("agent-states");
    std::fs::create_dir_all(&states).unwrap();

    // A re-runnable kind continues after a kill -9.
    let replica = format!("127.0.0.1:{replica_port}");
    let rstate = states.join("replica");
    let mut a = AgentProc::start(&config, &replica, &rstate, &replica_dir);
    schedule(&a, "restart-1", "node.restart", json!({})).await;
    wait_state(&a, "restart-1", |s| s == "RUNNING").await;
    a.kill9();
    let a = AgentProc::start(&config, &replica, &rstate, &replica_dir);
    let r = wait_state(&a, "restart-1", |s| s == "DONE" || s == "FAILED").await;
    assert_eq!(
        (r["state"].as_str(), r["attempts"].as_i64()),
        (Some("DONE"), Some(2)),
        "{r}"
    );
    assert_eq!(c.psql(replica_port, "select pg_is_in_recovery()"), "t");

    // One that is not safe to re-run is FAILED interrupted, never run twice.
    let node = format!("127.0.0.1:{new_port}");
    let new_dir = island_dir.join("island1-node0");
    let _server = ServerGuard(new_dir.clone());
    let nstate = states.join("new");
    let mut b = AgentProc::start(&config, &node, &nstate, &new_dir);
    let cluster_id = c.psql(
        island.nodes[0].port,
        "select value from atoll.meta where key = 'cluster_id'",
    );
    let args = json!({"initdb": true, "cluster_id": cluster_id});
    schedule(&b, "init-1", "cluster.init", args.clone()).await;
    wait_state(&b, "init-1", |s| s == "RUNNING").await;
    b.kill9();
    wait_no_process_on(&new_dir);
    let b = AgentProc::start(&config, &node, &nstate, &new_dir);
    let r = wait_state(&b, "init-1", |s| s != "RUNNING").await;
    assert_eq!(
        (
            r["state"].as_str(),
            r["error"]["code"].as_str(),
            r["attempts"].as_i64()
        ),
        (Some("FAILED"), Some("interrupted"), Some(1)),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{r}"
    );

    // Scheduled again on an emptied directory, it makes island 1 of the same cluster.
    ServerGuard(new_dir.clone());
    let _ = std::fs::remove_dir_all(&new_dir);
    schedule(&b, "init-2", "cluster.init", args).await;
    let r = wait_state(&b, "init-2", |s| s == "DONE" || s == "FAILED").await;
    assert_eq!(r["state"], "DONE", "{r}");
    let attrs = get(&format!("{}/v1/attributes", b.url)).await;
    assert_eq!(
        (attrs["cluster_id"].as_str(), attrs["island"].as_i64()),
        (Some(cluster_id.as_str()), Some(1)),
        "{attrs}"
    );
    assert_eq!(
        (attrs["role"].as_str(), attrs["status"].as_str()),
        (Some("master"), Some("HEALTHY")),
        "{attrs}"
    );

    // SIGTERM: a graceful stop.
    let (mut a, mut b) = (a, b);
    assert!(a.term().unwrap().success());
    assert!(b.term().unwrap().success());
}

/// One node's agent as the crash test runs it: its config, address, state and data.
struct Node {
    config: PathBuf,
    addr: String,
    state: PathBuf,
    data: PathBuf,
}

impl Node {
    /// Schedules `kind` on an agent that holds the action once its work is done, kills
    /// that agent with -9 right there, restarts it without the hook and returns the
    /// action's final record.
    async fn crash_after_work(&self, id: &str, kind: &str, args: Value) -> Value {
        let mut a = AgentProc::start_with(&self.config, &self.addr, &self.state, &self.data, true);
        schedule(&a, id, kind, args).await;
        let held = wait_record(&a, id, |v| {
            v["progress"]
                .as_str()
                .is_some_and(|p| p.contains("outcome held"))
                || v["state"] != "RUNNING" && v["state"] != "NEW"
        })
        .await;
        assert_eq!(
            held["state"], "RUNNING",
            "{kind} ended before the hook held it: {held}"
        );
        a.kill9();
        let mut a = AgentProc::start(&self.config, &self.addr, &self.state, &self.data);
        let r = wait_state(&a, id, |s| s == "DONE" || s == "FAILED").await;
        assert!(a.term().unwrap().success());
        r
    }
}

fn attempt(r: &Value) -> (Option<&str>, Option<i64>) {
    (r["state"].as_str(), r["attempts"].as_i64())
}

fn interrupted(r: &Value) -> (Option<&str>, Option<&str>, Option<i64>) {
    (
        r["state"].as_str(),
        r["error"]["code"].as_str(),
        r["attempts"].as_i64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_once_each_kinds_work_is_done() {
    let c = TestCluster::setup(1, 1).shards([1]).start().await.unwrap();
    let island = &c.sandbox().islands()[0];
    let (mp, rp) = (island.nodes[0].port, island.nodes[1].port);
    let (master_dir, island_dir) = (
        island.nodes[0].data_dir.clone(),
        island.nodes[0].data_dir.parent().unwrap().to_path_buf(),
    );
    let new_port = free_port();
    // The sandbox's config (the hook needs its mark) with a third node on island 0.
    let config = c.sandbox().dir().join("agents.toml");
    let text = std::fs::read_to_string(c.config_path()).unwrap();
    let text = text.trim_end().strip_suffix(']').unwrap().to_string();
    std::fs::write(
        &config,
        format!("{text}  {{ host = \"127.0.0.1\", port = {new_port} }},\n]\n"),
    )
    .unwrap();
    let states = c.sandbox().dir().join("agent-states");
    std::fs::create_dir_all(&states).unwrap();
    let new_dir = island_dir.join("joined");
    let _server = ServerGuard(new_dir.clone());
    let node = |port: u16, name: &str, data: &Path| Node {
        config: config.clone(),
        addr: format!("127.0.0.1:{port}"),
        state: states.join(name),
        data: data.to_path_buf(),
    };
    let master = node(mp, "master", &master_dir);
    let joiner = node(new_port, "joiner", &new_dir);
    let active = || c.psql(mp, "select active from atoll.shards where shard = 1");

    // shard.deactivate / shard.activate: re-run, DONE on the second attempt.
    let r = master
        .crash_after_work("off", "shard.deactivate", json!({"shard": 1}))
        .await;
    assert_eq!(attempt(&r), (Some("DONE"), Some(2)), "{r}");
    assert_eq!(active(), "f");
    let r = master
        .crash_after_work("on", "shard.activate", json!({"shard": 1}))
        .await;
    assert_eq!(attempt(&r), (Some("DONE"), Some(2)), "{r}");
    assert_eq!(active(), "t");

    // cluster.add: re-run; one slot and one access rule, not two.
    let new_node = joiner.addr.clone();
    let r = master
        .crash_after_work(
            "add",
            "cluster.add",
            json!({"node": new_node, "auth": "trust"}),
        )
        .await;
    assert_eq!(attempt(&r), (Some("DONE"), Some(2)), "{r}");
    assert_eq!(
        r["output"]["slot_created"], false,
        "the re-run found the slot: {r}"
    );
    let slot = r["output"]["slot"].as_str().unwrap().to_string();
    let slots = format!("select count(*) from pg_replication_slots where slot_name = '{slot}'");
    assert_eq!(c.psql(mp, &slots), "1");
    // The rules tagged for the new node, in the file the server reads.
    let rules = || {
        let hba = std::fs::read_to_string(c.psql(mp, "show hba_file")).unwrap();
        let tag = format!("# atoll-agent member {new_node}");
        hba.lines().filter(|l| l.ends_with(&tag)).count()
    };
    assert_eq!(rules(), 1);

    // cluster.join: not re-run (a half-copied directory needs a person): FAILED
    // interrupted, and the node it made is left streaming.
    let r = joiner
        .crash_after_work("join", "cluster.join", json!({}))
        .await;
    assert_eq!(
        interrupted(&r),
        (Some("FAILED"), Some("interrupted"), Some(1)),
        "{r}"
    );
    assert_eq!(c.psql(new_port, "select pg_is_in_recovery()"), "t");

    // cluster.remove (the node stopped first): re-run, the second attempt a no-op.
    drop(_server);
    let r = master
        .crash_after_work("rm", "cluster.remove", json!({"node": new_node}))
        .await;
    assert_eq!(attempt(&r), (Some("DONE"), Some(2)), "{r}");
    assert_eq!(r["output"]["was_member"], false, "{r}");
    assert_eq!(c.psql(mp, &slots), "0");
    assert_eq!(rules(), 0);

    // node.switchover: not re-run: FAILED interrupted, the handover done as it was.
    let r = master
        .crash_after_work(
            "so",
            "node.switchover",
            json!({"candidate": format!("127.0.0.1:{rp}")}),
        )
        .await;
    assert_eq!(
        interrupted(&r),
        (Some("FAILED"), Some("interrupted"), Some(1)),
        "{r}"
    );
    assert_eq!(c.psql(rp, "select pg_is_in_recovery()"), "f");
    assert_eq!(c.psql(mp, "select pg_is_in_recovery()"), "t");
}
