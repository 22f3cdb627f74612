//! `atoll proxy` against bad input on raw sockets: startup packets that are malformed,
//! oversized or carry unknown parameters, SSL and GSS negotiation, an oversized or unknown
//! message after login, a client that vanishes inside a transaction; and the limits
//! (`--max-clients`, `--user-pool-size`) refusing clearly. After each the proxy
//! keeps serving, and a vanished client's transaction is gone (its connection closed, not
//! pooled: nothing of it is visible and no connection stays leased).

mod proxy_kit;

use anyhow::{ensure, Result};
use atoll_testkit::TestCluster;
use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use proxy_kit::{Proxied, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one message: its type and body.
async fn read(s: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let tag = s.read_u8().await?;
    let len = s.read_i32().await? as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await?;
    Ok((tag, body))
}

/// Reads until ReadyForQuery: the types seen.
async fn until_ready(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut tags = Vec::new();
    loop {
        let (tag, _) = read(s).await?;
        tags.push(tag);
        if tag == b'Z' {
            return Ok(tags);
        }
    }
}

fn startup(params: &[(&str, &str)]) -> BytesMut {
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out).unwrap();
    out
}

/// Logs in as `app` over SCRAM-SHA-256 with extra startup parameters.
async fn login(port: u16, extra: &[(&str, &str)]) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut params = vec![("user", "app"), ("database", "postgres")];
    params.extend_from_slice(extra);
    s.write_all(&startup(&params)).await?;
    let (tag, _) = read(&mut s).await?;
    ensure!(tag == b'R', "no authentication request");
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)?;
    s.write_all(&out).await?;
    let (_, body) = read(&mut s).await?;
    scram.update(&body[4..])?;
    out.clear();
    frontend::sasl_response(scram.message(), &mut out)?;
    s.write_all(&out).await?;
    let (_, body) = read(&mut s).await?;
    scram.finish(&body[4..])?;
    let tags = until_ready(&mut s).await?;
    ensure!(tags.contains(&b'K'), "no BackendKeyData: {tags:?}");
    Ok(s)
}

async fn query(s: &mut TcpStream, sql: &str) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out)?;
    s.write_all(&out).await?;
    until_ready(s).await
}

/// The proxy closed the connection (after at most one message, e.g. a FATAL error).
async fn closed(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await,
        Ok(Ok(_))
    )
}

fn still_serving(p: &Proxied) {
    assert_eq!(p.ok(&["select 1"]), "1");
}

#[test]
fn bad_input_leaves_the_proxy_serving() -> Result<()> {
    let tc = TestCluster::setup(1, 0).shards(0..=1).start_blocking()?;
    tc.psql(
        tc.master_ports()[0],
        "create table sh0001.t (id int primary key)",
    );
    let p = proxy_kit::start(&tc, &["--pool-size", "4"])?;
    let port = p.port;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Startup packets: too short, oversized, an unknown protocol version.
        for raw in [
            vec![0, 0, 0, 3],
            vec![0x7f, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 8, 0, 9, 0, 0],
        ] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(&raw).await?;
            ensure!(closed(&mut s).await, "{raw:?} left the connection open");
            still_serving(&p);
        }
        // SSL and GSS requests are declined ('N') and the startup goes on in plain text;
        // unknown startup parameters are ignored.
        for code in [80877103i32, 80877104] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
            let mut out = BytesMut::new();
            out.put_i32(8);
            out.put_i32(code);
            s.write_all(&out).await?;
            ensure!(s.read_u8().await? == b'N', "request {code} not declined");
        }
        let mut s = login(port, &[("no_such_parameter", "x"), ("options", "-c a=b")]).await?;
        ensure!(query(&mut s, "select 1").await? == [b'T', b'D', b'C', b'Z']);

        // After login: an unknown message type, then an oversized one: each ends that
        // session only.
        let mut out = BytesMut::new();
        out.put_u8(b'?');
        out.put_i32(4);
        s.write_all(&out).await?;
        ensure!(
            closed(&mut s).await,
            "unknown message left the session open"
        );
        let mut s = login(port, &[]).await?;
        let mut out = BytesMut::new();
        out.put_u8(b'Q');
        out.put_i32(i32::MAX);
        out.put_slice(b"select 1");
        s.write_all(&out).await?;
        drop(s);
        still_serving(&p);

        // A client vanishes inside a transaction: its row is never seen, its connection
        // is not pooled.
        let mut s = login(port, &[]).await?;
        query(&mut s, "begin").await?;
        let tags = query(&mut s, "insert into sh0001.t values (1)").await?;
        ensure!(tags == [b'C', b'Z'], "{tags:?}");
        drop(s);
        atoll_testkit::wait::poll_until(
            "no connection is leased",
            std::time::Duration::from_secs(10),
            || {
                let out = p.psql_db(PASSWORD, "app", "atoll", &["show atoll.pools"]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.lines().all(|l| l.split('|').nth(1) == Some("0"))
            },
        );
        let n = p.ok(&["select count(*) from sh0001.t"]);
        ensure!(n == "0", "the vanished client's row is visible: {n}");

        // A database the proxy does not serve: named, after the password; a wrong
        // password says nothing about databases.
        let out = p.psql_db(PASSWORD, "app", "nosuch", &["select 1"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            !out.status.success() && err.contains("database \"nosuch\" does not exist"),
            "{err}"
        );
        let out = p.psql_db("wrong", "app", "nosuch", &["select 1"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            err.contains("password authentication failed") && !err.contains("nosuch"),
            "{err}"
        );
        still_serving(&p);
        Ok(())
    })?;
    assert_eq!(p.server.terminate()?, Some(0));

    // Limits: two clients at most, one server connection per user.
    let limited = proxy_kit::start(
        &tc,
        &[
            "--max-clients",
            "2",
            "--user-pool-size",
            "1",
            "--connect-timeout-ms",
            "500",
        ],
    )?;
    let port = limited.port;
    rt.block_on(async {
        let mut a = login(port, &[]).await?;
        query(&mut a, "begin").await?;
        query(&mut a, "insert into sh0001.t values (7)").await?;
        let mut b = login(port, &[]).await?;
        let third = limited.psql(PASSWORD, "app", &["select 1"]);
        let err = String::from_utf8_lossy(&third.stderr).into_owned();
        ensure!(err.contains("too many clients"), "a third client: {err}");
        // b waits for the user's one connection, then gets a clear error.
        let tags = query(&mut b, "select 1").await?;
        ensure!(tags == [b'E', b'Z'], "{tags:?}");
        query(&mut a, "commit").await?;
        let tags = query(&mut b, "select count(*) from sh0001.t").await?;
        ensure!(tags == [b'T', b'D', b'C', b'Z'], "{tags:?}");
        Ok(())
    })?;
    assert_eq!(limited.server.terminate()?, Some(0));
    Ok(())
}
