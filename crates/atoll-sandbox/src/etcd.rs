//! The sandbox's etcd for automated failover (`atoll sandbox up --ha`): one member on
//! loopback, its data in `DIR/etcd`, its log in `DIR/etcd.log`, started and stopped by pid
//! with the sandbox, and `[ha]` written into the sandbox's `atoll.toml`.

use crate::state::{HaState, HOST};
use crate::{ports, SandboxError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the etcd binary (default: `etcd` on `PATH`).
pub const ETCD_BIN_ENV: &str = "ATOLL_ETCD_BIN";

/// Failover settings a sandbox writes into `[ha]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxHa {
    /// `ha.ttl_s`.
    pub ttl_s: u64,
    /// `ha.loop_ms` (`None`: the default).
    pub loop_ms: Option<u64>,
    /// `ha.synchronous`.
    pub synchronous: bool,
}

impl Default for SandboxHa {
    fn default() -> Self {
        SandboxHa {
            ttl_s: 10,
            loop_ms: None,
            synchronous: false,
        }
    }
}

fn etcd_bin() -> Result<PathBuf, SandboxError> {
    if let Some(p) = std::env::var_os(ETCD_BIN_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| SandboxError::Command {
            command: "etcd".into(),
            status: "not found".into(),
            output: format!("install etcd-server (scripts/install-deps) or set {ETCD_BIN_ENV}"),
        })
}

/// Two free ports for a new etcd: client and peer.
pub(crate) fn pick_ports() -> Result<(u16, u16), SandboxError> {
    let mut found = Vec::new();
    for p in (23790..24790).step_by(2) {
        if ports::port_is_free(p) && ports::port_is_free(p + 1) {
            found.push(p);
            break;
        }
    }
    found
        .first()
        .map(|p| (*p, *p + 1))
        .ok_or_else(|| SandboxError::Command {
            command: "etcd".into(),
            status: "no port".into(),
            output: "no two free ports in 23790..24790".into(),
        })
}

/// True when `pid` is an etcd with `data_dir` on its command line.
pub(crate) fn is_ours(pid: i32, data_dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let text = String::from_utf8_lossy(&c).replace('\0', " ");
        text.contains("etcd") && text.contains(&data_dir.display().to_string())
    })
}

/// Starts etcd for `ha` unless it runs; returns its pid.
pub(crate) fn start(dir: &Path, ha: &HaState) -> Result<i32, SandboxError> {
    let data_dir = dir.join("etcd");
    if let Some(pid) = ha.pid.filter(|p| is_ours(*p, &data_dir)) {
        return Ok(pid);
    }
    let log_path = dir.join("etcd.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| SandboxError::io("cannot create", &log_path, e))?;
    let err_log = log
        .try_clone()
        .map_err(|e| SandboxError::io("cannot open", &log_path, e))?;
    let client = format!("http://{HOST}:{}", ha.client_port);
    let peer = format!("http://{HOST}:{}", ha.peer_port);
    let mut cmd = Command::new(etcd_bin()?);
    cmd.arg("--name")
        .arg("sandbox")
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg("--initial-cluster")
        .arg(format!("sandbox={peer}"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    // Its own process group: a Ctrl-C in the terminal does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::io("cannot start etcd from", dir, e))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr = format!("{HOST}:{}", ha.client_port);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline || child.try_wait().is_ok_and(|s| s.is_some()) {
            stop(dir, pid);
            return Err(SandboxError::Command {
                command: "etcd".into(),
                status: "did not start".into(),
                output: format!("see {}", log_path.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(pid)
}

/// Stops the etcd `pid` of the sandbox in `dir` (SIGTERM, then SIGKILL after 10 s).
pub(crate) fn stop(dir: &Path, pid: i32) {
    use nix::sys::signal::{kill, Signal};
    let data_dir = dir.join("etcd");
    if !is_ours(pid, &data_dir) {
        return;
    }
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_ours(pid, &data_dir) {
        if Instant::now() > deadline {
            let _ = kill(p, Signal::SIGKILL);
        }
        // A zombie (a child of this process not yet reaped) has no command line: gone.
        std::thread::sleep(Duration::from_millis(20));
    }
}
