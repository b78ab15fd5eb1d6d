//! echoport-load: a load generator for RFC 862 echo servers (and echoport's chat mode).
//!
//! One subcommand per scenario, each in its own file ([`echo`], `stream`, `connect`, `idle`,
//! [`chat`]); each returns a [`report::Report`] that this module prints, writes as JSON and plots.
//! Every scenario checks every byte it gets back and every loop ends by itself: a bounded connect
//! phase, the warm-up, the run, then a bounded drain. docs/load.md is the user's guide.

pub mod chat;
mod connect;
mod dial;
pub mod echo;
mod gaps;
mod idle;
mod link;
mod parse;
mod pattern;
mod plot;
mod progress;
mod record;
pub mod report;
mod stream;
mod sys;
mod timer;
pub mod tls;
mod workers;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use dial::Dialer;
use report::Report;

#[derive(Parser, Debug)]
#[command(
    name = "echoport-load",
    version,
    about = "Load generator for TCP echo servers: round trips, throughput, connection rate, idle \
             connections, chat fan-out. Every echoed byte is verified.",
    after_help = "Exit status: 0 when the run had no errors and no mismatches, 1 otherwise, \
                  2 for bad arguments. See docs/load.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Round trips of SIZE-byte messages on N connections (closed loop, or open loop with --rate).
    Echo(echo::EchoArgs),
    /// Bulk throughput: every connection writes and reads back at full speed, both directions.
    Stream(stream::StreamArgs),
    /// New connections per second: connect, one verified round trip, close.
    Connect(connect::ConnectArgs),
    /// Open and hold N idle connections; with --server-pid, the server's memory per connection.
    Idle(idle::IdleArgs),
    /// Chat fan-out: messages from senders delivered to every client of a channel.
    Chat(ChatCmd),
}

#[derive(Args, Debug)]
pub struct ChatCmd {
    #[command(flatten)]
    pub args: chat::ChatArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

/// Where to connect and how; every scenario but chat (which has its own) flattens this.
#[derive(Args, Debug, Clone)]
pub struct DialArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = parse::target)]
    pub target: SocketAddr,
    /// Source addresses for the connections, used round-robin (e.g. 127.0.0.1,127.0.0.2; on
    /// Linux all of 127.0.0.0/8 works without setup). Default: chosen by the kernel.
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    pub source_ips: Vec<IpAddr>,
    /// Upper bound on the whole connect phase (and on any single connection attempt).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse::pos_secs)]
    pub connect_timeout: f64,
    /// Connections being opened at once (one counts until its first 1-byte echo is back), which
    /// keeps the server's accept queue from overflowing.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub open_window: u32,
    #[command(flatten)]
    pub tls: tls::TlsArgs,
}

impl DialArgs {
    pub fn dialer(&self) -> Result<Dialer, String> {
        Ok(Dialer {
            target: self.target,
            sources: self.source_ips.clone(),
            timeout: parse::dur(self.connect_timeout),
            window: self.open_window as usize,
            tls: self.tls.client(self.target)?,
            echo_probe: true,
        })
    }

    fn check(&self) -> Result<(), String> {
        if let Some(ip) = self.source_ips.iter().find(|ip| ip.is_ipv4() != self.target.is_ipv4()) {
            return Err(format!("--source-ips {ip} is not of the same family as --target {}", self.target));
        }
        // A missing or unreadable --tls-ca is a usage error, found before any connection.
        self.tls.client(self.target).map(|_| ())
    }
}

/// The timed part of a run.
#[derive(Args, Debug, Clone)]
pub struct TimeArgs {
    /// Measured run time in seconds (fractions allowed: 0.5).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse::pos_secs)]
    pub duration: f64,
    /// Warm-up before measuring; its messages are excluded from every count and histogram.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse::secs)]
    pub warmup: f64,
    /// After the run, how long to wait for echoes still owed; those missing then are errors.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse::pos_secs)]
    pub drain_timeout: f64,
}

