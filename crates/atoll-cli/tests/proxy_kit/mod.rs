//! Helpers shared by the `atoll proxy` integration tests: starting the built binary's
//! proxy on a free port with one password user, and running pgbench through it.

#![allow(dead_code)]

use anyhow::Result;
use atoll_testkit::cli::{Cli, Server};
use atoll_testkit::TestCluster;
use std::path::Path;
use std::process::{Command, Output};

/// The password of the proxy's user `app`.
pub const PASSWORD: &str = "proxy-pass-4242";

/// A running proxy (stopped by its `server`).
pub struct Proxied {
    pub server: Server,
    pub port: u16,
    /// Where `/metrics` is served.
    pub metrics: String,
}

/// Starts `atoll proxy` for `tc` with the user `app`, and the `extra` flags.
pub fn start(tc: &TestCluster, extra: &[&str]) -> Result<Proxied> {
    let pw = tc.sandbox().dir().join("app.pw");
    std::fs::write(&pw, PASSWORD)?;
    let atoll = Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    let user = format!("app=file:{}", pw.display());
    let mut args = vec![
        "--json",
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--user",
        &user,
    ];
    args.extend_from_slice(extra);
    let (server, v) = atoll.spawn_server(&args)?;
    let listen = v["listen"].as_str().unwrap_or_default();
    let port: u16 = listen.rsplit(':').next().unwrap_or_default().parse()?;
    let metrics = v["metrics"].as_str().unwrap_or_default().to_string();
    Ok(Proxied {
        server,
        port,
        metrics,
    })
}

impl Proxied {
    /// psql through the proxy: one `-c` per command, unaligned, tuples only.
    pub fn psql(&self, password: &str, user: &str, commands: &[&str]) -> Output {
        self.psql_db(password, user, "postgres", commands)
    }

    /// psql through the proxy to database `db`.
    pub fn psql_db(&self, password: &str, user: &str, db: &str, commands: &[&str]) -> Output {
        let mut c = Command::new("psql");
        c.env("PGPASSWORD", password)
            .args(["-X", "-A", "-t", "-q", "-v", "VERBOSITY=verbose"])
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname={db}",
                self.port
            ));
        for cmd in commands {
            c.args(["-c", cmd]);
        }
        c.output().expect("psql")
    }

    /// psql as `app`, asserted to succeed: its output.
    pub fn ok(&self, commands: &[&str]) -> String {
        let out = self.psql(PASSWORD, "app", commands);
        assert!(
            out.status.success(),
            "{commands:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// psql as `app`, going on past errors: its output (trimmed) and its errors.
    pub fn with_errors(&self, commands: &[&str]) -> (String, String) {
        let out = self.psql(PASSWORD, "app", commands);
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// psql through the proxy as `app` running `copy` (a `COPY ... FROM STDIN`) with
    /// `data` on its standard input.
    pub fn copy_in(&self, copy: &str, data: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("psql")
            .env("PGPASSWORD", PASSWORD)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", copy])
            .arg(format!(
                "host=127.0.0.1 port={} user=app dbname=postgres",
                self.port
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(data.as_bytes()).expect("psql's stdin");
        }
        child.wait_with_output().expect("psql")
    }

    /// pgbench through the proxy as `app` with these flags and scripts.
    pub fn pgbench(&self, flags: &[&str], scripts: &[&Path]) -> Output {
        let mut c = Command::new("pgbench");
        c.env("PGPASSWORD", PASSWORD)
            .args([
                "-n",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "app",
            ])
            .args(flags);
        for s in scripts {
            c.arg("-f").arg(s);
        }
        c.arg("postgres").output().expect("pgbench")
    }
}

impl Proxied {
    /// `GET /metrics`' body.
    pub fn metrics(&self) -> String {
        let (status, body) =
            atoll_testkit::http::get(&self.metrics, "/metrics").expect("GET /metrics");
        assert!(status.contains(" 200 "), "GET /metrics: {status}");
        body
    }

    /// The value of one sample line of `/metrics` (`name{labels}` as written).
    pub fn sample(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// The count pgbench reports as processed.
pub fn processed(pgbench_stdout: &str) -> Option<u64> {
    let line = pgbench_stdout
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed:"))?;
    let value = line.split(':').nth(1)?.trim();
    value.split('/').next()?.trim().parse().ok()
}
