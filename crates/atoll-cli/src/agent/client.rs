//! A small HTTP client of the agent API, for the CLI's commands and `atoll status`.

use crate::exit::Failure;
use atoll_core::{Secret, SecretRef};
use serde_json::Value;
use std::time::Duration;

/// One agent at `addr` (`host:port`), with a token when given.
pub struct AgentClient {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

/// What an agent answered: the status code and the JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl AgentClient {
    pub fn new(addr: &str, token: Option<&str>, timeout: Duration) -> Result<AgentClient, Failure> {
        let token = match token {
            Some(t) => Some(
                t.parse::<SecretRef>()
                    .and_then(|r| r.resolve())
                    .map_err(|e| Failure::input(format!("--token: {e}")))?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::failed(format!("HTTP client: {e}")))?;
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        Ok(AgentClient { base, token, http })
    }

    pub fn addr(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, Failure> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        };
        let res = req
            .send()
            .await
            .map_err(|e| Failure::failed(format!("agent {}: {}", self.base, without_url(&e))))?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| Failure::failed(format!("agent {}: {}", self.base, without_url(&e))))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, Failure> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, Failure> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }
}

fn without_url(e: &reqwest::Error) -> String {
    // The URL holds no secret (the token travels in a header).
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// The error line of a non-2xx answer.
pub fn refusal(addr: &str, a: &Answer) -> Failure {
    let msg = a.body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| a.body.to_string());
    let text = format!("agent {addr}: {} ({})", msg, a.status);
    if (400..500).contains(&a.status) {
        Failure::input(text)
    } else {
        Failure::failed(text)
    }
}
