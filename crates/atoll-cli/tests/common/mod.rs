//! Sandbox helpers shared by the `atoll migrate` integration tests: running the built
//! binary, psql on an island master, counting applied versions, writing migration files.

#![allow(dead_code)]

use atoll_sandbox::TestSandbox;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Env {
    pub sb: TestSandbox,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
}

impl Env {
    /// A sandbox of `islands` islands (no replicas), initialised, with an empty
    /// migration directory.
    pub fn new(islands: u16) -> Env {
        let sb = TestSandbox::new(islands, 0).expect("sandbox");
        let ports = sb.islands().iter().map(|i| i.nodes[0].port).collect();
        let dir = sb.dir().join("migrations");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let env = Env { sb, dir, ports };
        ok(&env.atoll(&["init"]));
        env
    }

    pub fn atoll(&self, args: &[&str]) -> Output {
        let config = self.sb.config_path();
        Command::new(env!("CARGO_BIN_EXE_atoll"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run atoll")
    }

    /// Runs atoll with the migration dir and returns (exit code, stdout, stderr).
    pub fn migrate(&self, args: &[&str]) -> (i32, String, String) {
        let mut a: Vec<&str> = vec!["migrate"];
        a.extend_from_slice(args);
        let dir = self.dir.to_string_lossy().to_string();
        if args[0] != "new" {
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
        let started = std::time::Instant::now();
        for &port in &self.ports {
            while self.psql(port, &sql) != "0" {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "advisory lock {key} still held on port {port} after 30 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    pub fn psql(&self, port: u16, sql: &str) -> String {
        let out = Command::new(self.sb.pg_bin().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .current_dir("/")
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {port}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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

pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
