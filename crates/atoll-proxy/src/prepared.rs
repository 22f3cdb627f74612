//! Named prepared statements in transaction pooling: a client prepares a statement once
//! and runs it in many transactions, each of which may land on another server connection.
//! The mechanism (PgBouncer's, written here for atoll):
//!
//! - every distinct statement (its text and parameter types) gets one proxy-wide server
//!   name, `atoll_s<n>` ([`Registry`]);
//! - a session maps its own statement names to those ([`ClientStatements`]);
//! - each server connection knows which server names it has prepared
//!   ([`ServerStatements`], bounded: the oldest are closed past [`SERVER_LIMIT`]);
//! - a batch of extended-protocol messages is first translated once per batch into
//!   [`Step`]s ([`translate`]: client names replaced, unknown ones refused as PostgreSQL
//!   would), then, for the connection it runs on, into the messages sent
//!   ([`materialize`]): a `Parse` added before a `Bind` or `Describe` of a statement that
//!   connection lacks, and an [`Expect`] telling the relay which `ParseComplete` and
//!   `CloseComplete` answers belong to messages the proxy added (dropped, not relayed);
//! - a client's `Close` of a statement forgets its name and sends a `Close` of a name no
//!   statement has (never an error in PostgreSQL), so the client gets its CloseComplete in
//!   order while the server's statement stays for other sessions.
//!
//! Does no I/O.

use crate::frame::Frame;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Server statements one connection keeps at most; the oldest are closed past it.
pub const SERVER_LIMIT: usize = 256;

/// A name no server statement has: what a client's `Close` of a statement becomes.
const CLOSED: &str = "atoll_closed";

