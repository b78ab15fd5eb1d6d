//! The idle scenario: open N connections, prove each with a 1-byte round trip, hold them for
//! --hold seconds, close. With --server-pid the server's resident memory is read before opening
//! and while holding, which gives its memory cost per idle connection (Linux only: elsewhere the
//! report says the reading is not available).

use std::io::{ErrorKind, Read};
use std::time::Instant;

use clap::Args;
use mio::{Events, Interest, Poll, Token};
use serde_json::Value;

use super::dial::{self, open_many};
use super::progress::{Progress, TICK};
use super::report::{self, Report};
use super::{DialArgs, OutArgs, parse, sys};

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub dial: DialArgs,
    /// Connections to open and hold. More than one source address can open (about 28,000 on
    /// Linux) needs --source-ips.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub conns: u32,
    /// How long to hold the connections once all are open.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse::secs)]
    pub hold: f64,
    /// The server's process id: report its memory (VmRSS) per connection (Linux only).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// A connection counts as open once its TLS handshake is done: no echo probe (for IRC
    /// servers, which echo nothing).
    #[arg(long, requires = "tls")]
    pub handshake_only: bool,
    #[command(flatten)]
    pub out: OutArgs,
}

pub fn run(a: &IdleArgs) -> Result<Report, String> {
    let n = a.conns as usize;
    sys::check_nofile(n)?;
    let rss_before = a.server_pid.map(sys::rss_kib).transpose()?.flatten();
    let hold = parse::dur(a.hold);
    let mut progress = Progress::new(a.out.quiet, std::time::Duration::ZERO, hold, "conn");
    let mut dialer = a.dial.dialer()?;
    dialer.echo_probe = !a.handshake_only;
    let opened = open_many(&dialer, n, false, &mut |k| progress.phase("open", k as u64, n as u64));
    if opened.streams.is_empty() {
        return Err(opened.first_error.unwrap_or_else(|| "no connection could be opened".into()));
    }
    let mut streams = opened.streams;
    let held = streams.len() as u64;

    // Hold: nothing should arrive; a readable socket means the server closed it or sent junk.
    let (mut dropped, mut junk) = (0u64, 0u64);
    let mut first_drop = None;
    progress.begin();
    let mut poll = Poll::new().map_err(|e| format!("cannot create a poller: {}", dial::plain(&e)))?;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .map_err(|e| format!("cannot register a socket: {}", dial::plain(&e)))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut gone = vec![false; streams.len()];
    let mut buf = [0u8; 1024];
    let until = Instant::now() + hold;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        progress.holding(held - dropped);
        if let Err(e) = poll.poll(&mut events, Some((until - now).min(TICK))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll failed: {}", dial::plain(&e)));
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if gone.get(i) != Some(&false) {
                continue;
            }
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => {
                        gone[i] = true;
                        dropped += 1;
                        first_drop.get_or_insert_with(|| format!("conn {i}: closed by the server while idle"));
                        break;
                    }
                    Ok(_) => {
                        gone[i] = true;
                        junk += 1;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        gone[i] = true;
                        dropped += 1;
                        first_drop.get_or_insert_with(|| format!("conn {i}: {} while idle", dial::plain(&e)));
                        break;
                    }
                }
            }
        }
    }
    let rss_holding = a.server_pid.map(sys::rss_kib).transpose()?.flatten();
    drop(streams);
    progress.finish();

    let open_secs = opened.elapsed.as_secs_f64();
    let mut r = Report::new("idle", a.dial.target.to_string(), &opened.recorder, a.hold);
    r.unit = "connections";
    r.conns = n as u64;
    r.size = Some(1);
    r.per_sec = report::per_sec(held, open_secs);
    r.span_secs = open_secs;
    r.time_axis = "seconds after opening began";
    r.handshake = a.dial.tls.tls.then(|| report::Handshake::of(&opened.handshakes));
    r.errors = opened.failed + dropped;
    r.mismatches = opened.mismatches + junk;
    r.set("held", held);
    r.set("failed", opened.failed);
    r.set("dropped", dropped);
    r.set("open_secs", report::round2(open_secs));
    r.set("hold_secs", a.hold);
    r.set("source_ips", a.dial.source_ips.iter().map(|ip| Value::from(ip.to_string())).collect::<Vec<_>>());
    r.set("server_pid", a.server_pid);
    r.set("rss_before_kib", rss_before);
    r.set("rss_holding_kib", rss_holding);
    let per_conn = match (rss_before, rss_holding) {
        (Some(b), Some(h)) => Some(report::round2((h as f64 - b as f64) / held as f64)),
        _ => None,
    };
    r.set("rss_per_conn_kib", per_conn);
    if a.server_pid.is_some() && rss_holding.is_none() {
        r.set("rss_note", sys::RSS_UNAVAILABLE);
    }
    r.problems.extend(opened.first_error);
    r.problems.extend(first_drop);
    if junk > 0 {
        r.problems.push(format!("{junk} idle connections received bytes nobody sent"));
    }
    Ok(r)
}
