//! Reading an action's request: the write token first, then a bounded JSON body into the
//! action's type (unknown fields refused); every refusal is one JSON line naming what was
//! wrong (`shard: ...`, `body: ...`), and nothing has been done when it is sent.

use crate::api::{App, Refusal};
use atoll_core::{IslandId, ShardNo, Snapshot};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// The largest body an action takes: a reviewed migration plan of 10,000 shards fits.
pub const BODY_LIMIT: usize = 4 << 20;

/// Who asks: the write token's name and the client's address.
#[derive(Debug, Clone)]
pub struct Who {
    /// The token's name.
    pub actor: String,
    /// The client's address.
    pub remote: String,
}

/// An action's request, extracted: who asks (the token checked first) and its body read
/// as `T`; refused as [`read`] says.
pub struct ActionRequest<T>(pub Who, pub T);

impl<T: DeserializeOwned> axum::extract::FromRequest<App> for ActionRequest<T> {
    type Rejection = Refusal;

    async fn from_request(req: axum::extract::Request, app: &App) -> Result<Self, Refusal> {
        let remote = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
        let (parts, body) = req.into_parts();
        let (who, t) = read(app, remote, &parts.headers, body).await?;
        Ok(ActionRequest(who, t))
    }
}

/// Checks the token, then reads the body as `T`.
async fn read<T: DeserializeOwned>(
    app: &App,
    remote: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Who, T), Refusal> {
    let actor = app.actions.tokens.check(headers).map_err(|d| {
        let (status, message) = d.answer();
        Refusal::new(status, message)
    })?;
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {BODY_LIMIT} bytes"),
        )
    })?;
    let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(&bytes)
    };
    let value = parsed.map_err(|e| bad("body", e))?;
    let who = Who { actor, remote };
    Ok((who, value))
}

/// A 400 answer naming `field`.
pub fn bad(field: &str, why: impl std::fmt::Display) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, format!("{field}: {why}"))
}

/// The answers of every action (`responses(ActionResponses)` in their OpenAPI paths).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes answers for the OpenAPI document; never built.
pub enum ActionResponses {
    /// Accepted: it passed its checks and runs; follow it in `/api/v1/actions`.
    #[response(status = 202)]
    Accepted(crate::actions::run::ActionAnswer),
    /// It already ended, successfully.
    #[response(status = 200)]
    Done(crate::actions::run::ActionAnswer),
    /// A field is wrong (the error names it), or the body is not the action's JSON.
    #[response(status = 400)]
    Bad(crate::api::ErrorBody),
    /// No write token, or not one of the server's.
    #[response(status = 401)]
    Unauthorized(crate::api::ErrorBody),
    /// The server takes no actions (no write token configured), or no migration directory.
    #[response(status = 403)]
    Forbidden(crate::api::ErrorBody),
    /// Refused with nothing changed: a conflicting operation (a move while a migration
    /// runs...), or a plan that changed since it was reviewed.
    #[response(status = 409)]
    Conflict(crate::api::ErrorBody),
    /// The body is larger than 4 MiB.
    #[response(status = 413)]
    TooLarge(crate::api::ErrorBody),
    /// It was tried and failed; the operation's own state says what is left.
    #[response(status = 500)]
    Failed(crate::actions::run::ActionAnswer),
    /// The action log cannot be written, so nothing was done.
    #[response(status = 503)]
    NoLog(crate::api::ErrorBody),
}

/// A shard given as a number (`42`) or a schema name (`"sh0042"`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ShardArg {
    /// `42`.
    Number(i64),
    /// `"sh0042"` or `"42"`.
    Text(String),
}

impl ShardArg {
    /// The shard, which must be in `s`; the error names the field `shard`.
    pub fn known(&self, s: &Snapshot) -> Result<ShardNo, Refusal> {
        let n = match self {
            ShardArg::Number(n) => ShardNo::new(*n).map_err(|e| bad("shard", e))?,
            ShardArg::Text(t) => t.trim().parse().map_err(|e| bad("shard", e))?,
        };
        if !s.shards.contains_key(&n) {
            return Err(bad("shard", format!("{n} is not in the cluster")));
        }
        Ok(n)
    }
}

/// `island`, which must be configured; the error names `field`.
pub fn known_island(s: &Snapshot, field: &str, island: u16) -> Result<IslandId, Refusal> {
    let id = IslandId(island);
    match s.island(id) {
        Some(_) => Ok(id),
        None => Err(bad(field, format!("island {island} is not in the config"))),
    }
}

/// Refuses unless `given` is `expected` (what the operator confirms: a schema name or a
/// plan's digest, `what` says which).
pub fn confirmed(given: &str, expected: &str, what: &str) -> Result<(), Refusal> {
    if given == expected {
        Ok(())
    } else {
        Err(bad(
            "confirm",
            format!("must be {expected:?} ({what}) to go ahead"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_numbers_or_schemas_and_must_exist() {
        let s = crate::testdata::snapshot(3);
        for ok in [
            ShardArg::Number(2),
            ShardArg::Text("sh0002".into()),
            ShardArg::Text(" 2".into()),
        ] {
            assert_eq!(ok.known(&s).unwrap().get(), 2, "{ok:?}");
        }
        for bad in [
            ShardArg::Number(9),
            ShardArg::Number(-1),
            ShardArg::Number(10_000),
            ShardArg::Text("x".into()),
        ] {
            let r = bad.known(&s).unwrap_err();
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(r.message.starts_with("shard: "), "{}", r.message);
        }
        assert!(known_island(&s, "to", 0).is_ok());
        assert_eq!(
            known_island(&s, "to", 7).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert!(confirmed("sh0002", "sh0002", "the schema").is_ok());
        assert!(confirmed("yes", "sh0002", "the schema").is_err());
    }
}
