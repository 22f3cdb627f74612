//! Running the PostgreSQL binaries (`pg_ctl`, `pg_basebackup`, `pg_rewind`) for the node.
//! When the agent runs as root they run as the owner of the data directory (or of its
//! parent, before it exists), through `runuser`: PostgreSQL refuses to run as root.
//! Passwords never go on a command line: they are handed over in `PGPASSWORD`.

use crate::error::AgentError;
use atoll_core::NodeConfig;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Seconds pg_ctl waits for a start, stop or promotion.
const WAIT_SECS: &str = "60";

/// The binaries directory and the server log for servers the agent starts.
#[derive(Debug, Clone)]
pub struct PgTools {
    bin: PathBuf,
    log: PathBuf,
}

impl PgTools {
    /// Tools from `bin` (else found like the sandbox finds them), logging to `log`.
    pub fn new(bin: Option<PathBuf>, log: PathBuf) -> Result<PgTools, AgentError> {
        let bin = match bin {
            Some(b) => b,
            None => atoll_sandbox::find_pg_bin()?,
        };
        Ok(PgTools { bin, log })
    }

    /// The binaries directory.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    fn command(&self, program: &str, owner_of: &Path) -> Result<(Command, String), AgentError> {
        let exe = self.bin.join(program);
        let mut cmd = if nix::unistd::geteuid().is_root() {
            let user = owner_name(owner_of)?;
            let mut c = Command::new("runuser");
            c.arg("-u").arg(user).arg("--").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        for var in [
            "PGDATA",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
        ] {
            cmd.env_remove(var);
        }
        // Tools that print (pg_controldata) are parsed: untranslated.
        cmd.env("LC_ALL", "C");
        cmd.current_dir("/").stdin(std::process::Stdio::null());
        cmd.kill_on_drop(false);
        Ok((cmd, exe.display().to_string()))
    }

    async fn run(
        &self,
        program: &str,
        owner_of: &Path,
        args: &[&str],
        password: Option<&str>,
    ) -> Result<String, AgentError> {
        let (mut cmd, exe) = self.command(program, owner_of)?;
        cmd.args(args);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let shown = format!("{exe} {}", args.join(" "));
        tracing::debug!(command = %shown, "running");
        let out = cmd
            .output()
            .await
            .map_err(|e| AgentError::io(format!("cannot run {shown}:"), &self.bin, e))?;
        let text = format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(AgentError::Command {
                command: shown,
                status: out.status.to_string(),
                output: one_line(&text, 600),
            })
        }
    }

    /// Makes sure the log file exists and the server user may write it.
    fn prepare_log(&self, data_dir: &Path) -> Result<(), AgentError> {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| AgentError::io("cannot create", dir, e))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| AgentError::io("cannot open", &self.log, e))?;
        if nix::unistd::geteuid().is_root() {
            let meta = owner_meta(data_dir)?;
            std::os::unix::fs::chown(&self.log, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| AgentError::io("cannot chown", &self.log, e))?;
        }
        Ok(())
    }

    /// `pg_ctl start -w`.
    pub async fn start(&self, data_dir: &Path) -> Result<(), AgentError> {
        self.prepare_log(data_dir)?;
        let (d, l) = (path_str(data_dir)?, path_str(&self.log)?);
        self.run(
            "pg_ctl",
            data_dir,
            &["-D", d, "-l", l, "-w", "-t", WAIT_SECS, "start"],
            None,
        )
        .await
        .map(drop)
        .map_err(|e| match e {
            // pg_ctl only says "examine the log output": the log's last lines say why.
            AgentError::Command {
                command,
                status,
                output,
            } => AgentError::Command {
                command,
                status,
                output: format!(
                    "{output}; log {}: {}",
                    self.log.display(),
                    log_tail(&self.log)
                ),
            },
            other => other,
        })
    }

    /// `pg_ctl stop -w -m MODE`; a server that is not running is fine.
    pub async fn stop(&self, data_dir: &Path, mode: &str) -> Result<(), AgentError> {
        if !self.is_running(data_dir).await {
            return Ok(());
        }
        let d = path_str(data_dir)?;
        self.run(
            "pg_ctl",
            data_dir,
            &["-D", d, "-w", "-t", WAIT_SECS, "-m", mode, "stop"],
            None,
        )
        .await
        .map(drop)
    }

    /// `pg_ctl status`: whether a server runs on `data_dir`.
    pub async fn is_running(&self, data_dir: &Path) -> bool {
        let Ok(d) = path_str(data_dir) else {
            return false;
        };
        self.run("pg_ctl", data_dir, &["-D", d, "status"], None)
            .await
            .is_ok()
    }

    /// `pg_basebackup` of `master` into `data_dir` (created), streaming WAL, writing the
    /// replica settings (`-R`) and using replication slot `slot`.
    pub async fn base_backup(
        &self,
        master: &NodeConfig,
        data_dir: &Path,
        slot: &str,
    ) -> Result<(), AgentError> {
        let parent = data_dir.parent().unwrap_or(Path::new("/"));
        let password = resolve(master)?;
        let port = master.port.to_string();
        let d = path_str(data_dir)?;
        let args = [
            "-h",
            &master.host,
            "-p",
            &port,
            "-U",
            &master.user,
            "-D",
            d,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-S",
            slot,
            "-w",
        ];
        self.run("pg_basebackup", parent, &args, password.as_deref())
            .await
            .map(drop)
    }

    /// `pg_rewind` of `data_dir` from the running server `source`; returns what it said.
    pub async fn rewind(&self, data_dir: &Path, source: &NodeConfig) -> Result<String, AgentError> {
        let password = resolve(source)?;
        let d = path_str(data_dir)?;
        // The connection string holds no password (PGPASSWORD carries it).
        let conninfo = format!(
            "host={} port={} user={} dbname={}",
            source.host, source.port, source.user, source.database
        );
        let src = format!("--source-server={conninfo}");
        self.run("pg_rewind", data_dir, &["-D", d, &src], password.as_deref())
            .await
    }

    /// The latest checkpoint's location (`pg_controldata`): after a clean shutdown, the
    /// shutdown checkpoint, the last record the server wrote.
    pub async fn checkpoint_lsn(&self, data_dir: &Path) -> Result<atoll_core::Lsn, AgentError> {
        let d = path_str(data_dir)?;
        let out = self
            .run("pg_controldata", data_dir, &["-D", d], None)
            .await?;
        out.lines()
            .find_map(|l| l.strip_prefix("Latest checkpoint location:"))
            .and_then(|v| atoll_core::Lsn::parse(v.trim()))
            .ok_or_else(|| {
                AgentError::Unexpected(format!(
                    "pg_controldata -D {d}: no latest checkpoint location"
                ))
            })
    }

    /// `initdb` into `data_dir`.
    pub async fn initdb(&self, data_dir: &Path, user: &str) -> Result<(), AgentError> {
        let d = path_str(data_dir)?;
        let parent = data_dir.parent().unwrap_or(Path::new("/"));
        self.run(
            "initdb",
            parent,
            &["-D", d, "-U", user, "-E", "UTF8", "--locale=C"],
            None,
        )
        .await
        .map(drop)
    }
}

