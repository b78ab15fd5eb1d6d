//! `--tls`: the client side of TLS for every scenario. This file turns the flags into one shared
//! rustls `ClientConfig` and the name to verify; link.rs runs the connections.
//!
//! There is no system root store here (no such dependency): the server's certificate is checked
//! against `--tls-ca FILE`, or not at all with `--tls-insecure` (for self-signed test
//! certificates). Even then the handshake's signatures are verified, so the server still proves
//! it holds the key and the handshake costs what a real one costs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;

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
        let Some(mut config) = echoport_tls_client::config(self.tls_ca.as_deref(), self.tls_insecure)? else {
            return Err("--tls needs --tls-ca FILE (the server's CA or certificate) or --tls-insecure: \
                        there is no system certificate store"
                .into());
        };
        // Every handshake a full one: a resumed session would hide what a new client costs.
        config.resumption = Resumption::disabled();
        Ok(Some(Tls { config: Arc::new(config), name }))
    }
}
