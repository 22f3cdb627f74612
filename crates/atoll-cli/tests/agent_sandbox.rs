//! `atoll sandbox up --agents` runs an agent per node; `atoll status --agent` shows their
//! reports; `atoll agent status|actions|schedule` talk to them; `sandbox destroy` stops
//! them by pid.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn atoll(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atoll"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Destroys the sandbox (and so its agents) when the test ends, also on failure.
struct Cleanup<'a>(&'a Path);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = atoll(self.0, &["sandbox", "destroy", "--dir", "sb"]);
        let _ = std::fs::remove_dir_all(self.0);
    }
}

#[test]
fn sandbox_agents_report_and_take_actions() {
    let dir = std::env::temp_dir().join(format!("atoll-agent-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(&dir);
    ok(&atoll(
        &dir,
        &[
            "sandbox",
            "up",
            "--dir",
            "sb",
            "--islands",
            "1",
            "--replicas",
            "1",
            "--agents",
        ],
    ));
    ok(&atoll(&dir, &["init"]));
    let list: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sb/agents/agents.json")).unwrap())
            .unwrap();
    assert_eq!(list.len(), 2);
    let addrs: Vec<String> = list
        .iter()
        .map(|a| a["agent"].as_str().unwrap().to_string())
        .collect();
    let pids: Vec<u64> = list.iter().map(|a| a["pid"].as_u64().unwrap()).collect();

    let mut args = vec!["status", "--json"];
    for a in &addrs {
        args.extend(["--agent", a.as_str()]);
    }
    // The replica is NOT_IN_CLUSTER until it replayed `init` (exit 3 meanwhile).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let o = atoll(&dir, &args);
        if o.status.success() || std::time::Instant::now() > deadline {
            break ok(&o);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let status: Value = serde_json::from_str(&out).unwrap();
    let roles: Vec<&str> = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["master", "replica"], "{status}");
    assert_eq!(status["agents"][0]["status"], "HEALTHY");
    let text = ok(&atoll(
        &dir,
        &args[..1]
            .iter()
            .chain(args[2..].iter())
            .copied()
            .collect::<Vec<_>>(),
    ));
    assert!(
        text.contains("agents:") && text.contains("HEALTHY"),
        "{text}"
    );

    let token = format!("file:{}", dir.join("sb/agents/token").display());
    let out = ok(&atoll(
        &dir,
        &[
            "agent",
            "schedule",
            "--agent",
            &addrs[1],
            "--kind",
            "node.restart",
            "--id",
            "r-1",
            "--token",
            &token,
            "--wait",
            "--json",
        ],
    ));
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["state"], "DONE", "{rec}");
    // Bad input: one line, exit 2; a duplicate id is refused.
    let dup = atoll(
        &dir,
        &[
            "agent",
            "schedule",
            "--agent",
            &addrs[1],
            "--kind",
            "node.restart",
            "--id",
            "r-1",
            "--token",
            &token,
        ],
    );
    assert_eq!(dup.status.code(), Some(2));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.contains("exists")
            && err.lines().count() == 1
            && !err.contains(&std::fs::read_to_string(dir.join("sb/agents/token")).unwrap()),
        "{err}"
    );
    let listed = ok(&atoll(&dir, &["agent", "actions", "--agent", &addrs[1]]));
    assert!(
        listed.contains("r-1") && listed.contains("DONE"),
        "{listed}"
    );
    let st = ok(&atoll(
        &dir,
        &[
            "agent", "status", "--agent", &addrs[0], "--agent", &addrs[1],
        ],
    ));
    assert_eq!(st.lines().count(), 2, "{st}");

    ok(&atoll(&dir, &["sandbox", "destroy", "--dir", "sb"]));
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .contains("zombie"),
            "agent {pid} still runs"
        );
    }
}
