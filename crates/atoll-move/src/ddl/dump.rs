//! Running `pg_dump` and `pg_restore` against the source: the schema dumped once
//! (`--schema-only`, custom format, into a private temporary directory), its table of
//! contents split around the initial copy (`toc.rs`), and the two restore scripts written
//! out as SQL for the move to run on the destination in its own transactions.
//!
//! The binaries are looked up as the sandbox does: `$ATOLL_PG_BIN`, then `PATH`, then the
//! highest `/usr/lib/postgresql/*/bin`, then `/usr/local/pgsql/bin`; `pg_dump` must be at
//! least the server's major version (an older one cannot read a newer catalog). The
//! connection goes through libpq's environment (`PGHOST`, ..., `PGSSLMODE`,
//! `PGSSLROOTCERT`), the password as `PGPASSWORD`: never on a command line.

use super::toc;
use crate::error::MoveError;
use atoll_core::{NodeConfig, ShardNo};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The environment variable naming the directory of the PostgreSQL binaries (the
/// sandbox's `ATOLL_PG_BIN`).
const PG_BIN_ENV: &str = "ATOLL_PG_BIN";

/// The two restore scripts, transactional (see [`toc::transactional`]).
pub(crate) struct Scripts {
    pub pre_copy: String,
    pub post_copy: String,
}

/// Dumps schema `shard` from `node` (a server of major version `server_major`) and
/// returns the destination's scripts; `identity` are the entries restored before the copy.
pub(crate) async fn scripts(
    shard: ShardNo,
    node: &NodeConfig,
    server_major: u32,
    identity: &HashSet<(u32, u32)>,
) -> Result<Scripts, MoveError> {
    let tools = Tools::find(shard, server_major).await?;
    let dir = TempDir::new().map_err(|e| dump_err(node, format!("temporary directory: {e}")))?;
    let archive = dir.0.join("schema.dump");
    let schema = shard.schema();
    let mut dump = tools.command(&tools.pg_dump, node)?;
    dump.args(["--schema-only", "--format=custom", "--no-publications"])
        .args(["--no-subscriptions", "--no-tablespaces", "--strict-names"])
        .arg(format!("--schema=\"{schema}\""))
        .arg("--file")
        .arg(&archive);
    run(node, "pg_dump", dump).await?;
    let list = |section: &'static str| {
        let mut c = Command::new(&tools.pg_restore);
        c.arg("--list")
            .arg(format!("--section={section}"))
            .arg(&archive);
        c
    };
    let pre = toc::parse_list(&run(node, "pg_restore --list", list("pre-data")).await?);
    let post = toc::parse_list(&run(node, "pg_restore --list", list("post-data")).await?);
    let (before, after) = toc::split(&pre, &post, identity);
    let mut out = Vec::with_capacity(2);
    for (name, text) in [("pre.list", before), ("post.list", after)] {
        let path = dir.0.join(name);
        std::fs::write(&path, text).map_err(|e| dump_err(node, format!("{name}: {e}")))?;
        let mut c = Command::new(&tools.pg_restore);
        c.arg("--use-list")
            .arg(&path)
            .args(["--no-tablespaces", "--no-privileges", "--file=-"])
            .arg(&archive);
        out.push(toc::transactional(&run(node, "pg_restore", c).await?));
    }
    let post_copy = out.pop().unwrap_or_default();
    let pre_copy = out.pop().unwrap_or_default();
    Ok(Scripts {
        pre_copy,
        post_copy,
    })
}

fn dump_err(node: &NodeConfig, detail: String) -> MoveError {
    MoveError::SchemaDump {
        node: node.to_string(),
        detail,
    }
}

/// Runs `cmd`, returning its standard output; a failure carries its standard error.
async fn run(node: &NodeConfig, what: &str, mut cmd: Command) -> Result<String, MoveError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| dump_err(node, format!("{what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(dump_err(
            node,
            format!("{what} failed ({}): {}", out.status, err.trim()),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| dump_err(node, format!("{what}: output: {e}")))
}

