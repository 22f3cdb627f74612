//! A pooled connection that died while idle, with the statement already cached: the
//! attempt must say "provably not run" (nothing was sent), not "connection lost". The
//! server is a few lines of the PostgreSQL wire protocol, so no database is needed: it
//! accepts the startup, answers one Parse/Describe/Sync (so the statement gets cached), then
//! closes the socket like a restarting master.

use crate::attempt::{run, FaultKind};
use atoll_core::IslandId;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_frame(sock: &mut TcpStream) -> std::io::Result<u8> {
    let tag = sock.read_u8().await?;
    let len = sock.read_u32().await? as usize;
    let mut body = vec![0; len - 4];
    sock.read_exact(&mut body).await?;
    Ok(tag)
}

/// Serves one connection: startup, one prepared statement, then hangs up.
async fn fake_server(listener: TcpListener) -> std::io::Result<()> {
    let (mut sock, _) = listener.accept().await?;
    let len = sock.read_u32().await? as usize; // startup message: no tag
    let mut body = vec![0; len - 4];
    sock.read_exact(&mut body).await?;
    // AuthenticationOk, ReadyForQuery(idle).
    sock.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'Z', 0, 0, 0, 5, b'I'])
        .await?;
    while read_frame(&mut sock).await? != b'S' {}
    // ParseComplete, ParameterDescription (no parameters), NoData, ReadyForQuery.
    sock.write_all(&[
        b'1', 0, 0, 0, 4, b't', 0, 0, 0, 6, 0, 0, b'n', 0, 0, 0, 4, b'Z', 0, 0, 0, 5, b'I',
    ])
    .await?;
    sock.flush().await?;
    Ok(()) // dropping the socket closes the connection
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_provably_not_run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_server(listener));
    let mut pg = tokio_postgres::Config::new();
    pg.host("127.0.0.1").port(port).user("u").dbname("d");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let client = pool.get().await.unwrap();
    let sql = "insert into t values (1)";
    client.prepare_cached(sql).await.unwrap();
    server.await.unwrap().unwrap();
    for _ in 0..200 {
        if client.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(client.is_closed(), "the driver did not notice the hang-up");
    let f = run(&client, IslandId(0), "127.0.0.1:1", sql, &[])
        .await
        .expect_err("a closed connection cannot run anything");
    assert!(
        matches!(f.fault, FaultKind::ConnectFailed),
        "classified as {:?}: {}",
        f.fault(),
        f.msg
    );
}
