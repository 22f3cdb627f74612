//! Moves under write load on tables that reference each other (issue 8, item 11): a
//! TPC-B-like schema (branches, tellers, accounts, history, with foreign keys between them)
//! and real `pgbench` running the TPC-B transaction on the source while the shard moves.
//! The post-copy step adds the foreign keys and indexes on the destination while the
//! apply worker applies the load; the two must not deadlock, and the move must succeed on
//! the first try. A worker that keeps failing (a conflicting row on the destination) still
//! stops the move, within a bounded time and with a message saying so.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::{IslandId, ShardNo};
use atoll_move::{MoveError, MoveEvent, MoveOptions, Progress};
use atoll_testkit::TestCluster;
use common::{discover, master, replication_leftovers, shard};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BRANCHES: i64 = 4;
const TELLERS: i64 = 100_000;
const ACCOUNTS: i64 = 20_000;

/// The TPC-B tables in shard `sc`, filled, with every foreign key pgbench's
/// `--foreign-keys` creates plus secondary indexes (more post-copy DDL to meet the load).
fn tpcb_tables(sc: &str) -> String {
    format!(
        "create table {sc}.branches (bid int primary key, bbalance bigint not null,
                                     filler char(88));
         create table {sc}.tellers (tid int primary key,
                                    bid int not null references {sc}.branches,
                                    tbalance bigint not null, filler char(84),
                                    unique (bid, tid), check (tbalance > -1000000000));
         create table {sc}.accounts (aid int primary key,
                                     bid int not null references {sc}.branches,
                                     abalance bigint not null, filler char(84),
                                     check (abalance > -1000000000));
         create table {sc}.history (hid bigserial primary key,
                                    tid int not null references {sc}.tellers,
                                    bid int not null references {sc}.branches,
                                    aid int not null references {sc}.accounts,
                                    delta bigint not null, mtime timestamptz not null,
                                    filler char(22));
         create index on {sc}.tellers (bid);
         create index on {sc}.accounts (bid);
         create index on {sc}.history (aid);
         create index on {sc}.history (tid, bid);
         insert into {sc}.branches select g, 0 from generate_series(1, {BRANCHES}) g;
         insert into {sc}.tellers select g, 1 + (g - 1) % {BRANCHES}, 0
           from generate_series(1, {TELLERS}) g;
         insert into {sc}.accounts select g, 1 + (g - 1) % {BRANCHES}, 0, ''
           from generate_series(1, {ACCOUNTS}) g;"
    )
}

/// pgbench's built-in TPC-B transaction, on the shard's tables.
fn tpcb_script(sc: &str) -> String {
    format!(
        "\\set aid random(1, {ACCOUNTS})
\\set bid random(1, {BRANCHES})
\\set tid random(1, {TELLERS})
\\set delta random(-5000, 5000)
BEGIN;
UPDATE {sc}.accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE {sc}.tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE {sc}.branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO {sc}.history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
"
    )
}

