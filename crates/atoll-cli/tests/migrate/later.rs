//! Steps after the main history: undo consent, a lost run lock, REINDEX CONCURRENTLY,
//! and `allocate --migrate` run again after a failed migration.

use super::*;

const V11: &str = "20240101000130.slow.sh";
const V12: &str = "20240101000140.reindex.sh";
const V13: &str = "20240101000150.raced.sh";
const V14: &str = "20240101000160.slow_idx.sh";

/// Shards (and `public`) at the end of the main history: sh0001-sh0067.
const SHARDS: i64 = 67;

pub fn undo_needs_consent_for_a_destructive_down_file(env: &Env) {
    // V10's down file drops a table.
    let (code, _, err) = env.migrate(&["undo", V10]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{V10}.dn.sql")) && err.contains("--allow-unsafe"),
        "{err}"
    );
    assert_eq!(env.applied(V10), SHARDS);
    let (code, report) = env.migrate_json(&["undo", V10, "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V10), 0);
}

pub fn lost_lock_stops_the_run(env: &Env) {
    env.write(
        V11,
        "create table slow (n int primary key);\nselect pg_sleep(0.2);",
        "drop table slow;",
    );
    let dir = env.dir.to_string_lossy().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(env.sb.config_path())
        .args(["migrate", "apply", "--parallelism", "1", "--canary", "0"])
        .args(["--dir", &dir])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let started = Instant::now();
    while env.applied(V11) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run made no progress"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The run's lock session ends (a network cut, a restart, an operator's kill).
    let killed = env.psql(
        env.ports[0],
        "select count(pg_terminate_backend(pid)) from pg_locks where locktype = 'advisory' and granted",
    );
    assert_eq!(killed, "1");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lost its cluster lock"), "{err}");
    let partial = env.applied(V11);
    assert!(partial < SHARDS, "the run went on unlocked: {partial}");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V11), SHARDS);
    assert_eq!(env.applied(V10), SHARDS);
}

pub fn reindex_concurrently(env: &Env) {
    env.write(V12, "reindex table concurrently slow;", "select 1;");
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    assert!(plan["unsafe_pending"]
        .as_array()
        .is_some_and(|u| u.is_empty()));
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["versions_applied"], SHARDS, "{report}");
    assert_eq!(env.applied(V12), SHARDS);
}

pub fn already_applied_is_not_counted(env: &Env) {
    // As if an earlier run's backend had committed sh0001's version after the plan was
    // made: before.sql (run between plan and fan-out) records it.
    let before = env.dir.join("before.sql");
    std::fs::write(
        &before,
        format!(
            "do $$ begin if to_regnamespace('sh0001') is not null then \
             insert into sh0001.atoll_migrations (version, name, checksum) \
             values ('{V13}', 'raced', 'x'); end if; end $$;"
        ),
    )
    .expect("write");
    env.write(V13, "create table raced (id int);", "drop table raced;");
    let (code, report) = env.migrate_json(&["apply"]);
    std::fs::remove_file(before).expect("rm");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"], SHARDS, "{report}");
    assert_eq!(report["versions_applied"], SHARDS - 1, "{report}");
    assert_eq!(env.applied(V13), SHARDS);
}

/// An invalid index that another backend is still building (a killed run's backend) is
/// waited for, not dropped under it.
pub fn running_index_build_is_not_dropped(env: &Env) {
    let p3 = env.port_of("sh0003");
    let psql = |sql: &str| {
        Command::new(env.sb.pg_bin().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &p3.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-c", sql])
            .current_dir("/")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn psql")
    };
    // A writer keeps the build waiting (with its invalid index in the catalog) for 3 s.
    let mut writer =
        psql("begin; insert into sh0003.slow values (1000); select pg_sleep(3); commit;");
    let wrote = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                 where c.relname = 'slow' and c.relnamespace = 'sh0003'::regnamespace \
                 and l.granted and l.mode = 'RowExclusiveLock'";
    let building = "select count(*) from pg_stat_progress_create_index p \
                    where p.index_relid = to_regclass('sh0003.slow_n_idx')";
    let started = Instant::now();
    while env.psql(p3, wrote) != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "no writer");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut builder = psql("create index concurrently slow_n_idx on sh0003.slow (n);");
    while env.psql(p3, building) != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "no build");
        std::thread::sleep(Duration::from_millis(20));
    }
    let oid = "select 'sh0003.slow_n_idx'::regclass::oid || ' ' || i.indisvalid \
               from pg_index i where i.indexrelid = 'sh0003.slow_n_idx'::regclass";
    let before = env.psql(p3, oid);
    assert!(before.ends_with(" false"), "{before}");
    env.write(
        V14,
        "create index concurrently slow_n_idx on slow (n);",
        "drop index concurrently slow_n_idx;",
    );
    // No canary and enough workers: sh0003 starts at once, while the build still waits (any
    // CREATE INDEX CONCURRENTLY in the database waits for the writer, a canary's too).
    // No lock retries: only waiting for the build, not retrying a drop, may pass.
    let (code, report) = env.migrate_json(&[
        "apply",
        "--canary",
        "0",
        "--parallelism",
        "8",
        "--lock-retries",
        "0",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V14), SHARDS);
    // The same index, finished by its own builder: not dropped and rebuilt.
    let after = env.psql(p3, oid);
    assert_eq!(after, before.replace(" false", " true"));
    builder.wait().expect("builder");
    writer.wait().expect("writer");
}

pub fn allocate_rerun_migrates_every_inactive_shard(env: &Env) {
    let dir = env.dir.to_string_lossy().to_string();
    let allocate = [
        "--json",
        "allocate",
        "--shards",
        "69-70",
        "--activate",
        "--migrate",
    ];
    // sh0069 exists already (made without --migrate, or left by a killed run) and its
    // migration fails; sh0070 is new.
    ok(&env.atoll(&["allocate", "--shards", "69"]));
    let p69 = env.port_of("sh0069");
    env.psql(p69, "create table sh0069.users (x int)");
    let mut args = allocate.to_vec();
    args.extend(["--migrations-dir", &dir]);
    // sh0069 existed before and may hold data: destructive versions need consent. The
    // refusal names the shard it did create.
    let out = env.atoll(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-unsafe") && err.contains("allocated and left inactive: sh0070"),
        "{err}"
    );
    args.push("--allow-unsafe");
    let out = env.atoll(&args);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["canary"], serde_json::json!(["sh0069"]), "{v}");
    assert_eq!(v["migrate"]["status"], "canary_failed", "{v}");
    let active = "select count(*) from atoll.shards where shard in (69, 70) and active";
    assert_eq!(env.sum(active), 0, "nothing unmigrated is activated");
    // Fixed and run again: both are migrated, then activated.
    env.psql(p69, "drop table sh0069.users");
    let out = env.atoll(&args);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["status"], "done", "{v}");
    assert_eq!(env.sum(active), 2);
    assert_eq!(env.applied(V13), SHARDS + 2);
}
