//! `--tls`: the client side of TLS for every scenario. This file turns the flags into one shared
//! rustls `ClientConfig` and the name to verify; link.rs runs the connections.
//!
//! There is no system root store here (no such dependency): the server's certificate is checked
//! against `--tls-ca FILE`, or not at all with `--tls-insecure` (for self-signed test
//! certificates). Even then the handshake's signatures are verified, so the server still proves
//! it holds the key and the handshake costs what a real one costs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The TLS flags, flattened into every scenario's arguments.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Speak TLS (1.2 or 1.3) to the target; every connection does a full handshake.
    #[arg(long)]
    pub tls: bool,
    /// Accept any server certificate (self-signed test certificates); signatures are still checked.
    #[arg(long, requires = "tls", conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// Trust the certificates in this PEM file (a CA, or the server's own self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// The name the certificate must carry [default: the target's IP address, as an IP SAN].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
}

/// What every TLS connection of a run shares.
#[derive(Clone, Debug)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsArgs {
    /// `None` without `--tls`; an error names the flag that is wrong.
    pub fn client(&self, target: SocketAddr) -> Result<Option<Tls>, String> {
        if !self.tls {
            return Ok(None);
        }
        let name = match &self.tls_server_name {
            Some(n) => ServerName::try_from(n.clone()).map_err(|e| format!("--tls-server-name {n}: {e}"))?,
            None => ServerName::IpAddress(target.ip().into()),
        };
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let mut config = match (&self.tls_ca, self.tls_insecure) {
            (Some(path), _) => builder.with_root_certificates(roots(path)?).with_no_client_auth(),
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
            (None, false) => {
                return Err("--tls needs --tls-ca FILE (the server's CA or certificate) or --tls-insecure: \
                            there is no system certificate store"
                    .into());
            }
        };
        // Every handshake a full one: a resumed session would hide what a new client costs.
        config.resumption = Resumption::disabled();
        Ok(Some(Tls { config: Arc::new(config), name }))
    }
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let what = |e: &dyn std::fmt::Display| format!("--tls-ca {}: {e}", path.display());
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
        store.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if store.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    Ok(store)
}

/// `--tls-insecure`: any certificate chain is accepted, but the handshake signature must be valid
/// for the certificate presented.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
