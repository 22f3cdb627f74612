//! Agents started in the test process against a test cluster's nodes, and a small HTTP
//! client for them.
#![allow(dead_code)]

use atoll_agent::{Agent, AgentConfig};
use atoll_testkit::TestCluster;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub const TOKEN: &str = "test-token-0123456789";

static N: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "atoll-agent-{what}-{}-{n}-{:08x}",
            std::process::id(),
            rand_u32()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An agent in this process, with its state directory and token file.
pub struct TestAgent {
    pub agent: Option<Agent>,
    pub url: String,
    pub state: TempDir,
    pub http: reqwest::Client,
}

/// The config of an agent for the node on `port`, token in a file of `state`.
pub fn agent_config(cluster: &TestCluster, port: u16, state: &TempDir) -> AgentConfig {
    let token_file = state.0.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut cfg = AgentConfig::for_node(
        cluster.config().clone(),
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:0".parse().unwrap(),
        state.0.join("state"),
    )
    .unwrap();
    cfg.token = Some(format!("file:{}", token_file.display()).parse().unwrap());
    cfg
}

pub async fn start_agent(cluster: &TestCluster, port: u16) -> TestAgent {
    start_with(cluster, port, |_| {}).await
}

pub async fn start_with(
    cluster: &TestCluster,
    port: u16,
    tweak: impl FnOnce(&mut AgentConfig),
) -> TestAgent {
    let state = TempDir::new("state");
    let mut cfg = agent_config(cluster, port, &state);
    tweak(&mut cfg);
    let agent = Agent::start(cfg).await.unwrap();
    TestAgent {
        url: format!("http://{}", agent.addr()),
        agent: Some(agent),
        state,
        http: reqwest::Client::new(),
    }
}

impl TestAgent {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn attributes(&self) -> Value {
        let (status, v) = self.get("/v1/attributes").await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// POSTs `body` (raw) with the token when `token`.
    pub async fn post_raw(&self, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/actions", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn schedule(&self, id: &str, kind: &str, args: Value) -> (u16, Value) {
        let body = serde_json::json!({ "id": id, "kind": kind, "args": args }).to_string();
        self.post_raw(&body, Some(TOKEN)).await
    }

    /// Waits until action `id` is DONE or FAILED and returns its record.
    pub async fn finished(&self, id: &str, timeout: std::time::Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (status, v) = self.get(&format!("/v1/actions/{id}")).await;
            assert_eq!(status, 200, "{v}");
            if v["state"] == "DONE" || v["state"] == "FAILED" {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "action {id} unfinished: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(a) = self.agent.take() {
            a.stop().await.unwrap();
        }
    }
}

/// A node's `pg_lsn` as a number: `select x - '0/0'`.
pub fn lsn(cluster: &TestCluster, port: u16, expr: &str) -> i64 {
    let text = cluster.psql(port, &format!("select ({expr}) - '0/0'::pg_lsn"));
    text.parse::<f64>()
        .unwrap_or_else(|e| panic!("{expr}: {text}: {e}")) as i64
}

/// Waits until action `id` is RUNNING (or already finished).
pub async fn wait_running(a: &TestAgent, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = a.get(&format!("/v1/actions/{id}")).await;
        if v["state"] != "NEW" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never started: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cluster`'s config with one more node on island 0 at `port`.
pub fn config_with_node(cluster: &TestCluster, port: u16) -> atoll_core::Config {
    let mut config = cluster.config().clone();
    let mut node = config.islands[0].nodes[0].clone();
    node.port = port;
    config.islands[0].nodes.push(node);
    config
}

/// Stops a server the test's agent started (by the pid in its postmaster.pid, checked to
/// be a postgres of that directory), also when the test fails.
pub struct ServerGuard(pub PathBuf);

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
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        if cwd.as_deref() != std::fs::canonicalize(&self.0).ok().as_deref() {
            return;
        }
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        for _ in 0..500 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