/// Replaces `path` with `text` through a new file renamed into place (a kill never leaves
/// the server a truncated file), with the mode and owner of what it replaces: when the agent runs as root,
/// the server's user must still be able to rewrite it (ALTER SYSTEM, pg_rewind).
pub fn replace_file(path: &Path, text: &str) -> Result<(), AgentError> {
    let tmp = path.with_extension("atoll-tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(|e| AgentError::io("cannot write", &tmp, e))?;
    if let Ok(old) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, old.permissions())
            .map_err(|e| AgentError::io("cannot set the mode of", &tmp, e))?;
    }
    if nix::unistd::geteuid().is_root() {
        let meta = owner_meta(path)?;
        std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| AgentError::io("cannot chown", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("cannot replace", path, e))
}

fn resolve(node: &NodeConfig) -> Result<Option<String>, AgentError> {
    node.password
        .as_ref()
        .map(|r| r.resolve().map(|s| s.expose().to_string()))
        .transpose()
        .map_err(AgentError::Token)
}

fn path_str(p: &Path) -> Result<&str, AgentError> {
    p.to_str().ok_or_else(|| AgentError::Config {
        field: "data_dir".into(),
        msg: format!("{} is not valid UTF-8", p.display()),
    })
}

/// Metadata of `path`, or of its nearest existing ancestor.
fn owner_meta(path: &Path) -> Result<std::fs::Metadata, AgentError> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if let Ok(m) = std::fs::metadata(cur) {
            return Ok(m);
        }
        p = cur.parent();
    }
    Err(AgentError::io(
        "cannot stat",
        path,
        std::io::Error::from(std::io::ErrorKind::NotFound),
    ))
}

/// The user owning `path` (or its nearest existing ancestor); root is refused.
fn owner_name(path: &Path) -> Result<String, AgentError> {
    let meta = owner_meta(path)?;
    let uid = nix::unistd::Uid::from_raw(meta.uid());
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .filter(|u| !u.uid.is_root())
        .or_else(|| nix::unistd::User::from_name("postgres").ok().flatten());
    user.map(|u| u.name).ok_or_else(|| AgentError::Config {
        field: "data_dir".into(),
        msg: format!(
            "{} is owned by root and there is no postgres user to run the server as",
            path.display()
        ),
    })
}

/// The last few lines of a server log, on one line.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    one_line(&tail, 800)
}

fn one_line(text: &str, max: usize) -> String {
    // The end of a tool's output says why it failed: keep the tail.
    let s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = s.chars().count();
    if n <= max {
        s
    } else {
        format!("…{}", s.chars().skip(n - max).collect::<String>())
    }
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
