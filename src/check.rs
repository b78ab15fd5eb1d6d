//! `echoport check`: a one-shot health probe for Docker HEALTHCHECK, Kubernetes probes and scripts.
//! Echo mode: one round trip of a unique message, byte-exact. Chat mode: PING, expect its PONG.

use crate::config::{CheckArgs, Mode};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Probes the server; `Ok` carries a one-line summary, `Err` a one-line reason.
pub fn run(args: &CheckArgs) -> Result<String, String> {
    let started = Instant::now();
    let target = args.target.unwrap_or(args.mode.default_listen());
    let stream =
        TcpStream::connect_timeout(&target, args.timeout).map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let left = args.timeout.saturating_sub(started.elapsed()).max(std::time::Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    // Unique per probe, so a stale or misrouted reply cannot pass.
    let token = format!("echoport-check-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let what = match args.mode {
        Mode::Echo => echo(stream, &token),
        Mode::Chat => chat(stream, &token),
    }
    .map_err(|e| format!("{target}: {e}"))?;
    Ok(format!("ok: {what} with {target} in {:.1} ms", started.elapsed().as_secs_f64() * 1e3))
}

fn echo(mut stream: TcpStream, token: &str) -> Result<&'static str, String> {
    let sent = format!("{token}\n").into_bytes();
    stream.write_all(&sent).map_err(|e| format!("send failed: {e}"))?;
    let mut got = vec![0u8; sent.len()];
    stream.read_exact(&mut got).map_err(|e| format!("no echo: {}", describe(&e)))?;
    if got != sent {
        return Err(format!("echo differs: sent {:?}, got {:?}", token, String::from_utf8_lossy(&got).trim_end()));
    }
    Ok("echo round trip")
}

fn chat(mut stream: TcpStream, token: &str) -> Result<&'static str, String> {
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