/// `pg_dump` and `pg_restore` of one directory, checked against the server's version.
struct Tools {
    pg_dump: PathBuf,
    pg_restore: PathBuf,
}

impl Tools {
    async fn find(shard: ShardNo, server_major: u32) -> Result<Tools, MoveError> {
        let mut too_old = Vec::new();
        for dir in candidate_dirs() {
            let pg_dump = dir.join("pg_dump");
            if !pg_dump.is_file() {
                continue;
            }
            let out = Command::new(&pg_dump).arg("--version").output().await;
            let version = out
                .ok()
                .and_then(|o| toc::tool_major(&String::from_utf8_lossy(&o.stdout)));
            match version {
                Some(v) if v >= server_major => {
                    return Ok(Tools {
                        pg_restore: dir.join("pg_restore"),
                        pg_dump,
                    })
                }
                v => too_old.push((pg_dump, v)),
            }
        }
        Err(MoveError::Unsafe {
            shard,
            check: "pg_dump",
            detail: no_pg_dump(server_major, &too_old),
        })
    }

    /// A command connecting to `node` through libpq's environment.
    fn command(&self, bin: &Path, node: &NodeConfig) -> Result<Command, MoveError> {
        let mut c = Command::new(bin);
        c.env("PGHOST", &node.host)
            .env("PGPORT", node.port.to_string())
            .env("PGUSER", &node.user)
            .env("PGDATABASE", &node.database)
            .env("PGAPPNAME", "atoll_move_dump")
            .env("PGSSLMODE", node.tls.mode.as_str())
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS");
        match &node.tls.root_cert {
            Some(ca) => c.env("PGSSLROOTCERT", ca),
            None => c.env_remove("PGSSLROOTCERT"),
        };
        if let Some(secret) = &node.password {
            let password = secret
                .resolve()
                .map_err(|e| dump_err(node, format!("password: {e}")))?;
            c.env("PGPASSWORD", password.expose());
        }
        Ok(c)
    }
}

/// Why no `pg_dump` will do: none found, or each one found with its version.
fn no_pg_dump(server_major: u32, found: &[(PathBuf, Option<u32>)]) -> String {
    let found = if found.is_empty() {
        "none was found".to_string()
    } else {
        let list: Vec<String> = found
            .iter()
            .map(|(p, v)| {
                let v = v.map_or("of an unknown version".to_string(), |v| {
                    format!("version {v}")
                });
                format!("{} is {v}", p.display())
            })
            .collect();
        list.join(", ")
    };
    format!(
        "the schema is copied with pg_dump, which must be of major version {server_major} (the source server's) or newer: {found} (looked in ${PG_BIN_ENV}, PATH, /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin); install it or point ${PG_BIN_ENV} at its directory"
    )
}

/// Where the binaries may be, in the order they are tried.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os(PG_BIN_ENV)
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    out.extend(versions.into_iter().rev().map(|v| v.1));
    out.push(PathBuf::from("/usr/local/pgsql/bin"));
    out
}

/// A directory only this user can read, removed when dropped (the dump names the
/// schema's objects).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "atoll-move-dump-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_old_pg_dump_is_named_with_its_version() {
        let none = no_pg_dump(16, &[]);
        assert!(
            none.contains("major version 16") && none.contains("none was found"),
            "{none}"
        );
        assert!(
            none.contains("$ATOLL_PG_BIN") && !none.contains('\n'),
            "{none}"
        );
        let old = no_pg_dump(
            17,
            &[
                (PathBuf::from("/usr/bin/pg_dump"), Some(15)),
                (PathBuf::from("/opt/pg_dump"), None),
            ],
        );
        assert!(
            old.contains("/usr/bin/pg_dump is version 15, /opt/pg_dump is of an unknown version"),
            "{old}"
        );
    }
}