/// Output options shared by every scenario.
#[derive(Args, Debug, Clone)]
pub struct OutArgs {
    /// Write the report as one JSON object to FILE (fields in docs/load.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw latency percentiles and the per-second timeline into FILE (.svg only).
    #[arg(long, value_name = "FILE", value_parser = parse::plot_path)]
    pub plot: Option<PathBuf>,
    /// No progress bar on stderr (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

impl OutArgs {
    fn check(&self) -> Result<(), String> {
        for (flag, path) in [("--json", &self.json), ("--plot", &self.plot)] {
            let Some(path) = path else { continue };
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!("{flag} {}: directory {} does not exist", path.display(), dir.display()));
            }
        }
        Ok(())
    }
}

/// The tool's entry point: parse, run the scenario, report. Never panics on bad input.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let (dial, out) = match &cli.command {
        Command::Echo(a) => (Some(&a.dial), &a.out),
        Command::Stream(a) => (Some(&a.dial), &a.out),
        Command::Connect(a) => (Some(&a.dial), &a.out),
        Command::Idle(a) => (Some(&a.dial), &a.out),
        Command::Chat(c) => (None, &c.out),
    };
    if let Err(e) = dial.map_or(Ok(()), DialArgs::check).and_then(|()| out.check()) {
        // Report it like clap's own errors (exit status 2), with the subcommand's usage line.
        let mut cmd = Cli::command();
        cmd.build();
        let sub = matches.subcommand_name().and_then(|name| cmd.find_subcommand_mut(name).cloned());
        sub.unwrap_or(cmd).error(clap::error::ErrorKind::ValueValidation, e).exit();
    }
    let result = match &cli.command {
        Command::Echo(a) => echo::run(a),
        Command::Stream(a) => stream::run(a),
        Command::Connect(a) => connect::run(a),
        Command::Idle(a) => idle::run(a),
        Command::Chat(c) => run_chat(c, matches.subcommand_matches("chat")),
    };
    match result {
        Ok(report) => finish(&report, out),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print the table, write JSON and plot, and turn the outcome into the exit status.
fn finish(report: &Report, out: &OutArgs) -> ExitCode {
    let mut failed = !report.ok();
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = report.print(&mut stdout) {
        eprintln!("error: cannot write the report to stdout: {e}");
        failed = true;
    }
    if let Some(path) = &out.json {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            eprintln!("error: cannot write --json {}: {}", path.display(), dial::plain(&e));
            failed = true;
        }
    }
    if let Some(path) = &out.plot {
        if let Err(e) = plot::draw(report, path) {
            eprintln!("error: cannot write --plot {}: {e}", path.display());
            failed = true;
        }
    }
    for p in &report.problems {
        eprintln!("error: {p}");
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The chat scenario lives in chat.rs (its own arguments and engine); this adapts its outcome to
/// the common report. Fields its arguments define are read back by id from the parsed command
/// line, so this file does not depend on how chat.rs types them.
fn run_chat(c: &ChatCmd, m: Option<&ArgMatches>) -> Result<Report, String> {
    let raw = |id: &str| {
        let v = m?.try_get_raw(id).ok()??.next()?;
        Some(v.to_string_lossy().into_owned())
    };
    let num = |id: &str| raw(id).and_then(|v| v.trim().parse::<f64>().ok().or_else(|| parse::secs(&v).ok()));
    let duration = num("duration").unwrap_or(0.0);
    let warmup = num("warmup").unwrap_or(0.0);
    let progress = RefCell::new(progress::Progress::new(
        c.out.quiet,
        parse::dur(warmup),
        parse::dur(warmup + duration),
        "deliveries",
    ));
    progress.borrow_mut().begin();
    let outcome = chat::run(&c.args, &|n| progress.borrow_mut().update(n))?;
    progress.borrow().finish();

    let mut rec = record::Recorder::new(std::time::Instant::now(), usize::MAX);
    rec.hist = outcome.latency.clone();
    let secs = if duration > 0.0 { duration } else { outcome.timeline.len() as f64 };
    // Several targets (the servers of one network) are listed as given, comma-separated.
    let targets: Vec<String> = m
        .and_then(|m| m.try_get_raw("target").ok().flatten())
        .map(|v| v.map(|t| t.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let mut r = Report::new("chat", targets.join(","), &rec, secs);
    r.unit = "deliveries";
    r.conns = num("clients").map_or(0, |v| v as u64);
    r.size = num("size").map(|v| v as u64);
    r.warmup_secs = warmup;
    r.rate_target = num("rate").filter(|&v| v > 0.0);
    r.messages = outcome.deliveries;
    r.per_sec = report::per_sec(outcome.deliveries, secs);
    r.span_secs = secs;
    r.timeline = outcome.timeline.iter().map(|&(t, messages)| report::Point { t, messages, p99_us: None }).collect();
    let (lost, duplicates, reordered) = (outcome.lost, outcome.duplicates, outcome.reordered);
    // A delivery that never arrived, or arrived twice or out of order, is a failure of the run,
    // like an unanswered or mismatched echo.
    r.handshake = outcome.handshake.as_ref().map(report::Handshake::of);
    r.errors = outcome.errors + lost + duplicates + reordered;
    r.set("senders", num("senders").map(|v| v as u64));
    r.set("sent", outcome.sent);
    r.set("deliveries", outcome.deliveries);
    r.set("expected_deliveries", outcome.expected_deliveries);
    r.set("lost", lost);
    r.set("duplicates", duplicates);
    r.set("reordered", reordered);
    r.set("chat_errors", outcome.errors);
    if lost > 0 {
        r.problems.push(format!("{lost} of {} expected deliveries never arrived", outcome.expected_deliveries));
    }
    if duplicates > 0 {
        r.problems.push(format!("{duplicates} deliveries were second copies of a message the client already had"));
    }
    if reordered > 0 {
        r.problems.push(format!("{reordered} deliveries arrived after a later message of the same sender"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        // Catches duplicate flags between flattened structs (e.g. chat's and OutArgs).
        Cli::command().debug_assert();
    }

    #[test]
    fn contract_flags_parse() {
        let ok = |args: &[&str]| {
            let mut v = vec!["echoport-load"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|_| ()).map_err(|e| e.to_string())
        };
        ok(&["echo", "--target", "127.0.0.1:1", "--conns", "5", "--size", "64", "--duration", "0.5"]).unwrap();
        ok(&["echo", "--target", "127.0.0.1:1", "--rate", "2000", "--threads", "2", "--warmup", "0"]).unwrap();
        ok(&["stream", "--target", "127.0.0.1:1", "--duration", "1", "--json", "x.json", "--plot", "x.svg"]).unwrap();
        ok(&["connect", "--target", "127.0.0.1:1", "--conns", "4", "--duration", "1", "--quiet"]).unwrap();
        ok(&["idle", "--target", "127.0.0.1:1", "--conns", "9", "--hold", "0.5", "--server-pid", "1"]).unwrap();
        ok(&["idle", "--target", "127.0.0.1:1", "--conns", "9", "--source-ips", "127.0.0.1,127.0.0.2"]).unwrap();
        ok(&["connect", "--target", "127.0.0.1:1", "--tls", "--tls-insecure", "--handshake-only"]).unwrap();
        ok(&["chat", "--target", "127.0.0.1:1", "--tls", "--tls-ca", "ca.pem", "--tls-server-name", "irc.test"])
            .unwrap();
        ok(&["chat", "--target", "127.0.0.1:1", "--target", "127.0.0.1:2", "--target", "127.0.0.1:3"]).unwrap();
        assert!(ok(&["chat", "--clients", "5"]).unwrap_err().contains("--target"));
        assert!(ok(&["connect", "--target", "127.0.0.1:1", "--handshake-only"]).unwrap_err().contains("--tls"));
        assert!(ok(&["echo", "--target", "127.0.0.1:1", "--tls", "--tls-insecure", "--tls-ca", "x"]).is_err());
        assert!(ok(&["echo", "--target", "127.0.0.1:1", "--plot", "x.png"]).unwrap_err().contains("--plot"));
        assert!(ok(&["echo", "--target", "127.0.0.1:1", "--conns", "0"]).is_err());
        assert!(ok(&["echo", "--target", "127.0.0.1:1", "--duration", "-1"]).is_err());
        assert!(ok(&["echo"]).is_err());
    }
}
