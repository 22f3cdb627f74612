//! `atoll sandbox up --agents`: one `atoll agent` process per sandbox node, on port
//! node port + 1000 (another when that one is held), each with its state in `SANDBOX/agents/islandI-nodeN`, sharing the
//! token file `SANDBOX/agents/token` (used as `--token file:…`). Their pids are kept in
//! `SANDBOX/agents/agents.json`; `sandbox down` and `destroy` stop them by pid, checked to
//! be an agent of this sandbox first.

use crate::exit::Failure;
use atoll_sandbox::Sandbox;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where an agent's port is, from its node's.
const PORT_OFFSET: u16 = 1000;

/// One sandbox agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxAgent {
    pub island: u16,
    pub index: usize,
    pub node: String,
    pub agent: String,
    pub pid: u32,
    pub state_dir: PathBuf,
}

fn agents_dir(sandbox_dir: &Path) -> PathBuf {
    sandbox_dir.join("agents")
}

fn list_file(sandbox_dir: &Path) -> PathBuf {
    agents_dir(sandbox_dir).join("agents.json")
}

/// The agents recorded for the sandbox in `dir` (none when never started).
pub fn recorded(dir: &Path) -> Vec<SandboxAgent> {
    std::fs::read_to_string(list_file(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// True when `pid` is an `atoll agent` with `state_dir` on its command line.
fn is_ours(pid: u32, state_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let text = String::from_utf8_lossy(&c).replace('\0', " ");
        text.contains(" agent ") && text.contains(&state_dir.display().to_string())
    })
}

/// Starts an agent for every node of `sandbox` that has none running.
pub fn start_all(sandbox: &Sandbox) -> Result<Vec<SandboxAgent>, Failure> {
    let dir = sandbox.dir();
    let adir = agents_dir(dir);
    std::fs::create_dir_all(&adir)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", adir.display())))?;
    let token = adir.join("token");
    if !token.exists() {
        let secret = format!("{:032x}", rand::random::<u128>());
        write_private(&token, &secret)?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find the atoll binary: {e}")))?;
    let running = recorded(dir);
    let mut agents = Vec::new();
    let mut children = Vec::new();
    for island in sandbox.islands() {
        for n in &island.nodes {
            let state_dir = adir.join(format!("island{}-node{}", island.id, n.index));
            if let Some(a) = running
                .iter()
                .find(|a| a.state_dir == state_dir && is_ours(a.pid, &a.state_dir))
            {
                agents.push(a.clone());
                continue;
            }
            let preferred = n.port.checked_add(PORT_OFFSET).ok_or_else(|| {
                Failure::input(format!("node port {} leaves no agent port", n.port))
            })?;
            let port = agent_port(preferred)?;
            std::fs::create_dir_all(&state_dir).map_err(|e| {
                Failure::failed(format!("cannot create {}: {e}", state_dir.display()))
            })?;
            let log = std::fs::File::create(state_dir.join("agent.log"))
                .map_err(|e| Failure::failed(format!("agent log: {e}")))?;
            let node = format!("{}:{}", n.host, n.port);
            let agent = format!("127.0.0.1:{port}");
            let mut cmd = Command::new(&exe);
            cmd.arg("--config")
                .arg(sandbox.config_path())
                .args(["agent", "--node", &node, "--listen", &agent, "--state-dir"])
                .arg(&state_dir)
                .arg("--data-dir")
                .arg(&n.data_dir)
                .arg("--token")
                .arg(format!("file:{}", token.display()))
                .stdin(Stdio::null())
                .stdout(
                    log.try_clone()
                        .map_err(|e| Failure::failed(format!("agent log: {e}")))?,
                )
                .stderr(log);
            // Its own process group: a Ctrl-C in this terminal does not reach it.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd
                .spawn()
                .map_err(|e| Failure::failed(format!("cannot start the agent of {node}: {e}")))?;
            let pid = child.id();
            children.push(child);
            agents.push(SandboxAgent {
                island: island.id,
                index: n.index,
                node,
                agent,
                pid,
                state_dir,
            });
        }
    }
    let text = serde_json::to_string_pretty(&agents).map_err(Failure::failed)?;
    std::fs::write(list_file(dir), text)
        .map_err(|e| Failure::failed(format!("cannot write the agent list: {e}")))?;
    for (a, child) in agents.iter().zip(&mut children) {
        wait_listening(a, child)?;
    }
    Ok(agents)
}

/// `preferred` when nothing holds it, else a port the system picks: a client connection
/// elsewhere may hold any port of the ephemeral range as its own end (seen in CI: the
/// agent then exits with "Address already in use"). The agents' addresses are recorded.
fn agent_port(preferred: u16) -> Result<u16, Failure> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::failed(format!("no port for an agent: {e}")))
}

/// Waits until `a` listens; an agent that exited or never listened is an error quoting
/// the last line of its log.
fn wait_listening(a: &SandboxAgent, child: &mut std::process::Child) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Exited first: another process listening on its port must not pass for it.
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if !exited && std::net::TcpStream::connect(&a.agent).is_ok() {
            return Ok(());
        }
        if exited || Instant::now() > deadline {
            let log = a.state_dir.join("agent.log");
            let last = std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "nothing logged".into());
            let what = if exited {
                "exited"
            } else {
                "did not listen within 10 s"
            };
            return Err(Failure::failed(format!(
                "the agent on {} {what}: {last} ({})",
                a.agent,
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the recorded agents (SIGTERM: a graceful stop), waiting up to 10 s each.
pub fn stop_all(dir: &Path) {
    for a in recorded(dir) {
        if !is_ours(a.pid, &a.state_dir) {
            continue;
        }
        let pid = nix::unistd::Pid::from_raw(a.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_ours(a.pid, &a.state_dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(list_file(dir));
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))
}
