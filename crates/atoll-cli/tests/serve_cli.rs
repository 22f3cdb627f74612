//! `atoll serve` as a process against a real sandbox: it prints where it listens
//! (`--json`), answers the API (a bad `q` is a 400 naming the field), exits 0 on SIGTERM;
//! bad flags are refused with exit 2 before anything starts: a write token given as plain
//! text (never echoed), one whose variable is unset, a migration directory that is not one.

use anyhow::Result;
use atoll_testkit::{cli, TestCluster};

use atoll_testkit::http::get;

#[test]
fn serve_prints_its_address_answers_and_stops_on_sigterm() -> Result<()> {
    let cluster = TestCluster::setup(1, 0).shards(1..=3).start_blocking()?;
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), cluster.config_path());

    for bad in [
        &["serve", "--listen", "nowhere"][..],
        &["serve", "--period-ms", "10"][..],
    ] {
        let out = atoll.run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", cli::stderr(&out));
    }
    for (bad, says) in [
        (
            &["serve", "--write-token", "hunter2hunter2hunter2"][..],
            "not plain text",
        ),
        (
            &["serve", "--write-token", "ops=env:ATOLL_SERVE_CLI_UNSET"][..],
            "not set",
        ),
        (
            &["serve", "--migrations", "/nonexistent/atoll-migrations"][..],
            "migration directory",
        ),
    ] {
        let out = atoll.run(bad);
        let err = cli::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?}: {err}");
        assert!(!err.contains("hunter2"), "the token is not echoed: {err}");
    }

    let (server, v) = atoll.spawn_server(&["--json", "serve", "--listen", "127.0.0.1:0"])?;
    let addr = v["listen"].as_str().unwrap().to_string();

    let (status, body) = get(&addr, "/api/v1/cluster")?;
    assert!(status.contains("200"), "{status}");
    let c: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(c["shards_active"], 3, "{c}");
    let (status, body) = get(&addr, "/api/v1/locate?q=sh99")?;
    assert!(status.contains("400"), "{status}");
    assert!(body.contains("\"error\":\"q: "), "{body}");
    let (status, body) = get(&addr, "/")?;
    assert!(status.contains("200") && body.contains("<title>atoll console</title>"));

    assert_eq!(server.terminate()?, Some(0));
    Ok(())
}
