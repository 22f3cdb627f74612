//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the answers' types; served at `/api/v1/openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the file equal to what the code generates).

use crate::actions::{migrate, moves, rebalance, request, run};
use crate::{api, overview};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "atoll control plane",
        description = "The cluster's state (islands, nodes, shards, moves, migration runs, the action log) and the actions an operator takes on it. Reads are open; actions need a write token (Authorization: Bearer) and a confirmation in their body, and are recorded in the action log. Errors are {\"error\": \"field: why\"}. See docs/api.md.",
        license(name = "Apache-2.0")
    ),
    paths(
        api::cluster, api::islands, api::shards, api::moves, api::snapshot, api::overview_json,
        api::locate, api::migrations, api::leases, api::openapi, crate::events::events, run::list,
        moves::start, moves::resume, moves::abort, rebalance::plan, rebalance::start,
        migrate::plan, migrate::apply,
    ),
    components(schemas(
        api::ErrorBody, overview::TileState, run::LiveAction, run::ActionAnswer, request::ShardArg,
    )),
    modifiers(&WriteToken),
    tags(
        (name = "read", description = "The cluster as last read; no request reads an island."),
        (name = "actions", description = "Changes, each with a write token, a confirmation and an entry in the action log."),
    )
)]
struct ApiDoc;

/// Declares the bearer token the actions need.
struct WriteToken;

impl Modify for WriteToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("write_token", SecurityScheme::Http(scheme));
    }
}

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
        format!("{{\"error\": \"the OpenAPI document does not serialise: {e}\"}}")
    })
}

#[cfg(test)]
mod tests {
    /// `docs/openapi.json` is what the code generates; `ATOLL_WRITE_OPENAPI=1` rewrites it.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let doc = super::document();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        if std::env::var_os("ATOLL_WRITE_OPENAPI").is_some() {
            std::fs::write(path, format!("{doc}\n")).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        // The first differing line, not two whole documents.
        let differs = committed
            .lines()
            .zip(doc.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: committed {a:?}, generated {b:?}", i + 1));
        assert!(
            differs.is_none() && committed.trim_end().lines().count() == doc.lines().count(),
            "docs/openapi.json is stale ({}): ATOLL_WRITE_OPENAPI=1 cargo test -p atoll-serve openapi",
            differs.unwrap_or_else(|| "a different length".into())
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        for path in [
            "/api/v1/cluster",
            "/api/v1/actions/move",
            "/api/v1/actions/migrate/apply",
        ] {
            assert!(v["paths"][path].is_object(), "{path} missing");
        }
        assert!(v["components"]["securitySchemes"]["write_token"].is_object());
    }
}
