//! Tests of config parsing: both sources, and that every error names field and line.

use crate::{Config, ConfigError, ConfigSource, SecretRef};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, ConfigSource::File("atoll.toml".into()))
}

const GOOD: &str = r#"
[cluster]
name = "prod"
env_digit = 3

[defaults]
user = "app"
password = "env:APP_PW"

[[island]]
id = 1
nodes = [
  { host = "10.0.0.2", port = 5432, database = "app" },
]

[[island]]
id = 0
nodes = [
  { host = "127.0.0.1", port = 54320 },
  { host = "127.0.0.1", port = 54321, user = "other", password = "file:/run/pw" },
]
"#;

#[test]
fn parses_a_full_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.name, "prod");
    assert_eq!(c.env_digit, 3);
    assert_eq!(c.islands.len(), 2);
    assert_eq!(c.islands[0].id.0, 0, "islands are sorted");
    let n = &c.islands[0].nodes[1];
    assert_eq!(n.user, "other");
    assert_eq!(n.database, "postgres");
    assert_eq!(n.password, Some(SecretRef::File("/run/pw".into())));
    assert_eq!(c.islands[1].nodes[0].user, "app");
    assert_eq!(
        c.islands[1].nodes[0].password,
        Some(SecretRef::Env("APP_PW".into()))
    );
}

#[test]
fn a_node_is_found_by_its_address() {
    let c = parse(GOOD).unwrap();
    let n = &c.islands[0].nodes[1];
    assert!(n.has_addr(&n.addr()));
    for other in [
        "127.0.0.1:54320",
        "127.0.0.1:5432",
        "127.0.0.2:54321",
        "54321",
        "",
    ] {
        assert!(!n.has_addr(other), "{other}");
    }
}

fn err_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_field_names_field_and_line() {
    let e = err_of("[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 1 }]\ncolour = 1\n");
    assert!(e.starts_with("atoll.toml:"), "{e}");
    assert!(e.contains("colour"), "{e}");
    let e = err_of("[[island]]\nid = 0\nnodes = [{ host = \"h\", prot = 1 }]\n");
    assert!(e.contains("atoll.toml:3:"), "{e}");
    assert!(e.contains("prot"), "{e}");
}

#[test]
fn duplicate_island_names_both_lines() {
    let e = err_of(
        "[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1 }]\n[[island]]\nid = 0\nnodes = [{ host = \"b\", port = 1 }]\n",
    );
    assert_eq!(
        e,
        "atoll.toml:5: island 0 is configured twice (first at line 2)"
    );
}

#[test]
fn duplicate_node_is_refused() {
    let e = err_of(
        "[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1 }]\n[[island]]\nid = 1\nnodes = [{ host = \"a\", port = 1 }]\n",
    );
    assert!(
        e.contains("atoll.toml:6: island 1: node a:1 is configured twice (first at line 3)"),
        "{e}"
    );
}

#[test]
fn bad_values_are_refused() {
    let e = err_of("[[island]]\nid = 0\nnodes = [{ host = \"a b\", port = 1 }]\n");
    assert!(e.contains("atoll.toml:3:") && e.contains("host"), "{e}");
    let e = err_of("[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 70000 }]\n");
    assert!(e.contains("port 70000"), "{e}");
    let e = err_of(
        "[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1, password = \"hunter2\" }]\n",
    );
    assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
    let e = err_of("[[island]]\nid = 10000\nnodes = [{ host = \"a\", port = 1 }]\n");
    assert!(
        e.contains("atoll.toml:2:") && e.contains("island.id"),
        "{e}"
    );
    let e = err_of("[[island]]\nid = 0\nnodes = []\n");
    assert!(e.contains("no nodes"), "{e}");
    let e = err_of("[cluster]\nname = \"x\"\n");
    assert!(e.contains("no [[island]]"), "{e}");
    let e = err_of(
        "[cluster]\nenv_digit = 9\n[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1 }]\n",
    );
    assert!(
        e.contains("atoll.toml:2:") && e.contains("env_digit"),
        "{e}"
    );
}