/// A refusal: its SQLSTATE and message.
pub type Refusal = (&'static str, String);

/// The proxy-wide server name of each distinct statement.
#[derive(Default)]
pub struct Registry {
    /// Statement (text and parameter types, as in `Parse` after the name) -> its number.
    /// Locked only to look up or insert.
    ids: Mutex<HashMap<Bytes, u64>>,
    /// The next number handed out.
    next: AtomicU64,
}

impl Registry {
    /// The number of statement `spec` (inserted on first use).
    pub fn id_of(&self, spec: &Bytes) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        *ids.entry(spec.clone())
            .or_insert_with(|| self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// How many distinct statements were prepared.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The server name of statement number `id`.
pub fn server_name(id: u64) -> String {
    format!("atoll_s{id}")
}

/// One client statement: its number and what `Parse` carried after the name.
#[derive(Debug, Clone)]
struct Prepared {
    id: u64,
    spec: Bytes,
}

/// A session's named statements.
#[derive(Default)]
pub struct ClientStatements {
    by_name: HashMap<String, Prepared>,
}

impl ClientStatements {
    /// Forgets them all (`DISCARD ALL`, `DEALLOCATE ALL`).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    /// Forgets one (`DEALLOCATE name`); whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }
}

/// A connection's server statements, oldest first.
#[derive(Default, Debug)]
pub struct ServerStatements {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl ServerStatements {
    fn insert(&mut self, id: u64) {
        if self.set.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Forgets statements whose `Parse` did not complete.
    pub fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            if self.set.remove(id) {
                self.order.retain(|o| o != id);
            }
        }
    }

    /// How many it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

/// One message of a batch, translated.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sent as it came (unnamed statements, portals, Execute, Sync, Flush).
    Forward(Frame),
    /// The client's `Parse` of a named statement: sent as the server statement (after a
    /// `Close` of it when the connection has it already); its answer is the client's.
    Parse { id: u64, spec: Bytes },
    /// A `Bind` or `Describe` of a named statement, already renamed; needs the statement.
    Uses { id: u64, spec: Bytes, frame: Frame },
}

impl Step {
    /// The type byte of the client's message.
    pub fn tag(&self) -> u8 {
        match self {
            Step::Forward(f) | Step::Uses { frame: f, .. } => f.tag,
            Step::Parse { .. } => b'P',
        }
    }

    /// The statement text this step runs, when it names one (borrowed from the message).
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        let spec = match self {
            Step::Parse { spec, .. } | Step::Uses { spec, .. } => spec.as_ref(),
            Step::Forward(f) if f.tag == b'P' => cstr(&f.body)?.1,
            Step::Forward(_) => return None,
        };
        cstr(spec).map(|(t, _)| String::from_utf8_lossy(t))
    }
}

/// Translates a batch: client names to server names, the session's names updated.
pub fn translate(
    frames: Vec<Frame>,
    client: &mut ClientStatements,
    registry: &Registry,
) -> Result<Vec<Step>, Refusal> {
    frames
        .into_iter()
        .map(|f| translate_one(f, client, registry))
        .collect()
}

fn translate_one(
    f: Frame,
    client: &mut ClientStatements,
    registry: &Registry,
) -> Result<Step, Refusal> {
    let malformed = |what: &str| ("08P01", format!("malformed {what} message"));
    match f.tag {
        b'P' => {
            let (name, spec) = cstr(&f.body).ok_or_else(|| malformed("Parse"))?;
            if name.is_empty() {
                return Ok(Step::Forward(f));
            }
            let name = String::from_utf8_lossy(name).into_owned();
            if client.by_name.contains_key(&name) {
                return Err((
                    "42P05",
                    format!("prepared statement \"{name}\" already exists"),
                ));
            }
            let spec = f.body.slice_ref(spec);
            let id = registry.id_of(&spec);
            client.by_name.insert(
                name,
                Prepared {
                    id,
                    spec: spec.clone(),
                },
            );
            Ok(Step::Parse { id, spec })
        }
        b'B' => {
            let (portal, rest) = cstr(&f.body).ok_or_else(|| malformed("Bind"))?;
            let (name, rest) = cstr(rest).ok_or_else(|| malformed("Bind"))?;
            if name.is_empty() {
                return Ok(Step::Forward(f));
            }
            let p = known(client, name)?;
            let mut body = BytesMut::new();
            put_cstr(&mut body, portal);
            put_cstr(&mut body, server_name(p.id).as_bytes());
            body.put_slice(rest);
            let frame = Frame {
                tag: b'B',
                body: body.freeze(),
            };
            Ok(Step::Uses {
                id: p.id,
                spec: p.spec,
                frame,
            })
        }
        b'D' | b'C' if f.body.first() == Some(&b'S') => {
            let (name, _) = cstr(f.body.get(1..).unwrap_or_default())
                .ok_or_else(|| malformed("Describe or Close"))?;
            if name.is_empty() {
                return Ok(Step::Forward(f));
            }
            if f.tag == b'C' {
                // Forgotten here; the server's statement stays for other sessions.
                client
                    .by_name
                    .remove(&String::from_utf8_lossy(name).into_owned());
                return Ok(Step::Forward(statement_message(b'C', CLOSED)));
            }
            let p = known(client, name)?;
            let frame = statement_message(b'D', &server_name(p.id));
            Ok(Step::Uses {
                id: p.id,
                spec: p.spec,
                frame,
            })
        }
        _ => Ok(Step::Forward(f)),
    }
}

fn known(client: &ClientStatements, name: &[u8]) -> Result<Prepared, Refusal> {
    let name = String::from_utf8_lossy(name);
    client.by_name.get(name.as_ref()).cloned().ok_or_else(|| {
        (
            "26000",
            format!("prepared statement \"{name}\" does not exist"),
        )
    })
}

/// Which answers to `Parse` and `Close` the relay drops: one entry per such message sent,
/// in order.
#[derive(Default, Debug)]
pub struct Expect {
    /// Per `Parse` sent: whether the proxy added it, and the statement it prepares.
    parses: VecDeque<(bool, Option<u64>)>,
    /// Per `Close` sent: whether the proxy added it.
    closes: VecDeque<bool>,
    /// Exchanges the proxy sent ahead of the client's (a deferred `BEGIN`): their
    /// messages, up to and including their ReadyForQuery, are dropped.
    skipped: usize,
}

impl Expect {
    /// The answers of one more simple query sent before the client's are dropped.
    pub fn skip_exchange(&mut self) {
        self.skipped += 1;
    }

    /// Whether a server message with `tag` goes on to the client.
    pub fn forward(&mut self, tag: u8) -> bool {
        if self.skipped > 0 {
            if tag == b'Z' {
                self.skipped -= 1;
            }
            return false;
        }
        match tag {
            b'1' => self.parses.pop_front().is_none_or(|(added, _)| !added),
            b'3' => self.closes.pop_front().is_none_or(|added| !added),
            _ => true,
        }
    }

    /// The statements whose `Parse` got no ParseComplete (an error came first): not
    /// prepared on the connection after all.
    pub fn unanswered(&self) -> Vec<u64> {
        self.parses.iter().filter_map(|(_, id)| *id).collect()
    }
}

/// The messages that run `steps` on a connection holding `server`'s statements (updated
/// as if they all succeed; see [`Expect::unanswered`]), and what to drop of the answers.
pub fn materialize(steps: &[Step], server: &mut ServerStatements) -> (BytesMut, Expect) {
    let mut out = BytesMut::new();
    let mut expect = Expect::default();
    let needed: HashSet<u64> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Parse { id, .. } | Step::Uses { id, .. } => Some(*id),
            Step::Forward(_) => None,
        })
        .collect();
    evict(server, &needed, &mut out, &mut expect);
    for step in steps {
        match step {
            Step::Forward(f) => {
                match f.tag {
                    b'P' => expect.parses.push_back((false, None)),
                    b'C' => expect.closes.push_back(false),
                    _ => {}
                }
                f.encode(&mut out);
            }
            Step::Parse { id, spec } => {
                if server.set.contains(id) {
                    statement_message(b'C', &server_name(*id)).encode(&mut out);
                    expect.closes.push_back(true);
                }
                parse_message(*id, spec).encode(&mut out);
                expect.parses.push_back((false, Some(*id)));
                server.insert(*id);
            }
            Step::Uses { id, spec, frame } => {
                if !server.set.contains(id) {
                    parse_message(*id, spec).encode(&mut out);
                    expect.parses.push_back((true, Some(*id)));
                    server.insert(*id);
                }
                frame.encode(&mut out);
            }
        }
    }
    (out, expect)
}

