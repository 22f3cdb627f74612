//! Process and polling helpers of the migrate tests: psql sessions held open, runs of
//! `atoll` in the background, waiting for a server-side state.

use crate::common::Env;
use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

/// Shard schemas on both islands.
pub fn shards(env: &Env) -> i64 {
    env.sum("select count(*) from pg_namespace where nspname ~ '^sh[0-9]{4}$'")
}

/// Polls `sql` on `port` until it returns `want`, failing after 20 s.
pub fn wait_for(env: &Env, port: u16, sql: &str, want: &str) {
    atoll_testkit::poll_until(&format!("{sql} = {want}"), Duration::from_secs(20), || {
        env.psql(port, sql) == want
    });
}

/// Polls `sql` on every island until its values add up to `want`, failing after 20 s.
pub fn wait_for_sum(env: &Env, sql: &str, want: i64) {
    atoll_testkit::poll_until(&format!("{sql} = {want}"), Duration::from_secs(20), || {
        env.sum(sql) == want
    });
}

/// A child process killed and reaped when dropped, so that a failing assert leaves no
/// psql session holding locks (or run of `atoll`) behind.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child taken")
    }

    /// Sends `sql` to the session's stdin.
    pub fn send(&mut self, sql: &str) {
        let stdin = self.child().stdin.as_mut().expect("stdin");
        stdin.write_all(sql.as_bytes()).expect("write");
        stdin.flush().expect("flush");
    }

    /// Closes stdin and waits for the process to end.
    pub fn finish(mut self) -> Output {
        let mut child = self.0.take().expect("child taken");
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A psql session reading SQL from its stdin, named `app` in pg_stat_activity.
pub fn session(env: &Env, port: u16, app: &str) -> Guard {
    let child = std::process::Command::new(env.tc.sandbox().pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-q"])
        .env("PGAPPNAME", app)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn psql");
    Guard(Some(child))
}

/// `atoll migrate --json <args>` running in the background.
pub fn migrate_in_background(env: &Env, args: &[&str]) -> Guard {
    let child = env
        .command()
        .args(["--json", "migrate"])
        .args(args)
        .arg("--dir")
        .arg(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atoll");
    Guard(Some(child))
}

pub fn pid_of(app: &str) -> String {
    format!("select coalesce(max(pid), 0) from pg_stat_activity where application_name = '{app}'")
}

pub fn idle_in_transaction(app: &str) -> String {
    format!(
        "select count(*) from pg_stat_activity where application_name = '{app}' \
         and state = 'idle in transaction'"
    )
}
