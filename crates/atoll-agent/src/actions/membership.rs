//! `cluster.add` and `cluster.remove`, run on the island's master: a member is a physical
//! replication slot named after the node (`atoll_<host>_<port>`) plus an access rule in
//! `pg_hba.conf` tagged with the node's address. Both are idempotent: what exists is
//! kept (add) and what is missing is fine (remove), so both are safe to re-run.

use super::{ActionCtx, ActionError, AddArgs, ErrorCode, RemoveArgs};
use crate::error::AgentError;
use atoll_core::quote;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

/// The replication slot of the member `addr` (its replication name, which is also its WAL
/// receiver's `application_name`).
pub fn slot_for(addr: &str) -> String {
    atoll_core::ha::standby_name(addr)
}

/// The tag ending the access rule of the member `addr`.
fn tag(addr: &str) -> String {
    format!("# atoll-agent member {addr}")
}

/// `pg_hba.conf` with the rule for `addr` first (rules match in order), unless present.
pub fn with_rule(hba: &str, addr: &str, rule: &str) -> Option<String> {
    let tag = tag(addr);
    if hba.lines().any(|l| l.trim_end().ends_with(&tag)) {
        return None;
    }
    Some(format!("{rule} {tag}\n{hba}"))
}

/// `pg_hba.conf` without the rules for `addr`, and how many were removed.
pub fn without_rules(hba: &str, addr: &str) -> (String, usize) {
    let tag = tag(addr);
    let mut removed = 0;
    let mut out = String::with_capacity(hba.len());
    for line in hba.lines() {
        if line.trim_end().ends_with(&tag) {
            removed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, removed)
}

/// A user name as pg_hba.conf takes it.
fn hba_user(user: &str) -> String {
    if user
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        user.to_string()
    } else {
        format!("\"{}\"", user.replace('"', "\"\""))
    }
}

async fn hba_file(ctx: &ActionCtx<'_>, c: &Client) -> Result<PathBuf, ActionError> {
    let row = c
        .query_one("select current_setting('hba_file')", &[])
        .await
        .map_err(|e| AgentError::query(&ctx.ex.cfg.node, e))?;
    Ok(PathBuf::from(row.get::<_, String>(0)))
}

/// Replaces the file (keeping its owner) and reloads the server.
async fn write_hba(
    ctx: &ActionCtx<'_>,
    c: &Client,
    path: &std::path::Path,
    text: &str,
) -> Result<(), ActionError> {
    // A kill -9 mid-write (the kinds that edit it are re-run after a crash) must never
    // leave the server a truncated pg_hba.conf.
    crate::pg_tools::replace_file(path, text)?;
    c.execute("select pg_reload_conf()", &[])
        .await
        .map_err(|e| AgentError::query(&ctx.ex.cfg.node, e))?;
    Ok(())
}