/// Closes the oldest statements not needed now while the connection is at its limit.
fn evict(
    server: &mut ServerStatements,
    needed: &HashSet<u64>,
    out: &mut BytesMut,
    expect: &mut Expect,
) {
    let mut kept = VecDeque::new();
    while server.set.len() + needed.len() > SERVER_LIMIT {
        let Some(old) = server.order.pop_front() else {
            break;
        };
        if needed.contains(&old) {
            kept.push_back(old);
            continue;
        }
        server.set.remove(&old);
        statement_message(b'C', &server_name(old)).encode(out);
        expect.closes.push_back(true);
    }
    while let Some(k) = kept.pop_back() {
        server.order.push_front(k);
    }
}

fn parse_message(id: u64, spec: &[u8]) -> Frame {
    let mut body = BytesMut::new();
    put_cstr(&mut body, server_name(id).as_bytes());
    body.put_slice(spec);
    Frame {
        tag: b'P',
        body: body.freeze(),
    }
}

/// A `Describe` or `Close` of the statement `name`.
fn statement_message(tag: u8, name: &str) -> Frame {
    let mut body = BytesMut::new();
    body.put_u8(b'S');
    put_cstr(&mut body, name.as_bytes());
    Frame {
        tag,
        body: body.freeze(),
    }
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// What a `DEALLOCATE [PREPARE] name | ALL` statement deallocates: `Some(None)` for all,
/// `Some(Some(name))` for one; `None` when `text` is no such statement.
pub fn deallocated(text: &str) -> Option<Option<String>> {
    let start = text.trim_start().get(..10)?;
    if !start.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let words: Vec<&str> = text
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    let rest = match words.as_slice() {
        [first, rest @ ..] if first.eq_ignore_ascii_case("deallocate") => rest,
        _ => return None,
    };
    let rest = match rest {
        [p, rest @ ..] if p.eq_ignore_ascii_case("prepare") => rest,
        _ => rest,
    };
    match rest {
        [all] if all.eq_ignore_ascii_case("all") => Some(None),
        [name] => {
            let quoted = name.len() >= 2 && name.starts_with('"') && name.ends_with('"');
            Some(Some(if quoted {
                name[1..name.len() - 1].replace("\"\"", "\"")
            } else {
                name.to_lowercase()
            }))
        }
        _ => None,
    }
}

/// A NUL-terminated string and what follows it.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|c| *c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

#[cfg(test)]
mod tests;
