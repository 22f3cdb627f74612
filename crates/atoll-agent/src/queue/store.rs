//! The queue's durable store: one SQLite file in the state directory, written with
//! `synchronous = FULL` so an accepted action survives a crash of the machine.

use super::record::{ActionRecord, ActionState};
use crate::actions::ActionKind;
use crate::error::AgentError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};

/// The file in the state directory.
pub const STATE_FILE: &str = "agent.sqlite";

const SCHEMA: &str = "
create table if not exists actions (
    seq integer primary key autoincrement,
    id text not null unique,
    kind text not null,
    args text not null,
    state text not null,
    created_at_ms integer not null,
    started_at_ms integer,
    finished_at_ms integer,
    progress text,
    output text,
    error text,
    attempts integer not null default 0
);
create index if not exists actions_state on actions (state, seq);
create table if not exists meta (key text primary key, value text not null);
";

const COLUMNS: &str = "seq, id, kind, args, state, created_at_ms, started_at_ms, \
                       finished_at_ms, progress, output, error, attempts";

/// How a record ends.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// DONE with this output.
    Done(serde_json::Value),
    /// FAILED with this error (and what was done before, if anything).
    Failed {
        /// `{ "message": …, "code"?: …, … }`
        error: serde_json::Value,
        /// Partial output.
        output: Option<serde_json::Value>,
    },
}

/// An open store. Not shared between threads by itself: [`super::Queue`] wraps it.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating) `<dir>/agent.sqlite`.
    pub fn open(dir: &Path) -> Result<Store, AgentError> {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::io("cannot create", dir, e))?;
        let path = dir.join(STATE_FILE);
        let err = |source| AgentError::State {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> AgentError {
        AgentError::State {
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts a NEW record; `Ok(None)` if the id exists (nothing written).
    pub fn insert(
        &mut self,
        id: &str,
        kind: ActionKind,
        args: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Option<ActionRecord>, AgentError> {
        let n = self
            .conn
            .execute(
                "insert into actions (id, kind, args, state, created_at_ms)
                 values (?1, ?2, ?3, 'NEW', ?4) on conflict (id) do nothing",
                params![id, kind.as_str(), args.to_string(), now_ms],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    /// The record with `id`.
    pub fn get(&self, id: &str) -> Result<Option<ActionRecord>, AgentError> {
        self.conn
            .query_row(
                &format!("select {COLUMNS} from actions where id = ?1"),
                [id],
                record,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records in acceptance order (newest first when `newest_first`), optionally of one state.
    pub fn list(
        &self,
        state: Option<ActionState>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<ActionRecord>, AgentError> {
        let order = if newest_first { "desc" } else { "asc" };
        let sql = format!(
            "select {COLUMNS} from actions where (?1 is null or state = ?1) order by seq {order} limit ?2"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![state.map(ActionState::as_str), limit as i64],
                record,
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// How many records are in `state`.
    pub fn count(&self, state: ActionState) -> Result<usize, AgentError> {
        self.conn
            .query_row(
                "select count(*) from actions where state = ?1",
                [state.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as usize)
            .map_err(|e| self.err(e))
    }

    /// The next action to run: a RUNNING one (left by a crash and safe to re-run), else
    /// the oldest NEW one.
    pub fn next(&self) -> Result<Option<ActionRecord>, AgentError> {
        self.conn
            .query_row(
                &format!(
                    "select {COLUMNS} from actions where state in ('RUNNING', 'NEW')
                     order by state = 'RUNNING' desc, seq limit 1"
                ),
                [],
                record,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Marks `id` RUNNING (again, after a crash) and counts the attempt.
    pub fn start(&mut self, id: &str, now_ms: i64) -> Result<(), AgentError> {
        self.conn
            .execute(
                "update actions set state = 'RUNNING', started_at_ms = ?2,
                        attempts = attempts + 1 where id = ?1",
                params![id, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets the progress message of a running action.
    pub fn progress(&mut self, id: &str, message: &str) -> Result<(), AgentError> {
        self.conn
            .execute(
                "update actions set progress = ?2 where id = ?1 and state = 'RUNNING'",
                params![id, message],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ends `id` with `outcome`.
    pub fn finish(&mut self, id: &str, outcome: &Outcome, now_ms: i64) -> Result<(), AgentError> {
        let (state, output, error) = match outcome {
            Outcome::Done(out) => (ActionState::Done, Some(out.to_string()), None),
            Outcome::Failed { error, output } => (
                ActionState::Failed,
                output.as_ref().map(|o| o.to_string()),
                Some(error.to_string()),
            ),
        };
        self.conn
            .execute(
                "update actions set state = ?2, output = ?3, error = ?4, finished_at_ms = ?5
                 where id = ?1",
                params![id, state.as_str(), output, error, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A remembered value (`data_directory`, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>, AgentError> {
        self.conn
            .query_row("select value from meta where key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remembers a value.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), AgentError> {
        self.conn
            .execute(
                "insert into meta (key, value) values (?1, ?2)
                 on conflict (key) do update set value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

fn record(r: &Row<'_>) -> rusqlite::Result<ActionRecord> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let kind: String = r.get(2)?;
    let state: String = r.get(4)?;
    Ok(ActionRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: ActionKind::parse(&kind).ok_or_else(|| bad(2, "kind"))?,
        args: json(Some(r.get(3)?)).unwrap_or(serde_json::Value::Null),
        state: ActionState::parse(&state).ok_or_else(|| bad(4, "state"))?,
        created_at_ms: r.get(5)?,
        started_at_ms: r.get(6)?,
        finished_at_ms: r.get(7)?,
        progress: r.get(8)?,
        output: json(r.get(9)?),
        error: json(r.get(10)?),
        attempts: r.get(11)?,
    })
}
