//! Test cells, a client and router setup.

use anyhow::{Context, Result};
use atoll_router::{RouterConfig, RouterHandle};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// A request a cell received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type Behavior = Arc<dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync>;

/// A cell: a hyper server on a loopback port that records what it receives.
pub struct TestCell {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestCell {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A 307 to `cell`, teaching `cache` when given.
pub fn redirect(cell: &str, cache: Option<&str>) -> Response<Full<Bytes>> {
    let mut r = reply(307, "elsewhere");
    r.headers_mut()
        .insert("x-atoll-cell-redirect", cell.parse().unwrap());
    if let Some(c) = cache {
        r.headers_mut()
            .insert("x-atoll-cell-cache", c.parse().unwrap());
    }
    r
}

impl TestCell {
    pub async fn start(name: &str, behavior: Behavior) -> Result<TestCell> {
        TestCell::start_on("127.0.0.1:0".parse()?, name, behavior).await
    }

    /// A cell listening on `addr` (port 0: any free port).
    pub async fn start_on(addr: SocketAddr, name: &str, behavior: Behavior) -> Result<TestCell> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (s, name) = (seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, b, name) = (s.clone(), behavior.clone(), name.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, b, name) = (s.clone(), b.clone(), name.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            if parts.uri.path().starts_with("/slow") {
                                tokio::time::sleep(Duration::from_millis(600)).await;
                            }
                            let seen = Seen {
                                method: parts.method,
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let mut r = if seen.path == "/healthz" {
                                reply(200, "ok")
                            } else {
                                b(&seen)
                            };
                            r.headers_mut().insert("x-served-by", name.parse().unwrap());
                            if seen.path != "/healthz" {
                                s.lock().unwrap().push(seen);
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(TestCell { addr, seen, task })
    }

    /// Requests received, health probes not counted.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// An answering cell that says who it is.
pub fn ok_cell() -> Behavior {
    Arc::new(|s: &Seen| reply(200, &format!("{} {}", s.method, s.path)))
}

/// A router config file in a temp dir (removed on drop) and the running router.
pub struct TestRouter {
    pub handle: Option<RouterHandle>,
    pub path: PathBuf,
    dir: PathBuf,
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestRouter {
    pub async fn start(toml: &str) -> Result<TestRouter> {
        let dir = std::env::temp_dir().join(format!(
            "atoll-router-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("router.toml");
        std::fs::write(&path, toml)?;
        let config = RouterConfig::from_file(&path)?;
        let handle = atoll_router::start(config)
            .await
            .context("start the router")?;
        Ok(TestRouter {
            handle: Some(handle),
            path,
            dir,
        })
    }

    pub fn h(&self) -> &RouterHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.h().addr)
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.h().admin_addr.unwrap());
        get(&url, &[]).await.unwrap().1
    }

    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// The value of metric `line_start` (the text before the value).
pub fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(Response<()>, String)> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client().request(b.body(Full::new(body))?),
    )
    .await
    .context("router answer timed out")??;
    let (parts, body) = resp.into_parts();
    let text = String::from_utf8_lossy(&body.collect().await?.to_bytes()).to_string();
    Ok((Response::from_parts(parts, ()), text))
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<(Response<()>, String)> {
    send("GET", url, headers, Bytes::new()).await
}

/// `[[cell]]` lines for `cells` as (name, addrs, islands).
pub fn cells_toml(cells: &[(&str, Vec<SocketAddr>, &[u16])]) -> String {
    let mut s = String::new();
    for (name, addrs, islands) in cells {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        s.push_str(&format!(
            "[[cell]]\nname = \"{name}\"\naddrs = [{}]\nislands = {:?}\n",
            addrs.join(", "),
            islands
        ));
    }
    s
}

pub fn header_str(r: &Response<()>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
