//! Helpers shared by the `atoll migrate` integration tests: a cluster (atoll-testkit)
//! with a migration directory, running the built binary, psql on an island master,
//! counting applied versions, writing migration files.

#![allow(dead_code)]

use atoll_testkit::cli::Cli;
use atoll_testkit::TestCluster;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

pub use atoll_testkit::cli::ok;

pub struct Env {
    pub tc: TestCluster,
    pub cli: Cli,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
}

impl Env {
    /// A cluster of `islands` islands (no replicas), initialised, with an empty
    /// migration directory.
    pub fn new(islands: u16) -> Env {
        let tc = TestCluster::setup(islands, 0)
            .start_blocking()
            .expect("test cluster");
        let ports = tc.master_ports();
        let dir = tc.sandbox().dir().join("migrations");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let cli = tc.cli(env!("CARGO_BIN_EXE_atoll"));
        Env {
            tc,
            cli,
            dir,
            ports,
        }
    }

    pub fn atoll(&self, args: &[&str]) -> Output {
        self.cli.run(args)
    }

    /// `atoll --config <the sandbox's file>`, to spawn with more arguments.
    pub fn command(&self) -> Command {
        self.cli.command()
    }

    /// Runs atoll with the migration dir and returns (exit code, stdout, stderr).
    pub fn migrate(&self, args: &[&str]) -> (i32, String, String) {
        let mut a: Vec<&str> = vec!["migrate"];
        a.extend_from_slice(args);
        let dir = self.dir.to_string_lossy().to_string();
        // Commands that read no migration directory take no --dir.
        let command = args.iter().find(|a| !a.starts_with('-'));
        if !matches!(command, Some(&("new" | "status" | "runs" | "stop"))) {
            a.extend_from_slice(&["--dir", &dir]);
        }
        let out = self.atoll(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    pub fn migrate_json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let (code, out, err) = self.migrate(&a);
        let v =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out} / {err}"));
        (code, v)
    }

    /// Waits (up to 30 s) until no session holds the advisory lock `key` on any master: a
    /// killed process's session ends on the server a moment after the process does, and
    /// until then the lock still refuses the next run.
    pub fn wait_until_unlocked(&self, key: i64) {
        let sql = format!(
            "select count(*) from pg_locks where locktype = 'advisory' and granted \
             and ((classid::bigint << 32) | objid::bigint) = {key}"
        );
        for &port in &self.ports {
            atoll_testkit::poll_until(
                &format!("advisory lock {key} is free on port {port}"),
                std::time::Duration::from_secs(30),
                || self.psql(port, &sql) == "0",
            );
        }
    }

    /// `sql` on the node at `port`, its trimmed unaligned output (panics on an error).
    pub fn psql(&self, port: u16, sql: &str) -> String {
        self.tc.psql(port, sql)
    }

    /// Sum of an integer query over both island masters.
    pub fn sum(&self, sql: &str) -> i64 {
        self.ports
            .iter()
            .map(|p| self.psql(*p, sql).parse::<i64>().unwrap_or(0))
            .sum()
    }

    /// Shard schemas that have `version` applied.
    pub fn applied(&self, version: &str) -> i64 {
        self.sum(&format!(
            "select count(*) from atoll.migration_state('{{}}') where version = '{version}'"
        ))
    }

    /// The master port holding `schema`.
    pub fn port_of(&self, schema: &str) -> u16 {
        *self
            .ports
            .iter()
            .find(|p| {
                self.psql(
                    **p,
                    &format!("select count(*) from pg_namespace where nspname = '{schema}'"),
                ) == "1"
            })
            .expect("schema exists")
    }

    pub fn write(&self, version: &str, up: &str, dn: &str) {
        std::fs::write(self.dir.join(format!("{version}.up.sql")), up).expect("write up");
        std::fs::write(self.dir.join(format!("{version}.dn.sql")), dn).expect("write dn");
    }

    pub fn rename(&self, version: &str, from: &str, to: &str) {
        for d in ["up", "dn"] {
            std::fs::rename(
                self.dir.join(format!("{version}.{d}.{from}")),
                self.dir.join(format!("{version}.{d}.{to}")),
            )
            .expect("rename");
        }
    }
}