/// A running pgbench, killed (by its pid) when dropped: also when the test fails.
struct Pgbench {
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Pgbench {
    /// `clients` pgbench clients running the TPC-B script on `sc` against `port`.
    fn start(port: u16, sc: &str, clients: u32) -> Pgbench {
        let dir = std::env::temp_dir().join(format!(
            "atoll-fk-load-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("tpcb.sql");
        std::fs::write(&script, tpcb_script(sc)).unwrap();
        let child = Command::new("pgbench")
            .args(["-n", "-h", "127.0.0.1", "-U", "postgres", "-T", "600"])
            .args(["-c", &clients.to_string(), "-p", &port.to_string()])
            .arg("-f")
            .arg(&script)
            .arg("postgres")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbench runs (it comes with PostgreSQL)");
        Pgbench {
            child: Some(child),
            dir,
        }
    }

    /// Waits (bounded) for pgbench to end by itself: its clients abort once the shard is
    /// renamed away on the source. Returns the transactions it reports processed.
    fn finish(mut self, within: Duration) -> i64 {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "pgbench did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Every client stops at the switch ("relation ... does not exist"), no earlier.
        assert!(
            !stderr.contains("deadlock") && !stderr.contains("could not connect"),
            "{stderr}"
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|n| n.split('/').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("pgbench output: {stdout}\n{stderr}"))
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Count and the four sums that TPC-B keeps equal: each transaction adds its delta to one
/// account, teller and branch, and records it in history.
async fn balances(c: &tokio_postgres::Client, sc: &str) -> [i64; 5] {
    let r = c
        .query_one(
            &format!(
                "select (select count(*) from {sc}.history),
                        (select coalesce(sum(delta), 0)::int8 from {sc}.history),
                        (select sum(abalance)::int8 from {sc}.accounts),
                        (select sum(tbalance)::int8 from {sc}.tellers),
                        (select sum(bbalance)::int8 from {sc}.branches)"
            ),
            &[],
        )
        .await
        .unwrap();
    [r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)]
}

async fn tpcb_cluster(s: ShardNo, from: IslandId) -> TestCluster {
    let tc = TestCluster::setup(2, 0)
        .shards([i64::from(s.get())])
        .on_island(from)
        .start()
        .await
        .unwrap();
    tc.on_each_shard(&[s], tpcb_tables).await.unwrap();
    tc
}

/// The ERROR lines (and what follows each) of `island`'s master's server log.
fn log_errors(tc: &TestCluster, island: IslandId) -> String {
    let status = tc.sandbox().status();
    let Some(node) = status
        .nodes
        .iter()
        .find(|n| n.island == island.0 && n.index == 0)
    else {
        return "-".into();
    };
    let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("ERROR") {
            out.extend(lines[i..(i + 8).min(lines.len())].iter().copied());
        }
    }
    out.join("\n")
}

/// A progress sink keeping the notes (table states, round trips) for a failure message.
fn recorder() -> (Progress, Arc<Mutex<Vec<String>>>) {
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let n = notes.clone();
    let progress: Progress = Arc::new(move |_, e| match e {
        MoveEvent::Note(t) => n.lock().unwrap().push(t.clone()),
        MoveEvent::Step(st) => n.lock().unwrap().push(format!("step {st}")),
        MoveEvent::Copy { .. } => {}
    });
    (progress, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_under_tpcb_load_with_foreign_keys_succeeds_first_time() {
    tokio::time::timeout(Duration::from_secs(300), load_scenario())
        .await
        .expect("the scenario finishes within 5 minutes");
}

async fn load_scenario() {
    let s = shard(1);
    let sc = s.schema();
    let (from, to) = (IslandId(0), IslandId(1));
    let tc = tpcb_cluster(s, from).await;
    let config = tc.config().clone();
    let snap = discover(&config).await;
    let src = master(&config, &snap, from).await;
    let port = tc.master_ports()[from.0 as usize];

    let load = Pgbench::start(port, &sc, 4);
    // The load is running before the move starts.
    atoll_testkit::wait_until("pgbench commits", Duration::from_secs(30), || async {
        Ok(balances(&src, &sc).await[0] > 200)
    })
    .await
    .unwrap();

    let (progress, notes) = recorder();
    let started = Instant::now();
    let moved =
        atoll_move::start_move(&config, &snap, s, to, &MoveOptions::default(), progress).await;
    let took = started.elapsed();
    let report = moved.unwrap_or_else(|e| {
        panic!(
            "the move failed under load after {took:?}: {e}\nnotes: {:#?}\ndestination log: {}",
            notes.lock().unwrap(),
            log_errors(&tc, to)
        )
    });
    assert_eq!(report.resumed_from, None);
    let committed = tokio::task::spawn_blocking(move || load.finish(Duration::from_secs(60)))
        .await
        .unwrap();
    let retries: Vec<String> = notes
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("lock attempt"))
        .cloned()
        .collect();
    eprintln!(
        "moved under pgbench in {took:?} (pause {:.1} ms, verify block {:.1} ms); pgbench committed {committed}; {retries:?}",
        report.pause_ms, report.verify_block_ms
    );

    // What the load committed is on the destination, consistent, with its foreign keys.
    let snap = discover(&config).await;
    assert_eq!(snap.active_island(s), Ok(to));
    let dst = master(&config, &snap, to).await;
    let after = balances(&dst, &sc).await;
    assert_eq!(
        after[0], committed,
        "one history row per committed transaction"
    );
    assert!(committed > 200, "the load ran during the move: {committed}");
    assert!(
        after[1..].iter().all(|v| *v == after[1]),
        "TPC-B sums differ: {after:?}"
    );
    let backup = report.backup_schema.clone().unwrap();
    assert_eq!(balances(&src, &backup).await, after, "source's last state");
    let fks: i64 = dst
        .query_one(
            "select count(*) from pg_constraint where contype = 'f' and connamespace = $1::text::regnamespace",
            &[&sc],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fks, 5);
    assert!(
        replication_leftovers(&config).await.is_empty(),
        "{:?}",
        replication_leftovers(&config).await
    );
    // Not even a deadlock the apply worker got past: post-copy DDL never met it.
    let errors = log_errors(&tc, to);
    assert!(!errors.contains("deadlock"), "{errors}");
}

/// The destination's apply worker fails from inside the move's catch-up: at the first
/// replication round trip a branch is inserted on the destination, then the same on the
/// source, so applying it violates the primary key on every retry. With `recover` the
/// destination's row is deleted once the first error is counted (a passing conflict).
/// Returns the progress sink and when the conflicting row reached the source.
fn conflict_in_catch_up(
    tc: &TestCluster,
    from: IslandId,
    to: IslandId,
    sc: &str,
    recover: bool,
) -> (Progress, Arc<Mutex<Option<Instant>>>) {
    let sandbox = tc.shared_sandbox();
    let (src, dst) = (
        tc.master_ports()[from.0 as usize],
        tc.master_ports()[to.0 as usize],
    );
    let sc = sc.to_string();
    let at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let injected = at.clone();
    let progress: Progress = Arc::new(move |_, e| {
        let MoveEvent::Note(n) = e else { return };
        if !n.starts_with("replication round trip") || injected.lock().unwrap().is_some() {
            return;
        }
        // Synchronous on purpose: the move waits here, inside its catch-up.
        let row = format!("insert into {sc}.branches values (999999, 0)");
        sandbox.psql(dst, &row).unwrap();
        sandbox.psql(src, &row).unwrap();
        *injected.lock().unwrap() = Some(Instant::now());
        if recover {
            let count = "select coalesce(sum(apply_error_count), 0) from pg_stat_subscription_stats
                         where subname like 'atoll_move_%'";
            atoll_testkit::poll_until("the apply worker fails", Duration::from_secs(30), || {
                sandbox.psql(dst, count).unwrap() != "0"
            });
            sandbox
                .psql(
                    dst,
                    &format!("delete from {sc}.branches where bid = 999999"),
                )
                .unwrap();
        }
    });
    (progress, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_error_the_worker_gets_past_does_not_fail_the_move() {
    tokio::time::timeout(Duration::from_secs(240), conflict_scenario(true))
        .await
        .expect("the scenario finishes within 4 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_failing_stops_the_move_within_seconds() {
    tokio::time::timeout(Duration::from_secs(240), conflict_scenario(false))
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn conflict_scenario(recover: bool) {
    let s = shard(1);
    let sc = s.schema();
    let (from, to) = (IslandId(0), IslandId(1));
    let tc = tpcb_cluster(s, from).await;
    let config = tc.config().clone();
    let snap = discover(&config).await;
    let (progress, injected) = conflict_in_catch_up(&tc, from, to, &sc, recover);
    let moved =
        atoll_move::start_move(&config, &snap, s, to, &MoveOptions::default(), progress).await;
    let injected = injected.lock().unwrap().expect("the conflict was injected");
    if recover {
        let report = moved.unwrap_or_else(|e| panic!("{e}\n{}", log_errors(&tc, to)));
        assert_eq!(report.resumed_from, None);
        let snap = discover(&config).await;
        assert_eq!(snap.active_island(s), Ok(to));
        let dst = master(&config, &snap, to).await;
        let n: i64 = dst
            .query_one(&format!("select count(*) from {sc}.branches"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, BRANCHES + 1, "the conflicting row was applied after all");
        assert!(
            log_errors(&tc, to).contains("duplicate key"),
            "an error was retried"
        );
        return;
    }
    let failed_after = injected.elapsed();
    let e = moved.expect_err("a worker failing on every retry stops the move");
    let text = e.to_string();
    eprintln!("stopped {failed_after:?} after the conflict: {text}");
    assert!(
        matches!(e, MoveError::ApplyFailing { errors, .. } if errors > 3),
        "{e:?}"
    );
    for part in [
        "island 1",
        "server log",
        "--resume or --abort",
        " s without getting past",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    // PostgreSQL restarts the worker every 500 ms in the sandbox (5 s by default).
    assert!(failed_after < Duration::from_secs(20), "{failed_after:?}");
    // Fixed on the destination, the move resumes to the end.
    let snap = discover(&config).await;
    master(&config, &snap, to)
        .await
        .batch_execute(&format!("delete from {sc}.branches where bid = 999999"))
        .await
        .unwrap();
    let opts = MoveOptions::default();
    let report = atoll_move::resume_move(&config, &snap, Some(s), &opts, atoll_move::no_progress())
        .await
        .unwrap();
    // Stopped in the catch-up, or in the pause after it.
    assert!(
        matches!(
            report.resumed_from,
            Some(MoveStep::Subscribed | MoveStep::CaughtUp)
        ),
        "{:?}",
        report.resumed_from
    );
    assert!(replication_leftovers(&config).await.is_empty());
}

/// A run that died while the subscription was disabled for the post-copy DDL (before the
/// DDL committed, or after it and before the catch-up) leaves it disabled; the resume
/// enables it again, and the changes made meanwhile arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_enables_a_subscription_a_crash_left_disabled() {
    tokio::time::timeout(Duration::from_secs(240), disabled_scenario())
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn disabled_scenario() {
    let s = shard(1);
    let sc = s.schema();
    let tc = tpcb_cluster(s, IslandId(0)).await;
    let config = tc.config().clone();
    // Killed before the post-copy DDL, then after it (the destination recorded it).
    let crashes = [
        (
            IslandId(0),
            IslandId(1),
            MoveOptions {
                stop_after: Some(MoveStep::Subscribed),
                ..MoveOptions::default()
            },
        ),
        (
            IslandId(1),
            IslandId(0),
            MoveOptions {
                stop_before_record: Some(MoveStep::CaughtUp),
                ..MoveOptions::default()
            },
        ),
    ];
    for (i, (from, to, opts)) in crashes.into_iter().enumerate() {
        let snap = discover(&config).await;
        let stopped =
            atoll_move::start_move(&config, &snap, s, to, &opts, atoll_move::no_progress()).await;
        assert!(
            matches!(stopped, Err(MoveError::Stopped { .. })),
            "{stopped:?}"
        );
        let dst = master(&config, &snap, to).await;
        // The move disables its subscription only once every table is copied.
        atoll_testkit::wait_until("the copy is done", Duration::from_secs(60), || async {
            let r = dst
                .query_one(
                    "select count(*) filter (where srsubstate <> 'r') from pg_subscription_rel",
                    &[],
                )
                .await?;
            Ok(r.get::<_, i64>(0) == 0)
        })
        .await
        .unwrap();
        let sub: String = dst
            .query_one(
                "select subname::text from pg_subscription where subname like 'atoll_move_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        dst.batch_execute(&format!("alter subscription {sub} disable"))
            .await
            .unwrap();
        master(&config, &snap, from)
            .await
            .batch_execute(&format!(
                "insert into {sc}.history (tid, bid, aid, delta, mtime) values (1, 1, 1, 7, now())"
            ))
            .await
            .unwrap();
        // Bounded: without the re-enable the catch-up would wait for a tick that never comes.
        let opts = MoveOptions {
            catch_up_timeout: Duration::from_secs(30),
            copy_timeout: Duration::from_secs(30),
            ..MoveOptions::default()
        };
        atoll_move::resume_move(&config, &snap, Some(s), &opts, atoll_move::no_progress())
            .await
            .unwrap_or_else(|e| panic!("resume {i}: {e}"));
        let snap = discover(&config).await;
        assert_eq!(snap.active_island(s), Ok(to));
        let dst = master(&config, &snap, to).await;
        assert_eq!(balances(&dst, &sc).await[0], i as i64 + 1, "resume {i}");
        assert!(replication_leftovers(&config).await.is_empty());
    }
}
