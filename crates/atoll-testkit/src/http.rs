//! A plain HTTP/1.0 client for tests of the servers' HTTP endpoints (`/metrics`, APIs):
//! no proxy settings, no dependencies, loopback only.

use std::io::{Read, Write};

/// `GET path` from `addr` (`host:port`): the status line and the body.
pub fn get(addr: &str, path: &str) -> anyhow::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}
