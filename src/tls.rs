//! TLS settings the server shares among its TLS connections: the certificate chain and key read
//! from `--tls-cert` / `--tls-key`, swapped in place on reload (SIGHUP), and the rustls
//! configuration every new handshake starts from. What a TLS connection does with its bytes is
//! the port's business ([`crate::port`]'s TLS layer).

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The server's TLS identity and configuration. Cloning shares it.
#[derive(Clone)]
pub struct Tls {
    certs: Arc<Certs>,
    config: Arc<ServerConfig>,
}

/// The certificate every handshake presents, replaceable while connections run: a handshake
/// takes the pair current when its ClientHello arrives; open connections keep what they began
/// with.
struct Certs {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Tls {
    /// Reads the PEM certificate chain and private key. The error names the file and what is
    /// wrong with it.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, String> {
        // ring: it builds wherever a C compiler does, the Windows target included (Cargo.toml).
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = RwLock::new(Arc::new(read_pair(cert_path, key_path, &provider)?));
        let certs =
            Arc::new(Certs { cert_path: cert_path.to_owned(), key_path: key_path.to_owned(), provider, current });
        let mut config = ServerConfig::builder_with_provider(certs.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        // Clients speak first in both protocols, and nothing here may be replayed: no 0-RTT.
        config.max_early_data_size = 0;
        // No TLS 1.3 resumption tickets: they cost every handshake two more records and a cache
        // entry, for connections that live long (chat) or are not resumed (echo probes). TLS 1.2
        // session ids stay, in rustls's bounded cache.
        config.send_tls13_tickets = 0;
        Ok(Tls { certs, config: Arc::new(config) })
    }

    /// Reads the files again. On success new handshakes present the new pair; on failure the
    /// old one stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let c = &self.certs;
        let pair = read_pair(&c.cert_path, &c.key_path, &c.provider)?;
        *c.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// What a new TLS connection starts from.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let named = |path: &Path, what: &str| format!("--tls-{what} '{}'", path.display());
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", named(cert_path, "cert")))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", named(cert_path, "cert")));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| format!("cannot read {}: {e}", named(key_path, "key")))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        // rustls words certificate errors for a peer's certificate; this one is ours.
        let why = match format!("{e:?}") {
            v1 if v1.contains("UnsupportedCertVersion") => {
                "the certificate is X.509 v1; only v3 can be served (`openssl req -x509` makes v3)".to_owned()
            }
            _ => e.to_string().replace("invalid peer certificate", "invalid certificate"),
        };
        format!("{} and {} do not make a usable pair: {why}", named(cert_path, "cert"), named(key_path, "key"))
    })
}
