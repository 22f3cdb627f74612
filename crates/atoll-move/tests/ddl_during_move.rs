//! DDL on the source during a move is not lost (issue 8, item 6): each kind of change made
//! after the move caught up fails it with `SchemaChanged` (before the pause, or inside it
//! when the change commits while the move waits to lock), the shard stays active on the
//! source with its rows, the move stays at `caught_up`, and `--abort` cleans up. An
//! unchanged shard (with a disabled trigger) then moves.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo};
use atoll_move::{MoveError, MoveEvent, MoveOptions};
use common::{assert_settled, discover, master, setup, shard};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: i64 = 200;
const FROM: IslandId = IslandId(0);
const TO: IslandId = IslandId(1);

/// (what, the DDL on the source, a text the error must contain).
const KINDS: &[(&str, &str, &str)] = &[
    (
        "check added",
        "alter table sh0001.items add constraint payload_negative check (payload < 0)",
        "source has `constraint items.payload_negative: CHECK ((payload < 0))`, destination has not",
    ),
    (
        "foreign key added",
        "alter table sh0001.children add constraint children_item_again
           foreign key (item_id) references sh0001.items (id)",
        "source has `constraint children.children_item_again: FOREIGN KEY (item_id) REFERENCES items(id)`",
    ),
    (
        "set not null",
        "alter table sh0001.items alter column note set not null",
        "source has `column items.note text not null`, destination has `column items.note text`",
    ),
    (
        "default changed",
        "alter table sh0001.items alter column spare set default 7",
        "source has `column items.spare integer default 7`, destination has `column items.spare integer`",
    ),
    (
        "drop column",
        "alter table sh0001.items drop column spare",
        // The copy was made after the default changed above.
        "destination has `column items.spare integer default 7`, source has not",
    ),
    (
        "alter type",
        "alter table sh0001.items alter column typed type bigint",
        "source has `column items.typed bigint`, destination has `column items.typed integer`",
    ),
    (
        "trigger replaced",
        "create or replace trigger touch before insert or update on sh0001.items
           for each row execute function sh0001.touch()",
        "source has `trigger items.touch: CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON items",
    ),
    (
        "trigger disabled",
        "alter table sh0001.items disable trigger touch",
        "EXECUTE FUNCTION touch() (disabled)`",
    ),
    (
        "function replaced",
        "create or replace function sh0001.touch() returns trigger language plpgsql
           as $$ begin new.note := coalesce(new.note, 'changed'); return new; end $$",
        "source has `function touch(): ",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_the_source_during_a_move_fails_it_and_keeps_the_source() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn scenario() {
    let tc = setup(2, 0, &[1], ROWS, Some(FROM)).await;
    let config = tc.config().clone();
    let s = shard(1);
    let snap = discover(&config).await;
    let src = master(&config, &snap, FROM).await;
    // Columns for the kinds to change, and tables up to 20 for the measurement.
    let mut extra =
        String::from("alter table sh0001.items add column spare int, add column typed int;");
    for i in 0..17 {
        extra.push_str(&format!(
            "create table sh0001.t{i} (id bigint primary key, v text not null,
                                      ref bigint references sh0001.items (id));
             create index on sh0001.t{i} (v);"
        ));
    }
    src.batch_execute(&extra).await.unwrap();
    measure_signature(&src).await;

    for (what, ddl, expected) in KINDS {
        let started = Instant::now();
        stop_at_caught_up(&config, s).await;
        src.batch_execute(ddl)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (e, _) = resume(&config, &discover(&config).await, s).await;
        let e = e.expect_err(what);
        assert!(matches!(e, MoveError::SchemaChanged { .. }), "{what}: {e}");
        let text = e.to_string();
        assert!(text.contains(expected), "{what}: {text}");
        assert!(
            text.contains("stays active on the source") && text.contains("--abort --shard 1"),
            "{what}: {text}"
        );
        still_on_the_source(&config, s, what).await;
        eprintln!("{what}: refused in {:?}", started.elapsed());
    }

    // Committed while the move waits to lock: caught inside the pause, not before it. A
    // session holding SHARE UPDATE EXCLUSIVE (as VACUUM does) makes the move poll before it
    // locks; the function is replaced meanwhile, then the holder lets go.
    stop_at_caught_up(&config, s).await;
    let snap = discover(&config).await;
    let holder = master(&config, &snap, FROM).await;
    holder
        .batch_execute("begin; lock table sh0001.t0 in share update exclusive mode")
        .await
        .unwrap();
    let mover = {
        let config = config.clone();
        tokio::spawn(async move { resume(&config, &snap, s).await })
    };
    // The move's polling query stays its session's last one between polls (the holder's
    // own text is lower case, LIKE is not).
    let polling = "select count(*) from pg_stat_activity
                    where pid <> pg_backend_pid() and query like '%ShareUpdateExclusiveLock%'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&src, polling).await == 0 {
        assert!(!mover.is_finished(), "the move ended before it polled");
        assert!(
            Instant::now() < deadline,
            "the move never polled for the lock holder"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.batch_execute(
        "create or replace function sh0001.touch() returns trigger language plpgsql
           as $$ begin new.note := coalesce(new.note, 'late'); return new; end $$",
    )
    .await
    .unwrap();
    holder.batch_execute("commit").await.unwrap();
    let (e, events) = mover.await.unwrap();
    let e = e.expect_err("the in-pause check");
    assert!(
        matches!(e, MoveError::SchemaChanged { .. })
            && e.to_string().contains("source has `function touch(): "),
        "{e}"
    );
    assert!(
        events.contains(&MoveStep::Paused),
        "refused before the pause, not inside it: {events:?}"
    );
    still_on_the_source(&config, s, "in the pause").await;

    // Unchanged since the copy (a disabled trigger included): the move goes through.
    let snap = discover(&config).await;
    let report = atoll_move::start_move(
        &config,
        &snap,
        s,
        TO,
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .expect("a move of an unchanged shard");
    eprintln!(
        "move of an unchanged shard: pause {:.1} ms (verify and switch {:.1} ms)",
        report.pause_ms, report.verify_and_switch_ms
    );
    assert_settled(&config, s, TO, Some(ROWS)).await;
    let dst = master(&config, &discover(&config).await, TO).await;
    let enabled: String = dst
        .query_one(
            "select tgenabled::text from pg_trigger where tgname = 'touch'
              and tgrelid = 'sh0001.items'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(enabled, "D", "the disabled trigger stays disabled");
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// A move of `s` to [`TO`] stopped as if killed right after it caught up.
async fn stop_at_caught_up(config: &Config, s: ShardNo) {
    let opts = MoveOptions {
        stop_after: Some(MoveStep::CaughtUp),
        ..MoveOptions::default()
    };
    let snap = discover(config).await;
    let e = atoll_move::start_move(config, &snap, s, TO, &opts, atoll_move::no_progress())
        .await
        .unwrap_err();
    assert!(matches!(e, MoveError::Stopped { .. }), "{e}");
}

/// Resumes the move of `s`; its outcome and the steps it announced.
async fn resume(
    config: &Config,
    snap: &atoll_core::Snapshot,
    s: ShardNo,
) -> (Result<atoll_move::MoveReport, MoveError>, Vec<MoveStep>) {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let progress: atoll_move::Progress = Arc::new(move |_, e: &MoveEvent| {
        if let MoveEvent::Step(step) = e {
            seen.lock().unwrap().push(*step);
        }
    });
    let r = atoll_move::resume_move(config, snap, Some(s), &MoveOptions::default(), progress).await;
    let steps = steps.lock().unwrap().clone();
    (r, steps)
}

/// The refused move left the shard active on the source with its rows, recorded at
/// `caught_up`; the abort then cleans up.
async fn still_on_the_source(config: &Config, s: ShardNo, what: &str) {
    let snap = discover(config).await;
    assert_eq!(snap.active_island(s), Ok(FROM), "{what}");
    let moves = atoll_move::unfinished(config, &snap).await.unwrap();
    assert_eq!(moves.len(), 1, "{what}: {moves:?}");
    assert_eq!(moves[0].step, MoveStep::CaughtUp, "{what}");
    atoll_move::abort_move(config, &snap, Some(s))
        .await
        .unwrap_or_else(|e| panic!("{what}: abort: {e}"));
    assert_settled(config, s, FROM, Some(ROWS)).await;
}

/// The signature of a 20-table shard, prepared once and run as inside the pause: its
/// median time, reported.
async fn measure_signature(c: &tokio_postgres::Client) {
    let tables: i64 = c
        .query_one(
            "select count(*) from pg_class where relnamespace = 'sh0001'::regnamespace and relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tables >= 20, "{tables} tables");
    let st = atoll_pg::schema_signature::prepare(c, &node_config(), "sh0001")
        .await
        .unwrap();
    let mut times = Vec::new();
    let mut facts = 0;
    for _ in 0..21 {
        let t = Instant::now();
        facts = atoll_pg::schema_signature::run(c, &node_config(), &st)
            .await
            .unwrap()
            .len();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "schema signature of {tables} tables ({facts} facts): median {:.2} ms, max {:.2} ms",
        times[10].as_secs_f64() * 1e3,
        times[20].as_secs_f64() * 1e3
    );
}

/// A node for error messages only.
fn node_config() -> atoll_core::NodeConfig {
    atoll_core::NodeConfig {
        host: "127.0.0.1".into(),
        port: 0,
        user: "test".into(),
        database: "test".into(),
        password: None,
        tls: Default::default(),
    }
}
