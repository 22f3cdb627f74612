//! TLS connectors (rustls with the ring provider) for a node's [`TlsConfig`], with libpq's
//! `sslmode` meanings: `prefer`/`require` encrypt without checking the certificate,
//! `verify-ca` checks the chain against `sslrootcert` but not the host name, `verify-full`
//! checks both. One connector per (verification, CA file), built once and cached: a CA
//! file is read the first time a node needs it (a changed file needs a new process).

use atoll_core::{SslMode, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no PEM certificate.
    #[error("sslrootcert {}: {msg}", path.display())]
    RootCert {
        /// The CA file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Check {
    /// Not at all (only the handshake's signatures): `disable`, `prefer`, `require`.
    Nothing,
    /// The chain, any host name: `verify-ca`.
    Chain,
    /// The chain and the host name: `verify-full`.
    Full,
}

type Cache = Mutex<HashMap<(Check, Option<PathBuf>), (MakeRustlsConnect, Arc<ClientConfig>)>>;

/// The tokio-postgres mode for `mode`: the verify modes are `Require` plus the verifier.
pub(crate) fn driver_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as D;
    match mode {
        SslMode::Disable => D::Disable,
        SslMode::Prefer => D::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
    }
}

/// The connector for `tls` (for `disable` too: the driver then never uses it).
pub fn tls_connector(tls: &TlsConfig) -> Result<MakeRustlsConnect, TlsError> {
    cached(tls).map(|(connector, _)| connector)
}

/// The rustls client configuration for `tls`, cached as [`tls_connector`]'s: for a proxy
/// that speaks the protocol itself and wraps its own sockets after an SSLRequest.
pub fn rustls_client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    cached(tls).map(|(_, config)| config)
}

fn cached(tls: &TlsConfig) -> Result<(MakeRustlsConnect, Arc<ClientConfig>), TlsError> {
    let check = match tls.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Check::Nothing,
        SslMode::VerifyCa => Check::Chain,
        SslMode::VerifyFull => Check::Full,
    };
    let root = match check {
        Check::Nothing => None,
        Check::Chain | Check::Full => tls.root_cert.clone(),
    };
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (check, root);
    // A poisoned lock only means another thread panicked while inserting: the map is fine.
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let config = client_config(check, key.1.as_deref())?;
    let entry = (MakeRustlsConnect::new(config.clone()), Arc::new(config));
    map.insert(key, entry.clone());
    Ok(entry)
}

fn client_config(check: Check, root: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (check, root) {
        (Check::Nothing, _) | (_, None) => Arc::new(NoCheck(provider)),
        (Check::Chain | Check::Full, Some(path)) => {
            let roots = Arc::new(load_roots(path)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::RootCert {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                })?;
            match check {
                Check::Full => webpki,
                _ => Arc::new(ChainOnly(webpki)),
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |msg: String| TlsError::RootCert {
        path: path.to_path_buf(),
        msg,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// `require`: encrypted, the certificate taken as it is (libpq without a root certificate).
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's checks, except that a certificate issued for another name passes
/// (webpki checks the name only after the chain, so that error means the chain is good).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error inside a driver error, when the handshake failed (it is wrapped in an
/// `io::Error`, whose `source()` skips it, so the chain is walked by hand).
pub(crate) fn handshake_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        (p.self_signed(&key).unwrap(), key)
    }

    fn verifier(check: Check, ca_pem: &str) -> Arc<dyn ServerCertVerifier> {
        let path = std::env::temp_dir().join(format!(
            "atoll-pg-tls-test-{}-{:x}.crt",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, ca_pem).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(load_roots(&path).unwrap());
        let _ = std::fs::remove_file(&path);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        match check {
            Check::Full => webpki,
            _ => Arc::new(ChainOnly(webpki)),
        }
    }

    /// verify-ca accepts a certificate of its CA issued for another host; verify-full does
    /// not; neither accepts one of another CA.
    #[test]
    fn verify_ca_skips_only_the_host_name() {
        let (ca, ca_key) = new_ca("test CA");
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["db.example".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let host = ServerName::try_from("127.0.0.1").unwrap();
        let check = |v: &Arc<dyn ServerCertVerifier>| {
            v.verify_server_cert(&der, &[], &host, &[], UnixTime::now())
        };
        assert!(check(&verifier(Check::Chain, &ca.pem())).is_ok());
        let e = check(&verifier(Check::Full, &ca.pem())).unwrap_err();
        assert!(e.to_string().contains("not valid for name"), "{e}");
        let (other, _) = new_ca("another CA");
        for c in [Check::Chain, Check::Full] {
            let e = check(&verifier(c, &other.pem())).unwrap_err();
            assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = load_roots(Path::new("/nonexistent/ca.crt"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sslrootcert /nonexistent/ca.crt: "), "{e}");
        let path = std::env::temp_dir().join(format!("atoll-pg-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = load_roots(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
