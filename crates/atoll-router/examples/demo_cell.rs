//! A tiny application cell for trying `atoll router` (see docs/router.md):
//!
//! ```text
//! cargo run -p atoll-router --example demo_cell -- --name eu0 --listen 127.0.0.1:9001 \
//!     --owns acme,globex --peer eu1=initech [--env-digit 1]
//! ```
//!
//! It serves `/t/<tenant>/...` for the tenants it owns; for a peer's tenant it answers
//! `307` with `X-Atoll-Cell-Redirect: <peer>` and `X-Atoll-Cell-Cache: /t/<tenant>/* =>
//! <peer>; ttl=300`, so the router re-sends and learns; unknown tenants get a 404 with
//! `/t/<tenant>/* => none`. `/o/<id>` (routed by the router's ID rule) is answered with the
//! ID's shard; `/healthz` is the probe.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::sync::Arc;

struct Cell {
    name: String,
    /// The cluster's environment digit (`--env-digit`, default 1): an ID of another
    /// environment is refused, as the router's ID rule would.
    env_digit: u8,
    owns: Vec<String>,
    peers: HashMap<String, String>,
}

fn args() -> Result<(Cell, String), String> {
    let mut cell = Cell {
        name: "eu0".into(),
        env_digit: 1,
        owns: Vec::new(),
        peers: HashMap::new(),
    };
    let mut listen = "127.0.0.1:9001".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => cell.name = value,
            "--listen" => listen = value,
            "--env-digit" => {
                cell.env_digit = value
                    .parse()
                    .ok()
                    .filter(|d| *d <= 9)
                    .ok_or(format!("--env-digit {value}: a digit 0-9"))?
            }
            "--owns" => cell.owns = value.split(',').map(str::to_string).collect(),
            "--peer" => {
                let (peer, tenants) = value.split_once('=').ok_or("--peer CELL=tenant,tenant")?;
                for t in tenants.split(',') {
                    cell.peers.insert(t.to_string(), peer.to_string());
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok((cell, listen))
}

fn answer(cell: &Cell, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mut parts = path.split('/').skip(1);
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    match (parts.next(), parts.next()) {
        (Some("healthz"), _) => text(StatusCode::OK, "ok\n".into()),
        (Some("o"), Some(id)) => match atoll_router::rules::shard_of_id(id, cell.env_digit) {
            Ok(shard) => text(
                StatusCode::OK,
                format!("cell {} serves object {id} ({shard})\n", cell.name),
            ),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        (Some("t"), Some(tenant)) if cell.owns.iter().any(|t| t == tenant) => text(
            StatusCode::OK,
            format!("cell {} serves {path}\n", cell.name),
        ),
        (Some("t"), Some(tenant)) => {
            let mut r;
            match cell.peers.get(tenant) {
                Some(peer) => {
                    r = text(
                        StatusCode::TEMPORARY_REDIRECT,
                        format!("{tenant} lives in cell {peer}\n"),
                    );
                    let h = r.headers_mut();
                    h.insert(
                        "x-atoll-cell-redirect",
                        peer.parse()
                            .unwrap_or(http::HeaderValue::from_static("invalid")),
                    );
                    if let Ok(v) = format!("/t/{tenant}/* => {peer}; ttl=300").parse() {
                        h.insert("x-atoll-cell-cache", v);
                    }
                }
                None => {
                    r = text(StatusCode::NOT_FOUND, format!("no tenant {tenant}\n"));
                    if let Ok(v) = format!("/t/{tenant}/* => none; ttl=30").parse() {
                        r.headers_mut().insert("x-atoll-cell-cache", v);
                    }
                }
            }
            r
        }
        _ => text(
            StatusCode::OK,
            format!("cell {} (the default) serves {path}\n", cell.name),
        ),
    }
}

#[tokio::main]
async fn main() {
    let (cell, listen) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo_cell: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo_cell: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("demo cell {} on {listen}", cell.name);
    let cell = Arc::new(cell);
    while let Ok((stream, _)) = listener.accept().await {
        let cell = cell.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = answer(&cell, &req);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
