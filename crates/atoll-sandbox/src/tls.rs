//! TLS for a sandbox (`up --tls`): a self-signed CA and one server certificate for
//! 127.0.0.1/localhost made with rcgen, in `<dir>/tls/`; every node serves it with `ssl = on`
//! and accepts TCP connections only over TLS (`hostssl` in pg_hba.conf).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::node::Runner;
use crate::state::HOST;
use crate::SandboxError;

/// The sandbox's TLS directory, under the sandbox directory.
pub const TLS_DIR: &str = "tls";
/// The CA certificate (PEM) that `atoll.toml`'s `sslrootcert` names.
pub const CA_FILE: &str = "ca.crt";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

fn tls_err(what: &str, e: rcgen::Error) -> SandboxError {
    SandboxError::Tls(format!("{what}: {e}"))
}

fn new_ca(name: &str) -> Result<(Certificate, KeyPair), SandboxError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA parameters", e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| tls_err("CA certificate", e))?;
    Ok((cert, key))
}

/// Writes a new self-signed CA certificate (PEM) named `name` to `path`; its key is thrown
/// away. Tests use one as a wrong `sslrootcert`.
pub fn write_self_signed_ca(path: &Path, name: &str) -> Result<(), SandboxError> {
    let (cert, _) = new_ca(name)?;
    std::fs::write(path, cert.pem()).map_err(|e| SandboxError::io("cannot write", path, e))
}

/// Makes `<dir>/tls/` with the CA and the server's certificate and key (mode 0600, owned by
/// the server user); returns the directory.
pub(crate) fn create_files(runner: &Runner, dir: &Path) -> Result<PathBuf, SandboxError> {
    let tls = dir.join(TLS_DIR);
    std::fs::create_dir(&tls).map_err(|e| SandboxError::io("cannot create directory", &tls, e))?;
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| SandboxError::io("cannot set permissions of", &tls, e))?;
    let (ca, ca_key) = new_ca("atoll sandbox CA")?;
    let mut params = CertificateParams::new(vec![HOST.to_string(), "localhost".to_string()])
        .map_err(|e| tls_err("server parameters", e))?;
    params.distinguished_name.push(DnType::CommonName, HOST);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| tls_err("server key", e))?;
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| tls_err("server certificate", e))?;
    let write = |name: &str, text: &str, mode: u32| -> Result<PathBuf, SandboxError> {
        let path = tls.join(name);
        std::fs::write(&path, text).map_err(|e| SandboxError::io("cannot write", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SandboxError::io("cannot set permissions of", &path, e))?;
        Ok(path)
    };
    write(CA_FILE, &ca.pem(), 0o644)?;
    write(SERVER_CERT, &cert.pem(), 0o644)?;
    // PostgreSQL refuses a key others can read, or owned by another user than itself.
    let key_path = write(SERVER_KEY, &key.serialize_pem(), 0o600)?;
    runner.hand_over(&key_path)?;
    Ok(tls)
}

/// The `postgresql.conf` lines that turn TLS on with the sandbox's certificate.
pub(crate) fn server_settings(tls_dir: &Path) -> String {
    let q = |p: PathBuf| format!("'{}'", p.display().to_string().replace('\'', "''"));
    format!(
        "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
        q(tls_dir.join(SERVER_CERT)),
        q(tls_dir.join(SERVER_KEY))
    )
}

/// Turns TLS on for a new master (its replicas copy these files) and makes it required.
pub(crate) fn configure_master(data_dir: &Path, tls_dir: &Path) -> Result<(), SandboxError> {
    crate::node::append(&data_dir.join("postgresql.conf"), &server_settings(tls_dir))?;
    let hba = data_dir.join("pg_hba.conf");
    let text =
        std::fs::read_to_string(&hba).map_err(|e| SandboxError::io("cannot read", &hba, e))?;
    // Writing into the existing file keeps its owner (postgres) even when we are root.
    std::fs::write(&hba, hba_ssl_only(&text)).map_err(|e| SandboxError::io("cannot write", &hba, e))
}

/// pg_hba.conf with every `host` line turned into `hostssl`: plain TCP is refused.
pub(crate) fn hba_ssl_only(hba: &str) -> String {
    hba.lines()
        .map(
            |line| match line.strip_prefix("host ").or(line.strip_prefix("host\t")) {
                Some(rest) => format!("hostssl {rest}"),
                None => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_lines_become_hostssl() {
        let hba = "# c\nlocal all all trust\nhost    all all 127.0.0.1/32 trust\nhost\treplication all ::1/128 trust\n";
        assert_eq!(
            hba_ssl_only(hba),
            "# c\nlocal all all trust\nhostssl    all all 127.0.0.1/32 trust\nhostssl replication all ::1/128 trust\n"
        );
    }

    #[test]
    fn settings_quote_paths() {
        let s = server_settings(Path::new("/t/it's"));
        assert!(s.contains("ssl_key_file = '/t/it''s/server.key'"), "{s}");
    }
}
