//! The fault suite's cluster, reused by every path: two islands, shard 1 (the one moved,
//! with a table big enough for the copy to take a moment) and two ballast shards that keep
//! `rebalance` from planning anything (weight 1 each: one shard of difference is balanced).
//! Plus running the binary and reading the truth from the islands with psql.

use atoll_core::IslandId;
use atoll_testkit::cli::Cli;
use atoll_testkit::TestCluster;
use serde_json::Value;
use std::process::Output;

/// The shard every path moves.
pub const SHARD: i64 = 1;
/// `rebalance --weight-sql`: every active shard weighs 1.
pub const WEIGHTS: &str = "select shard, 1::float8 from atoll.shards where active";
/// Rows in the moved shard before the first path.
const ROWS: i64 = 20_000;

pub struct World {
    pub tc: TestCluster,
    pub cli: Cli,
    /// Master ports, by island.
    pub ports: Vec<u16>,
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: &Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stdout and stderr together, for looking for a named command.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn brief(&self) -> String {
        let t = self.text();
        let t = t.trim();
        format!("exit {}: {}", self.code, &t[..t.len().min(600)])
    }
}

impl World {
    pub fn new() -> World {
        let tc = TestCluster::setup(2, 0)
            .shards([SHARD, 2])
            .on_island(IslandId(0))
            .start_blocking()
            .expect("test cluster");
        let ports = tc.master_ports();
        let cli = tc.cli(env!("CARGO_BIN_EXE_atoll"));
        let w = World { tc, cli, ports };
        let out = w.atoll(
            &[
                "--json",
                "allocate",
                "--shards",
                "3",
                "--island",
                "1",
                "--activate",
            ],
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.brief());
        w.psql(
            w.ports[0],
            &format!(
                "create table sh0001.items (id bigint primary key default sh0001.id_gen(),
                                            payload bigint not null, note text);
                 create index on sh0001.items (payload);
                 insert into sh0001.items (payload, note)
                   select -g, repeat('x', 100) from generate_series(1, {ROWS}) g;"
            ),
        );
        w
    }

    pub fn atoll(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::from(&self.cli.run_with_env(args, env))
    }

    /// `atoll move --shard 1 <more>`, with the test hook stopping at `stop` when given.
    pub fn mover(&self, more: &[&str], stop: Option<&str>) -> Run {
        let shard = SHARD.to_string();
        let mut args = vec!["move", "--shard", shard.as_str()];
        args.extend_from_slice(more);
        let env: Vec<(&str, &str)> = stop
            .map(|s| vec![("ATOLL_MOVE_STOP_AFTER", s)])
            .unwrap_or_default();
        self.atoll(&args, &env)
    }

    pub fn psql(&self, port: u16, sql: &str) -> String {
        self.tc.psql(port, sql)
    }

    /// `status --json` and its exit code.
    pub fn status(&self) -> Result<(i32, Value), String> {
        let run = self.atoll(&["--json", "status"], &[]);
        serde_json::from_str(&run.stdout)
            .map(|v| (run.code, v))
            .map_err(|e| format!("status --json is not JSON ({e}): {}", run.brief()))
    }

    /// What the islands say, read until two reads in a row agree (table-sync slots of a
    /// running copy come and go).
    pub fn truth(&self) -> Truth {
        let mut last = self.read_truth();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(40));
            let now = self.read_truth();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    fn read_truth(&self) -> Truth {
        let mut t = Truth::default();
        for (island, &port) in self.ports.iter().enumerate() {
            let island = island as u16;
            let mut lines: Vec<String> = self
                .psql(port, TRUTH_SQL)
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            for l in lines {
                let (what, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                let rest = format!("{island} {rest}");
                match what {
                    "shard" if rest.ends_with(" true true") => t.active.push(island),
                    "shard" if rest.ends_with(" true false") => t.flag_without_schema.push(island),
                    "shard" => {}
                    "move" => t.moves.push(rest),
                    "repl" => t.replication.push(rest),
                    _ => t.backups.push(rest),
                }
            }
        }
        t
    }
}

/// One query per island: shard 1's flag and schema, unfinished move rows, replication
/// objects of moves (table-sync slots included), backup schemas.
const TRUTH_SQL: &str = r"
select 'shard ' || coalesce((select active::text from atoll.shards where shard = 1), 'none')
       || ' ' || exists (select 1 from pg_namespace where nspname = 'sh0001')::text
union all
select 'move ' || id || ' ' || role || ' ' || step || ' ' || (abort_started_at is not null)
  from atoll.moves where step <> 'cleaned_up'
union all
select 'repl subscription ' || subname from pg_subscription where subname like 'atoll\_move\_%'
union all
select 'repl slot ' || slot_name from pg_replication_slots
 where slot_name like 'atoll\_move\_%' or slot_name like 'pg\_%\_sync\_%'
union all
select 'repl publication ' || pubname from pg_publication where pubname like 'atoll\_move\_%'
union all
select 'backup ' || nspname from pg_namespace where nspname ~ '^sh[0-9]{4}_moved_[0-9]+$'";

/// The state of the cluster as the islands hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// Islands where shard 1 is active (flag set and schema present).
    pub active: Vec<u16>,
    /// Islands whose registry says active while the schema is missing (never right).
    pub flag_without_schema: Vec<u16>,
    /// Unfinished `atoll.moves` rows: `island id role step aborting`.
    pub moves: Vec<String>,
    /// Replication objects of moves: `island kind name`.
    pub replication: Vec<String>,
    /// Backup schemas: `island name`.
    pub backups: Vec<String>,
}

impl Truth {
    /// The unfinished move as its source row says (the destination's row if that is all
    /// there is): (id, step, abort started).
    pub fn unfinished(&self) -> Option<(i64, String, bool)> {
        let rows: Vec<Vec<&str>> = self.moves.iter().map(|l| l.split(' ').collect()).collect();
        let row = rows
            .iter()
            .find(|r| r[2] == "source")
            .or_else(|| rows.first())?;
        let aborting = rows.iter().any(|r| r[4] == "true");
        Some((row[1].parse().ok()?, row[3].to_string(), aborting))
    }

    pub fn is_clean(&self) -> bool {
        self.active.len() == 1
            && self.flag_without_schema.is_empty()
            && self.moves.is_empty()
            && self.replication.is_empty()
            && self.backups.is_empty()
    }
}