pub(super) async fn add(ctx: &ActionCtx<'_>, a: AddArgs) -> Result<Value, ActionError> {
    let c = ctx.local_master().await?;
    let member = ctx.ex.cfg.island_node(&a.node);
    let user = match (&a.user, &member) {
        (Some(u), _) => u.clone(),
        (None, Some(m)) => m.user.clone(),
        (None, None) => {
            return Err(ActionError::new(
                ErrorCode::UnknownNode,
                format!(
                    "{} is not a node of island {} in atoll.toml; pass args.user",
                    a.node, ctx.ex.cfg.island
                ),
            ))
        }
    };
    let host = a.client_addr.clone().unwrap_or_else(|| {
        a.node
            .rsplit_once(':')
            .map_or(a.node.clone(), |(h, _)| h.to_string())
    });
    let ip: IpAddr = host.parse().map_err(|_| {
        ActionError::new(
            ErrorCode::Failed,
            format!("args.client_addr: {host:?} is not an IP address (pass the address the node connects from)"),
        )
    })?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let slot = slot_for(&a.node);
    ctx.progress(format!("creating replication slot {slot}"))
        .await;
    let created = c
        .execute(
            "select pg_create_physical_replication_slot($1, true)
             where not exists (select 1 from pg_replication_slots where slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|e| AgentError::query(&ctx.ex.cfg.node, e))?
        == 1;
    let path = hba_file(ctx, &c).await?;
    let hba =
        std::fs::read_to_string(&path).map_err(|e| AgentError::io("cannot read", &path, e))?;
    let rule = format!(
        "host replication {} {ip}/{bits} {}",
        hba_user(&user),
        a.auth.as_str()
    );
    let added = match with_rule(&hba, &a.node, &rule) {
        Some(text) => {
            ctx.progress(format!("adding the access rule to {}", path.display()))
                .await;
            write_hba(ctx, &c, &path, &text).await?;
            true
        }
        None => false,
    };
    Ok(json!({
        "node": a.node,
        "slot": slot,
        "slot_created": created,
        "access_rule": rule,
        "access_rule_added": added,
        "hba_file": path.display().to_string(),
    }))
}

pub(super) async fn remove(ctx: &ActionCtx<'_>, a: RemoveArgs) -> Result<Value, ActionError> {
    if a.node == ctx.ex.cfg.node.addr() {
        return Err(ActionError::new(
            ErrorCode::RemoveSelf,
            format!(
                "{} cannot remove itself; run cluster.remove on the master",
                a.node
            ),
        ));
    }
    let c = ctx.local_master().await?;
    let slot = slot_for(&a.node);
    let dropped = drop_slot(ctx, &c, &slot).await?;
    let path = hba_file(ctx, &c).await?;
    let hba =
        std::fs::read_to_string(&path).map_err(|e| AgentError::io("cannot read", &path, e))?;
    let (text, removed) = without_rules(&hba, &a.node);
    if removed > 0 {
        ctx.progress(format!(
            "removing {removed} access rule(s) from {}",
            path.display()
        ))
        .await;
        write_hba(ctx, &c, &path, &text).await?;
    }
    let was_member = dropped || removed > 0;
    let message = if was_member {
        format!("{} removed", a.node)
    } else {
        format!("{} is not a member: nothing to do", a.node)
    };
    Ok(json!({
        "node": a.node,
        "was_member": was_member,
        "slot": slot,
        "slot_dropped": dropped,
        "access_rules_removed": removed,
        "message": message,
    }))
}

/// Drops `slot` if it exists, ending the WAL sender that holds it first.
async fn drop_slot(ctx: &ActionCtx<'_>, c: &Client, slot: &str) -> Result<bool, ActionError> {
    let q = |e| ActionError::from(AgentError::query(&ctx.ex.cfg.node, e));
    for _ in 0..50 {
        let row = c
            .query_opt(
                "select active_pid from pg_replication_slots where slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(q)?;
        let Some(row) = row else { return Ok(false) };
        if let Some(pid) = row.get::<_, Option<i32>>(0) {
            ctx.progress(format!("ending the WAL sender {pid} of slot {slot}"))
                .await;
            c.execute("select pg_terminate_backend($1)", &[&pid])
                .await
                .map_err(q)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        ctx.progress(format!("dropping replication slot {slot}"))
            .await;
        let sql = format!("select pg_drop_replication_slot({})", quote::literal(slot));
        match c.execute(&sql, &[]).await {
            Ok(_) => return Ok(true),
            // Taken again by a reconnecting replica: end it once more.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => continue,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {
                return Ok(false)
            }
            Err(e) => return Err(q(e)),
        }
    }
    Err(ActionError::new(
        ErrorCode::Failed,
        format!("slot {slot} stayed in use: its replica keeps reconnecting; stop it first"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_added_once_and_removed() {
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
        let rule = "host replication postgres 127.0.0.1/32 trust";
        let added = with_rule(hba, "127.0.0.1:5999", rule).unwrap();
        assert!(added.starts_with(rule));
        assert!(with_rule(&added, "127.0.0.1:5999", rule).is_none());
        // Another node's tag is not this one's.
        assert!(with_rule(&added, "127.0.0.1:599", rule).is_some());
        let (back, n) = without_rules(&added, "127.0.0.1:5999");
        assert_eq!((back.as_str(), n), (hba, 1));
        assert_eq!(without_rules(hba, "127.0.0.1:5999").1, 0);
    }

    #[test]
    fn names() {
        assert_eq!(slot_for("127.0.0.1:5432"), "atoll_127_0_0_1_5432");
        assert_eq!(hba_user("postgres"), "postgres");
        assert_eq!(hba_user("App\"x"), "\"App\"\"x\"");
    }
}