#[test]
fn islands_env() {
    let c = Config::from_islands_env("0=127.0.0.1:5432,app@h2:5433/db; 1=h3:1").unwrap();
    assert_eq!(c.islands.len(), 2);
    assert_eq!(c.islands[0].nodes[1].to_string(), "app@h2:5433/db");
    assert_eq!(c.islands[1].nodes[0].to_string(), "postgres@h3:1/postgres");
    assert_eq!(c.islands[0].nodes[0].tls, crate::TlsConfig::default());
    let c = Config::from_islands_env("0=h:1/db?sslmode=verify-full&sslrootcert=/ca.crt").unwrap();
    let node = &c.islands[0].nodes[0];
    assert_eq!(node.database, "db");
    assert_eq!(node.tls.mode, crate::SslMode::VerifyFull);
    assert_eq!(
        node.tls.root_cert.as_deref(),
        Some(std::path::Path::new("/ca.crt"))
    );
    for (bad, what) in [
        ("0=h:5432;0=h:5433", "listed twice"),
        ("0=h", "missing port"),
        ("0=h:0", "port"),
        ("x=h:1", "not a number"),
        ("0=h:1,h:1", "listed twice"),
        ("", "no island"),
        ("0=@h:1", "empty user"),
        ("0=h:1?sslmode=verify-ca", "needs sslrootcert"),
        ("0=h:1?sslmode=fast", "is not one of"),
        ("0=h:1?sslmode=require&sslmode=disable", "given twice"),
        ("0=h:1?password=x", "unknown key \"password\""),
        ("0=h:1?sslmode", "not KEY=VALUE"),
    ] {
        let e = Config::from_islands_env(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("ATOLL_ISLANDS") && e.contains(what),
            "{bad}: {e}"
        );
    }
}

const TLS: &str = r#"
[defaults]
sslmode = "verify-full"
sslrootcert = "certs/ca.crt"

[[island]]
id = 0
nodes = [
  { host = "127.0.0.1", port = 1 },
  { host = "127.0.0.1", port = 2, sslmode = "require", sslrootcert = "/abs/other.crt" },
  { host = "127.0.0.1", port = 3, sslmode = "disable" },
]
"#;

#[test]
fn tls_settings_come_from_the_node_then_defaults() {
    use crate::SslMode;
    let c = Config::parse(TLS, ConfigSource::File("/etc/atoll/atoll.toml".into())).unwrap();
    let n = &c.islands[0].nodes;
    assert_eq!(n[0].tls.mode, SslMode::VerifyFull);
    // Relative to the config file's directory.
    assert_eq!(
        n[0].tls.root_cert.as_deref(),
        Some(std::path::Path::new("/etc/atoll/certs/ca.crt"))
    );
    assert_eq!(n[1].tls.mode, SslMode::Require);
    assert_eq!(
        n[1].tls.root_cert.as_deref(),
        Some(std::path::Path::new("/abs/other.crt"))
    );
    assert_eq!(n[2].tls.mode, SslMode::Disable);
    // Display is unchanged by TLS settings.
    assert_eq!(n[0].to_string(), "postgres@127.0.0.1:1/postgres");
    // Next to a file named without a directory: absolute all the same.
    let here = Config::parse(TLS, ConfigSource::File("atoll.toml".into())).unwrap();
    let ca = here.islands[0].nodes[0].tls.root_cert.clone().unwrap();
    assert!(ca.is_absolute() && ca.ends_with("certs/ca.crt"), "{ca:?}");
    // No setting: disable, no CA.
    let plain = parse("[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1 }]\n").unwrap();
    assert_eq!(plain.islands[0].nodes[0].tls, crate::TlsConfig::default());
}

#[test]
fn tls_errors_are_one_line_naming_key_and_line() {
    let island = "[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1 }]\n";
    // A verifying default without a CA file.
    let e = parse(&format!("[defaults]\nsslmode = \"verify-ca\"\n{island}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("atoll.toml:2: defaults.sslmode = \"verify-ca\" needs sslrootcert"),
        "{e}"
    );
    // On a node.
    let e = parse("[[island]]\nid = 0\nnodes = [\n { host = \"a\", port = 1, sslmode = \"verify-full\" },\n]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "atoll.toml:4: island 0: node a:1: sslmode = \"verify-full\" needs sslrootcert"
        ),
        "{e}"
    );
    // An unknown mode lists the valid ones.
    let e = parse(&format!("[defaults]\nsslmode = \"on\"\n{island}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "sslmode = \"on\" is not one of disable, prefer, require, verify-ca, verify-full"
        ),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let e = parse("[[island]]\nid = 0\nnodes = [{ host = \"a\", port = 1, sslmode = \"yes\" }]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("island 0: node a:1: sslmode = \"yes\""), "{e}");
}

