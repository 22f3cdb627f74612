//! TLS on both sides of `atoll proxy`: a `--tls` sandbox (its nodes refuse plain TCP,
//! `sslmode = "verify-full"` in atoll.toml) and a proxy offering TLS to clients with a
//! certificate from the same CA, refusing plain-text clients. psql verifies the proxy's
//! certificate; the node sees the proxy's session encrypted; a plain-text client is
//! refused with a message saying what to do; a bad certificate path is refused at start.

mod proxy_kit;

use anyhow::Result;
use atoll_testkit::cli::{stderr, Cli};
use atoll_testkit::TestCluster;
use proxy_kit::PASSWORD;

#[test]
fn tls_to_clients_and_to_the_nodes() -> Result<()> {
    let tc = TestCluster::setup(1, 0)
        .shards(0..=1)
        .tls()
        .start_blocking()?;
    let tls = tc.sandbox().dir().join("tls");
    let (cert, key, ca) = (
        tls.join("server.crt"),
        tls.join("server.key"),
        tls.join("ca.crt"),
    );
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let p = proxy_kit::start(
        &tc,
        &["--tls-cert", &cert_s, "--tls-key", &key_s, "--require-tls"],
    )?;
    let psql = |sslmode: &str, sql: &str| {
        std::process::Command::new("psql")
            .env("PGPASSWORD", PASSWORD)
            .args(["-X", "-A", "-t", "-q", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} user=app dbname=postgres sslmode={sslmode} sslrootcert={}",
                p.port,
                ca.display()
            ))
            .output()
            .expect("psql")
    };
    // The client verifies the proxy; the node's view: this session is encrypted too.
    let out = psql(
        "verify-full",
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    let out = psql(
        "require",
        "select 1 from sh0001.pg_class_none union all select 2",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("sh0001.pg_class_none"), "{err}");

    // Plain text refused, saying what to do.
    let out = psql("disable", "select 1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("accepts TLS connections only"), "{err}");
    assert_eq!(p.server.terminate()?, Some(0));

    // A certificate that is not there: refused before anything starts, naming the flag.
    let atoll = Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    let missing = tls.join("nope.crt").display().to_string();
    let out = atoll
        .command()
        .env("APP_PW", PASSWORD)
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "app=env:APP_PW",
        ])
        .args(["--tls-cert", &missing, "--tls-key", &key_s])
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tls-cert"), "{}", stderr(&out));
    Ok(())
}
