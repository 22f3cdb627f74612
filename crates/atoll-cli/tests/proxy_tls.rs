//! TLS on both sides of `atoll proxy`: a `--tls` sandbox (its nodes refuse plain TCP,
//! `sslmode = "verify-full"` in atoll.toml) and a proxy offering TLS to clients with a
//! certificate from the same CA, refusing plain-text clients, all set in atoll.toml's
//! `[proxy]` section. psql verifies the proxy's
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
    let (key, ca) = (tls.join("server.key"), tls.join("ca.crt"));
    let key_s = key.display().to_string();
    // Everything from atoll.toml's [proxy] section (relative paths from its directory).
    let pw = tc.sandbox().dir().join("app.pw");
    std::fs::write(&pw, PASSWORD)?;
    let config = tc.sandbox().dir().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[proxy]\nusers = {{ app = \"file:{}\" }}\ntls_cert = \"tls/server.crt\"\ntls_key = \"tls/server.key\"\nrequire_tls = true\nmetrics = \"127.0.0.1:0\"\n",
            std::fs::read_to_string(tc.config_path())?,
            pw.display()
        ),
    )?;
    let atoll = Cli::new(env!("CARGO_BIN_EXE_atoll"), config.clone());
    let (server, v) = atoll.spawn_server(&["--json", "proxy", "--listen", "127.0.0.1:0"])?;
    let port: u16 = v["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()?;
    assert!(v["metrics"].as_str().is_some(), "{v}");
    let p = proxy_kit::Proxied {
        server,
        port,
        metrics: v["metrics"].as_str().unwrap().to_string(),
    };
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
