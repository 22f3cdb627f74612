//! Running the built `atoll` binary against a sandbox's config. The binary's path comes
//! from the test (`env!("CARGO_BIN_EXE_atoll")`, known only inside atoll-cli's tests).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// The `atoll` binary with `--config` set to one sandbox's file.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
    config: PathBuf,
}

impl Cli {
    pub fn new(bin: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Cli {
        Cli {
            bin: bin.into(),
            config: config.into(),
        }
    }

    /// `atoll --config <file>`, without the environment's config variables (so only the
    /// sandbox's file counts), ready for more arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .env_remove("ATOLL_CONFIG")
            .env_remove("ATOLL_ISLANDS");
        c
    }

    /// Runs `atoll <args>` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// Runs `atoll <args>` with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()))
    }
}

impl Cli {
    /// Starts a server command (`atoll <args>`, which must include `--json`) and reads the
    /// first line it prints, its address, as JSON.
    pub fn spawn_server(&self, args: &[&str]) -> anyhow::Result<(Server, Value)> {
        let child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Server(child);
        let out = server
            .0
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        Ok((server, serde_json::from_str(&line)?))
    }
}

/// A server process started by [`Cli::spawn_server`]; killed (by its pid) if the test ends
/// before it did.
pub struct Server(Child);

impl Server {
    /// Sends SIGTERM and waits: the exit code.
    pub fn terminate(mut self) -> anyhow::Result<Option<i32>> {
        let killed = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()?;
        anyhow::ensure!(killed.success(), "kill -TERM failed");
        Ok(self.0.wait()?.code())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Asserts the run succeeded, printing its output when not.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts the run succeeded and parses its stdout as JSON.
pub fn json(out: &Output) -> Value {
    ok(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A run's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
