//! An `atoll agent` run as its own process (the built binary), so a test can kill it with
//! -9 or freeze it; killed and waited for when the handle drops, whatever the test did.

use anyhow::{bail, Context as _};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The token every test agent accepts (written to its token file).
pub const TOKEN: &str = "agent-test-token";

/// One agent process.
pub struct AgentProcess {
    child: Child,
    /// `http://host:port` of its API.
    pub url: String,
    /// The node it runs beside.
    pub node: String,
    /// The file holding its token (`--token file:…`).
    pub token_file: PathBuf,
    /// How it was started, to start it again after a kill.
    args: Vec<String>,
    bin: PathBuf,
    hold: bool,
}

impl AgentProcess {
    /// Starts `bin agent` for `node` (`host:port`) of the cluster in `config`, with its
    /// state in `state_dir`, the node's `data_dir`, and a token file next to the state.
    pub fn start(
        bin: &Path,
        config: &Path,
        node: &str,
        state_dir: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<AgentProcess> {
        Self::start_with(bin, config, node, state_dir, data_dir, false)
    }

    /// [`AgentProcess::start`], with the sandbox-only test hook that holds each action
    /// once its work is done (`ATOLL_AGENT_TEST_HOLD`) when `hold`.
    pub fn start_with(
        bin: &Path,
        config: &Path,
        node: &str,
        state_dir: &Path,
        data_dir: &Path,
        hold: bool,
    ) -> anyhow::Result<AgentProcess> {
        let token = state_dir.with_extension("token");
        std::fs::write(&token, TOKEN).with_context(|| format!("token file {}", token.display()))?;
        let args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "agent".into(),
            "--node".into(),
            node.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--token".into(),
            format!("file:{}", token.display()),
        ];
        Self::spawn(bin.to_path_buf(), node.to_string(), token, args, hold)
    }

    fn spawn(
        bin: PathBuf,
        node: String,
        token_file: PathBuf,
        args: Vec<String>,
        hold: bool,
    ) -> anyhow::Result<AgentProcess> {
        let child = Command::new(&bin)
            .env("ATOLL_AGENT_TEST_HOLD", if hold { "true" } else { "false" })
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {} agent", bin.display()))?;
        // Owned by the handle at once: killed and waited for whatever happens next.
        let mut proc = AgentProcess {
            child,
            url: String::new(),
            node,
            token_file,
            args,
            bin,
            hold,
        };
        let stdout = proc.child.stdout.take().context("agent stdout")?;
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).context("agent stdout")? == 0 {
                bail!("the agent of {} exited before listening", proc.node);
            }
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                proc.url = format!("http://{addr}");
                // Keep reading its stdout so it never blocks on a full pipe.
                std::thread::spawn(move || for _ in out.lines() {});
                return Ok(proc);
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9, and wait for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop), and its exit status.
    pub fn term(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().context("wait for the agent")
    }

    /// A new process with the same arguments (after [`AgentProcess::kill9`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let fresh = Self::spawn(
            self.bin.clone(),
            self.node.clone(),
            self.token_file.clone(),
            self.args.clone(),
            self.hold,
        )?;
        *self = fresh;
        Ok(())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
