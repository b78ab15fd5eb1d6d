//! `echoport check`: a one-shot health probe for Docker HEALTHCHECK, Kubernetes probes and scripts.
//! Echo mode: one round trip of a unique message, byte-exact. Chat mode: PING, expect its PONG.
//! With `--tls` the same probe goes through a TLS session (handshake first, so its failure is
//! reported as such).

use crate::config::{CheckArgs, Mode};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Probes the server; `Ok` carries a one-line summary, `Err` a one-line reason.
pub fn run(args: &CheckArgs) -> Result<String, String> {
    let started = Instant::now();
    let target = args.target.unwrap_or(args.mode.default_listen());
    // Before connecting: a bad --tls-ca is the caller's mistake, not the server's.
    let tls = if args.tls { Some(tls_config(args)?) } else { None };
    let stream =
        TcpStream::connect_timeout(&target, args.timeout).map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let left = args.timeout.saturating_sub(started.elapsed()).max(std::time::Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    // Unique per probe, so a stale or misrouted reply cannot pass.
    let token = format!("echoport-check-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let what = match tls {
        None => probe(args.mode, stream, &token),
        Some(config) => handshake(config, target, stream).and_then(|s| probe(args.mode, s, &token)),
    }
    .map_err(|e| format!("{target}: {e}"))?;
    let over = if args.tls { " over TLS" } else { "" };
    Ok(format!("ok: {what}{over} with {target} in {:.1} ms", started.elapsed().as_secs_f64() * 1e3))
}

fn probe(mode: Mode, stream: impl Read + Write, token: &str) -> Result<&'static str, String> {
    match mode {
        Mode::Echo => echo(stream, token),
        Mode::Chat => chat(stream, token),
    }
}

fn echo(mut stream: impl Read + Write, token: &str) -> Result<&'static str, String> {
    let sent = format!("{token}\n").into_bytes();
    stream.write_all(&sent).map_err(|e| format!("send failed: {e}"))?;
    let mut got = vec![0u8; sent.len()];
    stream.read_exact(&mut got).map_err(|e| format!("no echo: {}", describe(&e)))?;
    if got != sent {
        return Err(format!("echo differs: sent {:?}, got {:?}", token, String::from_utf8_lossy(&got).trim_end()));
    }
    Ok("echo round trip")
}

fn chat(mut stream: impl Read + Write, token: &str) -> Result<&'static str, String> {
    stream.write_all(format!("PING :{token}\r\n").as_bytes()).map_err(|e| format!("send failed: {e}"))?;
    let mut lines = BufReader::new(stream).take(64 * 1024);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => return Err("closed before answering PING".to_owned()),
            Ok(_) if line.contains(" PONG ") && line.contains(token) => return Ok("PING/PONG"),
            Ok(_) if line.starts_with("ERROR") => return Err(format!("server said {}", line.trim_end())),
            Ok(_) => {}
            Err(e) => return Err(format!("no PONG: {}", describe(&e))),
        }
    }
}

/// Read timeouts surface as WouldBlock on some platforms: say what happened.
fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => e.to_string(),
    }
}

// ---- TLS ---------------------------------------------------------------------------------

/// The client side for `--tls`: no system root store is built in, so the certificate is checked
/// against `--tls-ca`, or (`--insecure`) not at all, though the handshake signature still is.
fn tls_config(args: &CheckArgs) -> Result<Arc<ClientConfig>, String> {
    match echoport_tls_client::config(args.tls_ca.as_deref(), args.insecure)? {
        Some(config) => Ok(Arc::new(config)),
        None => Err("--tls needs --tls-ca FILE (the server's CA or certificate) or --insecure: \
                     there is no system certificate store"
            .to_owned()),
    }
}

/// Finish the handshake within the socket's timeouts; the name checked is the target's IP.
fn handshake(
    config: Arc<ClientConfig>,
    target: SocketAddr,
    mut tcp: TcpStream,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let mut conn = ClientConnection::new(config, ServerName::IpAddress(target.ip().into()))
        .map_err(|e| format!("TLS set-up: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| format!("TLS handshake failed: {}", describe(&e)))?;
    }
    Ok(StreamOwned::new(conn, tcp))
}
