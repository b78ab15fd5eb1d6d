//! The client side of TLS that `echoport check --tls` and `echoport-load --tls` share. There is no
//! system root store (no such dependency): the server's certificate is checked against the
//! certificates of a PEM file, or not at all ("insecure", for self-signed test certificates).
//! Even then the handshake's signatures are verified, so the server still proves it holds the key
//! and a handshake costs what a real one does.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// A client configuration trusting the certificates in `ca`, or (`insecure`) any certificate.
/// `Ok(None)` when given neither: the caller says which of its flags are missing. An error about
/// the file names it as `--tls-ca` (both commands' flag).
pub fn config(ca: Option<&Path>, insecure: bool) -> Result<Option<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    Ok(match (ca, insecure) {
        (Some(path), _) => Some(builder.with_root_certificates(roots(path)?).with_no_client_auth()),
        (None, true) => Some(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
        ),
        (None, false) => None,
    })
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

/// Any certificate chain is accepted, but the handshake signature must be valid for the
/// certificate presented.
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
