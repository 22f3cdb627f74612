//! Steps of the main history after `schema diff`: lock timeouts with bounded retries,
//! `before.sql`/`after.sql`, `allocate --migrate` and `migrate new`, switching from pg-mig.

use super::*;

pub fn lock_timeout_with_bounded_retry(env: &Env) {
    env.write(
        V8,
        "alter table users add column age int;",
        "alter table users drop column age;",
    );
    let p3 = env.port_of("sh0003");
    // Another session holds sh0003.users, as a long transaction of the app would, until
    // the test releases it.
    let mut holder = super::fixes::session(env, p3, "atoll_test_v8_holder");
    holder.send("begin;\nlock table sh0003.users;\n");
    let held = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                where c.relname = 'users' and c.relnamespace = 'sh0003'::regnamespace \
                and l.granted and l.mode = 'AccessExclusiveLock'";
    let started = Instant::now();
    while env.psql(p3, held) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lock never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // 0 would mean "wait forever" to PostgreSQL: refused.
    let (code, _, err) = env.migrate(&["apply", "--lock-timeout-ms", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lock-timeout-ms"), "{err}");
    // No retry: the busy shard gives up quickly with the lock timeout, the others go on.
    let (code, report) = env.migrate_json(&[
        "apply",
        "--canary",
        "0",
        "--lock-timeout-ms",
        "100",
        "--lock-retries",
        "0",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failures"][0]["schema"], "sh0003", "{report}");
    let error = report["failures"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("lock timeout") && error.contains("55P03"),
        "{error}"
    );
    assert_eq!(env.applied(V8), 63);
    // Bounded retries with backoff outlast the holder: the run times out on the lock at
    // least once (it says so with -v), then the holder commits and a retry goes through.
    let mut run = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(env.sb.config_path())
        .args([
            "-v",
            "--json",
            "migrate",
            "apply",
            "--lock-timeout-ms",
            "200",
        ])
        .args(["--lock-retries", "6", "--dir"])
        .arg(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atoll");
    let stderr = run.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let started = Instant::now();
    loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("lock timeout, retrying") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = run.kill();
                panic!("the run never retried after a lock timeout: {e}");
            }
        }
    }
    holder.send("commit;\n");
    holder.finish();
    let out = run.wait_with_output().expect("wait atoll");
    let err = reader.join().expect("stderr reader");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(out.status.code(), Some(0), "{report} / {err}");
    assert_eq!(env.applied(V8), 64);
}

pub fn before_and_after_hooks(env: &Env) {
    let before = env.dir.join("before.sql");
    let after = env.dir.join("after.sql");
    std::fs::write(
        &before,
        "create table if not exists public.hook_log (id serial, what text);\n\
         insert into public.hook_log (what) values ('before');",
    )
    .expect("write");
    std::fs::write(
        &after,
        "insert into public.hook_log (what) values ('after');",
    )
    .expect("write");
    env.write(V9, "create table hooked (id int);", "drop table hooked;");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    // Once per island, around the run.
    for p in &env.ports {
        let log = env.psql(
            *p,
            "select string_agg(what, ',' order by id) from public.hook_log",
        );
        assert_eq!(log, "before,after", "port {p}");
    }
    std::fs::remove_file(before).expect("rm");
    std::fs::remove_file(after).expect("rm");
}

pub fn allocate_migrate_and_new(env: &Env) {
    let dir = env.dir.to_string_lossy().to_string();
    let out = env.atoll(&[
        "--json",
        "allocate",
        "--shards",
        "65-66",
        "--activate",
        "--migrate",
        "--migrations-dir",
        &dir,
    ]);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["status"], "done", "{v}");
    assert_eq!(v["migrate"]["schemas_total"], 2, "{v}");
    assert_eq!(v["allocated"][0]["active"], true, "{v}");
    assert_eq!(v["allocated"][1]["active"], true, "{v}");
    assert_eq!(env.applied(V9), 66);
    // Activated after (not before) the migration: both are active, and migrated.
    assert_eq!(
        env.sum("select count(*) from atoll.shards where shard in (65, 66) and active"),
        2
    );
    // A bad migration directory allocates nothing.
    let missing = env.sb.dir().join("no-such-dir");
    let out = env.atoll(&[
        "allocate",
        "--shards",
        "68",
        "--migrate",
        "--migrations-dir",
        &missing.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        env.sum("select count(*) from pg_namespace where nspname = 'sh0068'"),
        0
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0);
    assert_eq!(plan["up_to_date"], 67);

    let new_dir = env.sb.dir().join("new-migrations");
    let nd = new_dir.to_string_lossy().to_string();
    let (code, out, err) = env.migrate(&["new", "add_x", "--target", "sh", "--dir", &nd]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = std::fs::read_dir(&new_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{out}");
    assert!(names.iter().all(|n| n.contains(".add_x.sh.")), "{names:?}");
    let (code, _, err) = env.migrate(&["new", "bad name", "--dir", &nd]);
    assert_eq!(code, 2, "{err}");
    assert!(Path::new(&new_dir).exists());
}

pub fn switch_from_pg_mig(env: &Env) {
    // A shard pg-mig has migrated so far: its versions live in mig_versions_const().
    ok(&env.atoll(&["allocate", "--shards", "67"]));
    let p67 = env.port_of("sh0067");
    let all = [V1, V2, V3, V4, V5, V6, V7, V8, V9];
    let json = serde_json::to_string(&all).expect("json");
    env.psql(
        p67,
        &format!("create function sh0067.mig_versions_const() returns text language sql as $$ select '{json}' $$"),
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(
        plan["up_to_date"], 68,
        "pg-mig's versions count as applied: {plan}"
    );
    env.write(
        V10,
        "create table after_pg_mig (id int);",
        "drop table after_pg_mig;",
    );
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"], 67, "{report}");
    assert_eq!(report["versions_applied"], 67, "{report}");
    // Imported on first write, then extended.
    assert_eq!(
        env.psql(p67, "select count(*) from sh0067.atoll_migrations"),
        "10"
    );
    let (_, plan) = env.migrate_json(&["plan"]);
    assert_eq!(plan["up_to_date"], 68);
    // A file edited after it was applied is pointed out (the edit would never run there).
    env.write(
        V10,
        "create table after_pg_mig (id bigint);",
        "drop table after_pg_mig;",
    );
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "changed: {V10}.up.sql was edited after 67 schemas applied it"
        )),
        "{text}"
    );
}