#[test]
fn endpoints_name_a_keychain_relative_to_the_config_file() {
    let text = "[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 5432 }]\n[endpoints]\nkeychain = \"kc.toml\"\n";
    let c = Config::parse(text, ConfigSource::File("/etc/atoll/atoll.toml".into())).unwrap();
    assert_eq!(
        c.endpoints.map(|e| e.keychain),
        Some(std::path::PathBuf::from("/etc/atoll/kc.toml"))
    );
    let c = Config::parse(
        &text.replace("kc.toml", "/abs/kc.toml"),
        ConfigSource::Inline,
    )
    .unwrap();
    assert_eq!(
        c.endpoints.map(|e| e.keychain),
        Some(std::path::PathBuf::from("/abs/kc.toml"))
    );
    assert!(
        parse("[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 1 }]\n")
            .unwrap()
            .endpoints
            .is_none()
    );
    let e = err_of(&text.replace("\"kc.toml\"", "\"  \""));
    assert!(
        e.contains("[endpoints] keychain: the path is empty") && e.contains(":4:"),
        "{e}"
    );
    let e = err_of(&text.replace("keychain =", "keychian ="));
    assert!(e.contains("keychian"), "{e}");
}

#[test]
fn global_tables_are_plain_names_listed_once() {
    let base = "[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 5432 }]\n";
    assert_eq!(parse(base).unwrap().global.tables, None);
    let c = parse(&format!(
        "{base}[global]\ntables = [\"plans\", \"tenants\", \"a_1\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.global.tables,
        Some(vec!["a_1".to_string(), "plans".into(), "tenants".into()])
    );
    for (tables, says) in [
        ("[]", "the list is empty"),
        (
            "[\"sh0000.plans\"]",
            "\"sh0000.plans\" is not a plain table name",
        ),
        ("[\"1x\"]", "\"1x\" is not a plain table name"),
        ("[\"plans\", \"plans\"]", "plans is listed twice"),
    ] {
        let e = err_of(&format!("{base}[global]\ntables = {tables}\n"));
        assert!(e.contains(says) && e.contains(":4:"), "{tables}: {e}");
    }
    assert!(err_of(&format!("{base}[global]\ntabels = []\n")).contains("tabels"));
}

#[test]
fn the_proxy_section_is_checked() {
    use crate::proxy_config::ProxyPoolMode;
    let base = "[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 5432 }]\n";
    assert_eq!(parse(base).unwrap().proxy, Default::default());
    let c = parse(&format!(
        "{base}[proxy]\nlisten = \"0.0.0.0:6432\"\nusers = {{ app = \"env:APP_PW\" }}\npool_mode = \"session\"\ntls_cert = \"p.crt\"\ntls_key = \"/k/p.key\"\nrequire_tls = true\nhold_timeout_ms = 2000\ndatabase = \"app\"\nreplica_max_lag_ms = 250\n"
    ))
    .unwrap();
    let p = c.proxy;
    assert_eq!(p.listen, Some("0.0.0.0:6432".parse().unwrap()));
    assert_eq!(p.users.get("app"), Some(&SecretRef::Env("APP_PW".into())));
    assert_eq!(p.pool_mode, Some(ProxyPoolMode::Session));
    // Relative to the config file's directory.
    assert_eq!(p.tls_cert, Some("p.crt".into()));
    assert_eq!(p.tls_key, Some("/k/p.key".into()));
    assert_eq!(p.hold_timeout_ms, Some(2000));
    assert_eq!(p.database.as_deref(), Some("app"));
    assert_eq!(p.replica_max_lag_ms, Some(250));
    for (body, says) in [
        (
            "listen = \"6432\"",
            "[proxy] listen: \"6432\" is not an IP address and port",
        ),
        ("users = { app = \"hunter2\" }", "[proxy] users.app"),
        ("pool_size = 0", "[proxy] pool_size: 0 is outside"),
        ("tls_cert = \"a\"", "tls_cert and tls_key go together"),
        ("require_tls = true", "require_tls needs tls_cert"),
        ("pool_mode = \"statement\"", "statement"),
        ("lisen = \"x\"", "lisen"),
        (
            "database = \"atoll\"",
            "[proxy] database: \"atoll\" cannot be served",
        ),
        (
            "replica_max_lag_ms = -1",
            "[proxy] replica_max_lag_ms: -1 is outside",
        ),
    ] {
        let e = err_of(&format!("{base}[proxy]\n{body}\n"));
        // The section's line, or the value's own for a value of the wrong kind.
        let line = e.contains(":4:") || e.contains(":5:");
        assert!(e.contains(says) && line, "{body}: {e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
