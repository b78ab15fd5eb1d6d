//! Command line, environment and config-file settings, merged into one validated [`Config`].
//!
//! Precedence is flag > environment variable > config file > built-in default. Clap already
//! resolves flag > env, so every setting is an `Option` there: `None` means "neither given", and
//! only then does the config file (and after it the default) get a say.
//!
//! Each setting has exactly one validator, shared by the clap value parsers and the config-file
//! reader, so a bad value is described the same way wherever it came from.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::num::{IntErrorKind, NonZero};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};
use toml::{Table, Value};

/// What the server does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 862: send every byte back to its sender.
    Echo,
    /// An IRC-compatible chat server (RFC 1459 / 2812 client protocol).
    Chat,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Chat => "chat",
        }
    }

    /// Where the server listens when no address is configured.
    pub fn default_listen(self) -> SocketAddr {
        let port = match self {
            Mode::Echo => 7007,
            Mode::Chat => 6667,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// Chat-mode settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    /// Required with PASS before registering, if set.
    pub password: Option<String>,
    pub server_name: String,
    /// Message of the day file, read at start.
    pub motd: Option<PathBuf>,
    /// Bytes queued for one client before it is disconnected ("SendQ exceeded").
    pub sendq_bytes: usize,
    /// The longest line a client may send, CR LF included; longer ones get 417.
    pub max_line_bytes: usize,
    /// Drop a client whose line stays unfinished this long (slowloris); `None` = never.
    pub line_timeout: Option<Duration>,
    /// Lines per second a client may send on average; 0 = no flood control.
    pub flood_rate: f64,
    /// Lines a client may send in a burst above the rate.
    pub flood_burst: u32,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// (name, password) pairs accepted by OPER.
    pub opers: Vec<(String, String)>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            password: None,
            server_name: "echoport".to_owned(),
            motd: None,
            sendq_bytes: 1024 * 1024,
            max_line_bytes: 512,
            line_timeout: Some(Duration::from_secs(30)),
            flood_rate: 10.0,
            flood_burst: 20,
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(60),
            opers: Vec::new(),
        }
    }
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Fully resolved and validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub mode: Mode,
    pub workers: usize,
    /// 0 = no limit other than the open-file limit.
    pub max_conns: usize,
    /// 0 = no per-address limit.
    pub max_conns_per_ip: u32,
    pub backlog: u32,
    pub buffer_size: usize,
    /// `None` = connections never time out.
    pub idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// `None` = use `RUST_LOG`, else "info" (decided by the caller).
    pub log_level: Option<String>,
    /// `None` = no periodic stats.
    pub stats_interval: Option<Duration>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics at /metrics; `None` = nowhere.
    pub metrics_listen: Option<SocketAddr>,
    pub chat: ChatSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Mode::Echo.default_listen()],
            mode: Mode::Echo,
            workers: default_workers(),
            max_conns: 0,
            max_conns_per_ip: 0,
            backlog: 1024,
            buffer_size: 16 * 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_timeout: Duration::from_secs(10),
            log_format: LogFormat::Text,
            log_level: None,
            stats_interval: Some(Duration::from_secs(60)),
            config_file: None,
            metrics_listen: None,
            chat: ChatSettings::default(),
        }
    }
}

/// The article's choice, twice the CPUs. The port keeps at most one awake per core; the others
/// wait as spares, so the extra threads cost only their stacks.
fn default_workers() -> usize {
    2 * std::thread::available_parallelism().map_or(1, NonZero::get)
}

/// A configuration problem, worded for the user (the caller adds any "error: " prefix).
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// Keeps clap's one-line summary ("invalid value '0' for '--workers <N>': ...") and drops
    /// its usage hints; help and version requests keep their whole text.
    fn from_clap(err: &clap::Error) -> Self {
        use clap::error::ErrorKind;
        let text = err.to_string();
        match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ConfigError(text),
            _ => {
                let first = text.lines().next().unwrap_or_default();
                ConfigError(first.strip_prefix("error: ").unwrap_or(first).to_owned())
            }
        }
    }
}

/// Parses the process's own arguments, the environment and the config file. Clap reports its
/// own errors (and `--help` / `--version`) and exits, as a command-line tool should.
/// A subcommand (`check`) is returned as such; otherwise the server configuration.
pub fn invocation() -> Result<Invocation, ConfigError> {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Subcommand::Check(args)) => Ok(Invocation::Check(args)),
        None => resolve(cli).map(|c| Invocation::Serve(Box::new(c))),
    }
}

/// Like [`invocation`] for the server configuration, from explicit arguments (`args[0]` is the program name). Clap errors are
/// returned instead of exiting. Environment variables are still read.
pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| ConfigError::from_clap(&e))?;
    resolve(cli)
}

/// Layers the sources: defaults, then the config file, then flags/env.
fn resolve(cli: Cli) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut listen_given = cli.settings.listen.is_some();
    if let Some(path) = &cli.config {
        let file = read_config_file(path)?;
        listen_given |= file.listen.is_some();
        config.apply(file);
    }
    config.apply(cli.settings);
    if !listen_given {
        config.listen = vec![config.mode.default_listen()];
    }
    config.config_file = cli.config;
    Ok(config)
}

const AFTER_HELP: &str = "\
Examples:
  Echo on 127.0.0.1:7007 with the defaults:
    echoport
  All interfaces, 8 workers, at most 50000 connections, JSON logs:
    echoport --listen 0.0.0.0:7007 --workers 8 --max-conns 50000 --log-format json
  Settings from a file (see config/echoport.toml for every key):
    echoport --config config/echoport.toml

Every flag can also be set with an environment variable named ECHOPORT_<FLAG>, e.g.
--max-conns is ECHOPORT_MAX_CONNS (ECHOPORT_LISTEN takes a comma-separated list).
Precedence: command-line flag > environment variable > config file > built-in default.
DUR is whole seconds (30) or a duration such as 30s, 500ms or 2m.";

#[derive(Parser, Debug)]
#[command(name = "echoport", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Subcommand>,

    #[command(flatten)]
    settings: Settings,

    /// TOML config file; its keys are the flag names without "--"
    #[arg(long, env = "ECHOPORT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// Probe a running server: one echo round trip (PING/PONG with --mode chat); exit status 0
    /// when it answered correctly, 1 with a one-line reason otherwise (for health checks)
    Check(CheckArgs),
}

/// `echoport check`: what to probe.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Address of the server to probe [default: the first ECHOPORT_LISTEN address, with 0.0.0.0
    /// or [::] probed on loopback; else the mode's default port on 127.0.0.1]
    #[arg(long, env = "ECHOPORT_LISTEN", value_name = "ADDR", value_parser = parse_probe_target)]
    pub target: Option<SocketAddr>,
    /// Give up after this long
    #[arg(long, value_name = "DUR", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The protocol the server speaks
    #[arg(long, env = "ECHOPORT_MODE", value_name = "MODE", default_value = "echo", value_parser = parse_mode)]
    pub mode: Mode,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Config>),
    Check(CheckArgs),
}

/// The settings one source provides; `None` = this source leaves it alone. Clap fills it from
/// flags/env, [`settings_from_table`] from the config file.
#[derive(Args, Debug, Default)]
struct Settings {
    /// Address to listen on; repeat for several [default: 127.0.0.1:7007]
    #[arg(long, env = "ECHOPORT_LISTEN", value_name = "ADDR", value_delimiter = ',', value_parser = parse_socket_addr)]
    listen: Option<Vec<SocketAddr>>,

    /// What to do with connections: echo (RFC 862) or chat (IRC) [default: echo]
    #[arg(long, env = "ECHOPORT_MODE", value_name = "MODE", value_parser = parse_mode)]
    mode: Option<Mode>,

    /// Worker threads [default: 2 x CPUs]
    #[arg(long, env = "ECHOPORT_WORKERS", value_name = "N", value_parser = parse_int(check_workers))]
    workers: Option<usize>,

    /// Most connections open at once; 0 = only the open-file limit [default: 0]
    #[arg(long, env = "ECHOPORT_MAX_CONNS", value_name = "N", value_parser = parse_int(check_max_conns))]
    max_conns: Option<usize>,

    /// Most connections open at once from one address (IPv6: one /64); 0 = no cap [default: 0]
    #[arg(long, env = "ECHOPORT_MAX_CONNS_PER_IP", value_name = "N", value_parser = parse_int(check_max_conns_per_ip))]
    max_conns_per_ip: Option<u32>,

    /// Listen backlog [default: 1024]
    #[arg(long, env = "ECHOPORT_BACKLOG", value_name = "N", value_parser = parse_int(check_backlog))]
    backlog: Option<u32>,

    /// Receive buffer size in bytes, 512..=16777216 [default: 16384]
    #[arg(long, env = "ECHOPORT_BUFFER_SIZE", value_name = "BYTES", value_parser = parse_int(check_buffer_size))]
    buffer_size: Option<usize>,

    /// Close connections idle this long; 0 = never [default: 300s]
    #[arg(long, env = "ECHOPORT_IDLE_TIMEOUT", value_name = "DUR", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,

    /// How long shutdown waits for open connections to finish [default: 10s]
    #[arg(long, env = "ECHOPORT_SHUTDOWN_TIMEOUT", value_name = "DUR", value_parser = parse_duration)]
    shutdown_timeout: Option<Duration>,

    /// Log line format: text or json [default: text]
    #[arg(long, env = "ECHOPORT_LOG_FORMAT", value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,

    /// Log filter, e.g. info, debug, echoport=trace [default: $RUST_LOG, else info]
    #[arg(long, env = "ECHOPORT_LOG_LEVEL", value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<String>,

    /// How often to log stats; 0 = never [default: 60s]
    #[arg(long, env = "ECHOPORT_STATS_INTERVAL", value_name = "DUR", value_parser = parse_duration)]
    stats_interval: Option<Duration>,

    /// Serve Prometheus metrics over HTTP at ADDR/metrics [default: off]
    #[arg(long, env = "ECHOPORT_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_socket_addr)]
    metrics_listen: Option<SocketAddr>,

    /// Chat: password clients must send with PASS [default: none]
    #[arg(long, env = "ECHOPORT_PASSWORD", value_name = "PW", value_parser = parse_password, help_heading = "Chat mode")]
    password: Option<String>,

    /// Chat: the server's name in replies [default: echoport]
    #[arg(long, env = "ECHOPORT_SERVER_NAME", value_name = "NAME", value_parser = parse_server_name, help_heading = "Chat mode")]
    server_name: Option<String>,

    /// Chat: message-of-the-day file [default: none]
    #[arg(long, env = "ECHOPORT_MOTD", value_name = "FILE", help_heading = "Chat mode")]
    motd: Option<PathBuf>,

    /// Chat: bytes queued for a client before it is dropped with "SendQ exceeded" [default: 1048576]
    #[arg(long, env = "ECHOPORT_SENDQ_BYTES", value_name = "N", value_parser = parse_int(check_sendq), help_heading = "Chat mode")]
    sendq_bytes: Option<usize>,

    /// Chat: longest line a client may send, CR LF included, 64..=512; longer ones get 417 [default: 512]
    #[arg(long, env = "ECHOPORT_MAX_LINE_BYTES", value_name = "N", value_parser = parse_int(check_max_line), help_heading = "Chat mode")]
    max_line_bytes: Option<usize>,

    /// Chat: drop a client whose line stays unfinished this long (slowloris); 0 = never [default: 30s]
    #[arg(long, env = "ECHOPORT_LINE_TIMEOUT", value_name = "DUR", value_parser = parse_duration, help_heading = "Chat mode")]
    line_timeout: Option<Duration>,

    /// Chat: lines per second a client may send on average; 0 = no flood control [default: 10]
    #[arg(long, env = "ECHOPORT_FLOOD_RATE", value_name = "PER_SEC", value_parser = parse_rate, help_heading = "Chat mode")]
    flood_rate: Option<f64>,

    /// Chat: lines a client may send at once above the rate [default: 20]
    #[arg(long, env = "ECHOPORT_FLOOD_BURST", value_name = "N", value_parser = parse_int(check_burst), help_heading = "Chat mode")]
    flood_burst: Option<u32>,

    /// Chat: PING a client silent this long [default: 120s]
    #[arg(long, env = "ECHOPORT_PING_INTERVAL", value_name = "DUR", value_parser = parse_duration, help_heading = "Chat mode")]
    ping_interval: Option<Duration>,

    /// Chat: drop a client that does not answer a PING within this [default: 60s]
    #[arg(long, env = "ECHOPORT_PING_TIMEOUT", value_name = "DUR", value_parser = parse_duration, help_heading = "Chat mode")]
    ping_timeout: Option<Duration>,

    /// Chat: operator credentials for OPER, NAME:PASSWORD; repeatable [default: none]
    #[arg(long = "oper", env = "ECHOPORT_OPER", value_name = "NAME:PASSWORD", value_delimiter = ',', value_parser = parse_oper, help_heading = "Chat mode")]
    oper: Option<Vec<(String, String)>>,
}

impl Config {
    /// Overrides every setting the source gave.
    fn apply(&mut self, s: Settings) {
        // A zero duration switches the feature off, in every source.
        let off_if_zero = |d: Duration| (!d.is_zero()).then_some(d);
        if let Some(v) = s.listen {
            self.listen = v;
        }
        if let Some(v) = s.mode {
            self.mode = v;
        }
        if let Some(v) = s.workers {
            self.workers = v;
        }
        if let Some(v) = s.max_conns {
            self.max_conns = v;
        }
        if let Some(v) = s.max_conns_per_ip {
            self.max_conns_per_ip = v;
        }
        if let Some(v) = s.backlog {
            self.backlog = v;
        }
        if let Some(v) = s.buffer_size {
            self.buffer_size = v;
        }
        if let Some(v) = s.idle_timeout {
            self.idle_timeout = off_if_zero(v);
        }
        if let Some(v) = s.shutdown_timeout {
            self.shutdown_timeout = v;
        }
        if let Some(v) = s.log_format {
            self.log_format = v;
        }
        if let Some(v) = s.log_level {
            self.log_level = Some(v);
        }
        if let Some(v) = s.stats_interval {
            self.stats_interval = off_if_zero(v);
        }
        if let Some(v) = s.metrics_listen {
            self.metrics_listen = Some(v);
        }
        let chat = &mut self.chat;
        if let Some(v) = s.password {
            chat.password = Some(v);
        }
        if let Some(v) = s.server_name {
            chat.server_name = v;
        }
        if let Some(v) = s.motd {
            chat.motd = Some(v);
        }
        if let Some(v) = s.sendq_bytes {
            chat.sendq_bytes = v;
        }
        if let Some(v) = s.max_line_bytes {
            chat.max_line_bytes = v;
        }
        if let Some(v) = s.line_timeout {
            chat.line_timeout = off_if_zero(v);
        }
        if let Some(v) = s.flood_rate {
            chat.flood_rate = v;
        }
        if let Some(v) = s.flood_burst {
            chat.flood_burst = v;
        }
        if let Some(v) = s.ping_interval {
            chat.ping_interval = v.max(Duration::from_secs(1));
        }
        if let Some(v) = s.ping_timeout {
            chat.ping_timeout = v.max(Duration::from_secs(1));
        }
        if let Some(v) = s.oper {
            chat.opers = v;
        }
    }
}

// ---- Validators: one per setting, shared by flags/env and the config file. ----------------

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| format!("invalid socket address '{s}'"))
}

/// A probe target: the first of a comma-separated list (so ECHOPORT_LISTEN works as is), and a
/// wildcard address becomes the loopback address of its family (a server on 0.0.0.0 answers there).
fn parse_probe_target(s: &str) -> Result<SocketAddr, String> {
    let mut addr = parse_socket_addr(s.split(',').next().unwrap_or_default())?;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    Ok(addr)
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.trim() {
        "echo" => Ok(Mode::Echo),
        "chat" => Ok(Mode::Chat),
        other => Err(format!("unknown mode '{other}'; expected 'echo' or 'chat'")),
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format '{other}'; expected 'text' or 'json'")),
    }
}

/// Checked here rather than when logging starts, so a typo is reported against its flag or key.
fn parse_log_level(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid log filter '{s}': {e}"))
}

/// The longest accepted duration. Far beyond any sensible timeout or interval, and small
/// enough that `Instant::now() + d` can never overflow (which would panic).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Whole seconds ("30") or a humantime duration ("30s", "500ms", "2m").
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let parsed = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only, so the only possible failure is overflow.
        s.parse().map(Duration::from_secs).unwrap_or(Duration::MAX)
    } else {
        humantime::parse_duration(s).map_err(|_| {
            format!("invalid duration '{s}'; expected seconds (30) or a duration such as 30s, 500ms, 2m")
        })?
    };
    check_duration(parsed)
}

fn check_duration(d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err("must be at most 365 days".to_owned());
    }
    Ok(d)
}

/// Integers are checked as `i64` (TOML's integer type), so flags and file share the checks
/// below, including the "must be at least" wording for negative numbers.
fn parse_int<T: 'static>(
    check: fn(i64) -> Result<T, String>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim().parse::<i64>() {
        Ok(n) => check(n),
        // Every setting has a lower bound, so let the check word it.
        Err(e) if *e.kind() == IntErrorKind::NegOverflow => check(i64::MIN),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => Err(format!("'{s}' is too large")),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// `n` as a `T` within `min..=max`, or a message naming the bound it broke.
fn in_range<T: TryFrom<i64>>(n: i64, min: i64, max: i64) -> Result<T, String> {
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    if n > max {
        return Err(format!("must be at most {max}"));
    }
    T::try_from(n).map_err(|_| format!("must be at most {max}"))
}

/// Saturates on the (hypothetical) targets where `usize` is wider than `i64`.
fn usize_max() -> i64 {
    i64::try_from(usize::MAX).unwrap_or(i64::MAX)
}

/// Far more threads than any machine has cores; beyond it a typo would only exhaust memory.
const MAX_WORKERS: i64 = 4096;

fn check_workers(n: i64) -> Result<usize, String> {
    in_range(n, 1, MAX_WORKERS)
}

fn check_max_conns(n: i64) -> Result<usize, String> {
    in_range(n, 0, usize_max())
}

fn check_max_conns_per_ip(n: i64) -> Result<u32, String> {
    in_range(n, 0, i64::from(u32::MAX))
}

/// Up to RFC 1459's 512: every line is relayed within that limit. Down to 64, still room for a
/// command and its parameters.
fn check_max_line(n: i64) -> Result<usize, String> {
    in_range(n, 64, 512)
}

/// listen(2) takes a C int.
fn check_backlog(n: i64) -> Result<u32, String> {
    in_range(n, 1, i64::from(i32::MAX))
}

fn check_buffer_size(n: i64) -> Result<usize, String> {
    in_range(n, 512, 16 * 1024 * 1024)
}

// ---- Config file ---------------------------------------------------------------------------

fn check_sendq(n: i64) -> Result<usize, String> {
    in_range(n, 512, i64::from(u32::MAX))
}

fn check_burst(n: i64) -> Result<u32, String> {
    in_range(n, 1, 1_000_000)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    check_rate(rate)
}

fn check_rate(rate: f64) -> Result<f64, String> {
    if !rate.is_finite() || rate < 0.0 {
        return Err("must be a number of at least 0".to_owned());
    }
    Ok(rate)
}

/// IRC parameters cannot hold spaces or line breaks.
fn irc_word(s: &str, what: &str) -> Result<String, String> {
    if s.is_empty() || s.contains([' ', '\r', '\n', '\0']) {
        return Err(format!("{what} must be non-empty, without spaces or line breaks"));
    }
    Ok(s.to_owned())
}

fn parse_password(s: &str) -> Result<String, String> {
    irc_word(s, "the password")
}

fn parse_server_name(s: &str) -> Result<String, String> {
    irc_word(s.trim(), "the server name")
}

fn parse_oper(s: &str) -> Result<(String, String), String> {
    let (name, password) = s.split_once(':').ok_or_else(|| format!("'{s}' is not NAME:PASSWORD"))?;
    Ok((irc_word(name, "the operator name")?, irc_word(password, "the operator password")?))
}

fn read_config_file(path: &Path) -> Result<Settings, ConfigError> {
    let error = |msg: String| ConfigError(format!("config file '{}': {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let table: Table = text.parse().map_err(|e| error(syntax_error(&text, &e)))?;
    settings_from_table(&table).map_err(error)
}

/// "line N: message", using only the first line of toml's message (the rest is a source
/// excerpt that would break the one-line error format).
fn syntax_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().lines().next().unwrap_or("invalid TOML");
    match err.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

/// Checks the table key by key so every error can name its key.
fn settings_from_table(table: &Table) -> Result<Settings, String> {
    let mut s = Settings::default();
    for (key, value) in table {
        let named = |msg: String| format!("key '{key}': {msg}");
        match key.as_str() {
            "listen" => s.listen = Some(listen_value(value).map_err(named)?),
            "mode" => s.mode = Some(str_value(value).and_then(parse_mode).map_err(named)?),
            "workers" => s.workers = Some(int_value(value, check_workers).map_err(named)?),
            "max-conns" => s.max_conns = Some(int_value(value, check_max_conns).map_err(named)?),
            "max-conns-per-ip" => s.max_conns_per_ip = Some(int_value(value, check_max_conns_per_ip).map_err(named)?),
            "backlog" => s.backlog = Some(int_value(value, check_backlog).map_err(named)?),
            "buffer-size" => {
                s.buffer_size = Some(int_value(value, check_buffer_size).map_err(named)?);
            }
            "idle-timeout" => s.idle_timeout = Some(duration_value(value).map_err(named)?),
            "shutdown-timeout" => s.shutdown_timeout = Some(duration_value(value).map_err(named)?),
            "log-format" => {
                s.log_format = Some(str_value(value).and_then(parse_log_format).map_err(named)?);
            }
            "log-level" => {
                s.log_level = Some(str_value(value).and_then(parse_log_level).map_err(named)?);
            }
            "stats-interval" => s.stats_interval = Some(duration_value(value).map_err(named)?),
            "metrics-listen" => s.metrics_listen = Some(str_value(value).and_then(parse_socket_addr).map_err(named)?),
            "password" => s.password = Some(str_value(value).and_then(parse_password).map_err(named)?),
            "server-name" => s.server_name = Some(str_value(value).and_then(parse_server_name).map_err(named)?),
            "motd" => s.motd = Some(PathBuf::from(str_value(value).map_err(named)?)),
            "sendq-bytes" => s.sendq_bytes = Some(int_value(value, check_sendq).map_err(named)?),
            "max-line-bytes" => s.max_line_bytes = Some(int_value(value, check_max_line).map_err(named)?),
            "line-timeout" => s.line_timeout = Some(duration_value(value).map_err(named)?),
            "flood-rate" => s.flood_rate = Some(rate_value(value).map_err(named)?),
            "flood-burst" => s.flood_burst = Some(int_value(value, check_burst).map_err(named)?),
            "ping-interval" => s.ping_interval = Some(duration_value(value).map_err(named)?),
            "ping-timeout" => s.ping_timeout = Some(duration_value(value).map_err(named)?),
            "oper" => s.oper = Some(oper_value(value).map_err(named)?),
            _ => return Err(format!("unknown key '{key}'")),
        }
    }
    Ok(s)
}

fn wrong_type(expected: &str, found: &Value) -> String {
    format!("expected {expected}, found {}", found.type_str())
}

fn str_value(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| wrong_type("a string", value))
}

fn int_value<T>(value: &Value, check: fn(i64) -> Result<T, String>) -> Result<T, String> {
    match value {
        Value::Integer(n) => check(*n),
        other => Err(wrong_type("an integer", other)),
    }
}

/// A string such as "30s", or an integer number of seconds.
fn duration_value(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => parse_duration(s),
        Value::Integer(n) => u64::try_from(*n)
            .map_err(|_| "must be at least 0".to_owned())
            .and_then(|secs| check_duration(Duration::from_secs(secs))),
        other => Err(wrong_type("a duration (a string such as \"30s\" or an integer)", other)),
    }
}

/// A number of lines per second: integer or float.
fn rate_value(value: &Value) -> Result<f64, String> {
    match value {
        Value::Integer(n) => check_rate(*n as f64),
        Value::Float(f) => check_rate(*f),
        other => Err(wrong_type("a number", other)),
    }
}

/// An array of "NAME:PASSWORD" strings.
fn oper_value(value: &Value) -> Result<Vec<(String, String)>, String> {
    match value {
        Value::String(s) => Ok(vec![parse_oper(s)?]),
        Value::Array(items) => items.iter().map(|item| str_value(item).and_then(parse_oper)).collect(),
        other => Err(wrong_type("an array of strings", other)),
    }
}

/// An array of address strings, or a single string for the common one-address case.
fn listen_value(value: &Value) -> Result<Vec<SocketAddr>, String> {
    match value {
        Value::String(s) => Ok(vec![parse_socket_addr(s)?]),
        Value::Array(items) if items.is_empty() => Err("must list at least one address".to_owned()),
        Value::Array(items) => items.iter().map(|item| str_value(item).and_then(parse_socket_addr)).collect(),
        other => Err(wrong_type("an array of strings", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A uniquely named config file in the temp dir, removed on drop.
    struct TempConfig(PathBuf);

    impl TempConfig {
        fn new(contents: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name =
                format!("echoport-config-test-{}-{}.toml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).expect("write temp config");
            TempConfig(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("temp path is UTF-8")
        }
    }

    impl Drop for TempConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        load_from(std::iter::once("echoport").chain(args.iter().copied()))
    }

    fn load_err(args: &[&str]) -> String {
        load(args).expect_err("expected an error").to_string()
    }

    /// The error for a config file with `contents`, with the path shown as PATH.
    fn file_err(contents: &str) -> String {
        let file = TempConfig::new(contents);
        load_err(&["--config", file.path()]).replace(file.path(), "PATH")
    }

    #[test]
    fn defaults() {
        let c = load(&[]).expect("defaults load");
        assert_eq!(c.listen, vec!["127.0.0.1:7007".parse().unwrap()]);
        assert_eq!(c.mode, Mode::Echo);
        assert_eq!(c.workers, default_workers());
        assert!(c.workers >= 2);
        assert_eq!(c.max_conns, 0);
        assert_eq!(c.backlog, 1024);
        assert_eq!(c.buffer_size, 16384);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_level, None);
        assert_eq!(c.stats_interval, Some(Duration::from_secs(60)));
        assert_eq!(c.config_file, None);
    }

    /// Every flag is a config key, and both must stay documented: in config/echoport.toml (set
    /// or commented out) and in README's flag tables. A new flag without docs fails here.
    #[test]
    fn every_flag_is_a_documented_config_key() {
        use clap::CommandFactory;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(root.join("config/echoport.toml")).unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let keys: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .filter(|k| !matches!(k.as_str(), "help" | "version" | "config"))
            .collect();
        assert!(keys.len() >= 20, "{keys:?}");
        for key in &keys {
            let documented = example.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{key} =")));
            assert!(documented, "config/echoport.toml does not document '{key}'");
            assert!(readme.contains(&format!("`--{key}")), "README.md does not document --{key}");
            let table: Table = format!("{key} = []").parse().unwrap();
            if let Err(err) = settings_from_table(&table) {
                assert!(!err.contains("unknown key"), "'{key}' is a flag but not a config key: {err}");
            }
        }
    }

    #[test]
    fn chat_settings_from_flags_and_file() {
        let c = load(&["--mode", "chat"]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:6667".parse().unwrap()], "chat's own default port");
        assert_eq!(c.chat, ChatSettings::default());
        let c = load(&[
            "--mode=chat",
            "--listen=127.0.0.1:7000",
            "--password=pw",
            "--server-name=irc.test",
            "--sendq-bytes=4096",
            "--flood-rate=0",
            "--flood-burst=5",
            "--ping-interval=30s",
            "--ping-timeout=10",
            "--oper=alice:a1",
            "--oper=bob:b2",
        ])
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        let chat = &c.chat;
        assert_eq!((chat.password.as_deref(), chat.server_name.as_str()), (Some("pw"), "irc.test"));
        assert_eq!((chat.sendq_bytes, chat.flood_rate, chat.flood_burst), (4096, 0.0, 5));
        assert_eq!((chat.ping_interval, chat.ping_timeout), (Duration::from_secs(30), Duration::from_secs(10)));
        assert_eq!(chat.opers, [("alice".to_owned(), "a1".to_owned()), ("bob".to_owned(), "b2".to_owned())]);

        let file = TempConfig::new("mode = \"chat\"\nflood-rate = 2.5\noper = [\"x:y\"]\nmotd = \"/m\"\n");
        let c = load(&["--config", file.path()]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:6667".parse().unwrap()]);
        assert_eq!((c.chat.flood_rate, c.chat.opers.len()), (2.5, 1));
        assert_eq!(c.chat.motd.as_deref(), Some(Path::new("/m")));
    }

    #[test]
    fn abuse_limits_from_flags_and_file() {
        let c = load(&[]).unwrap();
        assert_eq!((c.max_conns_per_ip, c.chat.max_line_bytes), (0, 512));
        assert_eq!(c.chat.line_timeout, Some(Duration::from_secs(30)));
        let c = load(&["--max-conns-per-ip=20", "--max-line-bytes=128", "--line-timeout=0"]).unwrap();
        assert_eq!((c.max_conns_per_ip, c.chat.max_line_bytes, c.chat.line_timeout), (20, 128, None));
        let file = TempConfig::new("max-conns-per-ip = 3\nmax-line-bytes = 64\nline-timeout = \"5s\"\n");
        let c = load(&["--config", file.path()]).unwrap();
        assert_eq!((c.max_conns_per_ip, c.chat.max_line_bytes), (3, 64));
        assert_eq!(c.chat.line_timeout, Some(Duration::from_secs(5)));
        assert!(load_err(&["--max-line-bytes", "1000"]).contains("at most 512"));
        assert!(load_err(&["--max-line-bytes", "10"]).contains("at least 64"));
        assert!(load_err(&["--max-conns-per-ip=-1"]).contains("at least 0"));
        let err = file_err("line-timeout = true\n");
        assert!(err.contains("key 'line-timeout'"), "{err}");
    }

    #[test]
    fn chat_setting_errors_name_the_flag_or_key() {
        assert!(load_err(&["--oper", "nocolon"]).contains("is not NAME:PASSWORD"));
        assert!(load_err(&["--flood-rate=-1"]).contains("at least 0"));
        assert!(load_err(&["--sendq-bytes", "10"]).contains("at least 512"));
        assert!(load_err(&["--password", "a b"]).contains("without spaces"));
        let file = TempConfig::new("flood-rate = \"fast\"\n");
        let err = load_err(&["--config", file.path()]);
        assert!(err.ends_with("key 'flood-rate': expected a number, found string"), "{err}");
    }

    #[test]
    fn every_flag() {
        let c = load(&[
            "--listen",
            "0.0.0.0:1",
            "--listen",
            "[::1]:2",
            "--mode",
            "echo",
            "--workers",
            "3",
            "--max-conns",
            "50000",
            "--backlog",
            "16",
            "--buffer-size",
            "512",
            "--idle-timeout",
            "0",
            "--shutdown-timeout",
            "500ms",
            "--log-format",
            "json",
            "--log-level",
            "echoport=trace",
            "--stats-interval",
            "2m",
        ])
        .expect("valid flags");
        let listen: Vec<SocketAddr> = vec!["0.0.0.0:1".parse().unwrap(), "[::1]:2".parse().unwrap()];
        assert_eq!(c.listen, listen);
        assert_eq!(c.workers, 3);
        assert_eq!(c.max_conns, 50000);
        assert_eq!(c.backlog, 16);
        assert_eq!(c.buffer_size, 512);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level.as_deref(), Some("echoport=trace"));
        assert_eq!(c.stats_interval, Some(Duration::from_secs(120)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
        let too_long = Err("must be at most 365 days".to_owned());
        assert_eq!(parse_duration("366days"), too_long);
        assert_eq!(parse_duration("99999999999999999999999"), too_long);
    }

    #[test]
    fn zero_turns_timers_off() {
        let c = load(&["--idle-timeout", "0s", "--stats-interval", "0"]).expect("valid flags");
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.stats_interval, None);
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let file = TempConfig::new("workers = 3\nbacklog = 99\nidle-timeout = 0\n");
        let c = load(&["--config", file.path()]).expect("valid file");
        assert_eq!(c.workers, 3);
        assert_eq!(c.backlog, 99);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.config_file.as_deref(), Some(Path::new(file.path())));

        let c = load(&["--config", file.path(), "--workers", "7"]).expect("valid");
        assert_eq!(c.workers, 7, "flag beats file");
        assert_eq!(c.backlog, 99, "file still beats default");
    }

    #[test]
    fn file_value_shapes() {
        let file = TempConfig::new(
            "listen = \"[::1]:9\"\nidle-timeout = \"1m\"\nshutdown-timeout = 5\n\
             stats-interval = \"0\"\nlog-format = \"json\"\nmode = \"echo\"\n",
        );
        let c = load(&["--config", file.path()]).expect("valid file");
        assert_eq!(c.listen, vec!["[::1]:9".parse().unwrap()]);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.stats_interval, None);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn example_config_file_loads_with_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/echoport.toml");
        let path = path.to_str().expect("manifest dir is UTF-8");
        let c = load(&["--config", path]).expect("the example config is valid");
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.mode, d.mode);
        assert_eq!(c.max_conns, d.max_conns);
        assert_eq!(c.backlog, d.backlog);
        assert_eq!(c.buffer_size, d.buffer_size);
        assert_eq!(c.idle_timeout, d.idle_timeout);
        assert_eq!(c.shutdown_timeout, d.shutdown_timeout);
        assert_eq!(c.log_format, d.log_format);
        assert_eq!(c.stats_interval, d.stats_interval);
    }

    /// workers and log-level are shown commented out; they must be valid once uncommented.
    #[test]
    fn example_config_file_commented_keys_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/echoport.toml");
        let text = std::fs::read_to_string(path).expect("read example config");
        let text = text.replace("# workers = ", "workers = ").replace("# log-level = ", "log-level = ");
        let file = TempConfig::new(&text);
        let c = load(&["--config", file.path()]).expect("uncommented example is valid");
        assert_eq!(c.workers, 8);
        assert_eq!(c.log_level.as_deref(), Some("info"));
    }

    #[test]
    fn flag_errors() {
        assert_eq!(load_err(&["--workers", "0"]), "invalid value '0' for '--workers <N>': must be at least 1");
        assert_eq!(
            load_err(&["--listen", "nonsense"]),
            "invalid value 'nonsense' for '--listen <ADDR>': invalid socket address 'nonsense'"
        );
        assert_eq!(
            load_err(&["--buffer-size", "100"]),
            "invalid value '100' for '--buffer-size <BYTES>': must be at least 512"
        );
        assert_eq!(
            load_err(&["--buffer-size", "16777217"]),
            "invalid value '16777217' for '--buffer-size <BYTES>': must be at most 16777216"
        );
        assert_eq!(load_err(&["--backlog", "0"]), "invalid value '0' for '--backlog <N>': must be at least 1");
        assert_eq!(
            load_err(&["--max-conns", "many"]),
            "invalid value 'many' for '--max-conns <N>': 'many' is not a whole number"
        );
        assert_eq!(
            load_err(&["--workers", "99999999999999999999"]),
            "invalid value '99999999999999999999' for '--workers <N>': \
             '99999999999999999999' is too large"
        );
        assert_eq!(
            load_err(&["--workers=-99999999999999999999"]),
            "invalid value '-99999999999999999999' for '--workers <N>': must be at least 1"
        );
        assert!(load_err(&["--idle-timeout", "soon"]).contains("invalid duration 'soon'"));
        assert!(load_err(&["--log-format", "xml"]).contains("expected 'text' or 'json'"));
    }

    #[test]
    fn unknown_mode_is_rejected() {
        assert_eq!(
            load_err(&["--mode", "irc"]),
            "invalid value 'irc' for '--mode <MODE>': unknown mode 'irc'; expected 'echo' or 'chat'"
        );
    }

    #[test]
    fn help_has_examples() {
        let help = load_err(&["--help"]);
        assert!(help.contains("Examples:"), "{help}");
        assert!(help.contains("echoport --config config/echoport.toml"), "{help}");
        assert!(help.contains("ECHOPORT_<FLAG>"), "{help}");
    }

    #[test]
    fn file_cannot_be_read() {
        let err = load_err(&["--config", "/nonexistent/echoport.toml"]);
        assert_eq!(
            err,
            "config file '/nonexistent/echoport.toml': cannot read: \
             No such file or directory (os error 2)"
        );
    }

    #[test]
    fn file_syntax_error_names_the_line() {
        let err = file_err("workers = 3\n\nbacklog = = 4\n");
        assert!(err.starts_with("config file 'PATH': line 3: "), "{err}");
        assert!(!err.contains('\n'), "one line only: {err}");
    }

    #[test]
    fn file_unknown_key() {
        assert_eq!(file_err("bogus = 1\n"), "config file 'PATH': unknown key 'bogus'");
        assert_eq!(file_err("config = \"x\"\n"), "config file 'PATH': unknown key 'config'");
        assert_eq!(file_err("[server]\nworkers = 1\n"), "config file 'PATH': unknown key 'server'");
    }

    #[test]
    fn file_wrong_type() {
        assert_eq!(
            file_err("workers = \"four\"\n"),
            "config file 'PATH': key 'workers': expected an integer, found string"
        );
        assert_eq!(
            file_err("log-format = 1\n"),
            "config file 'PATH': key 'log-format': expected a string, found integer"
        );
        assert_eq!(
            file_err("listen = 7007\n"),
            "config file 'PATH': key 'listen': expected an array of strings, found integer"
        );
        assert_eq!(file_err("listen = [7007]\n"), "config file 'PATH': key 'listen': expected a string, found integer");
        assert_eq!(
            file_err("idle-timeout = true\n"),
            "config file 'PATH': key 'idle-timeout': \
             expected a duration (a string such as \"30s\" or an integer), found boolean"
        );
    }

    #[test]
    fn file_bad_values() {
        assert_eq!(file_err("workers = 0\n"), "config file 'PATH': key 'workers': must be at least 1");
        assert_eq!(
            file_err("buffer-size = 100000000\n"),
            "config file 'PATH': key 'buffer-size': must be at most 16777216"
        );
        assert_eq!(
            file_err("listen = [\"127.0.0.1:1\", \"nonsense\"]\n"),
            "config file 'PATH': key 'listen': invalid socket address 'nonsense'"
        );
        assert_eq!(file_err("listen = []\n"), "config file 'PATH': key 'listen': must list at least one address");
        assert_eq!(
            file_err("mode = \"irc\"\n"),
            "config file 'PATH': key 'mode': unknown mode 'irc'; expected 'echo' or 'chat'"
        );
        assert_eq!(file_err("stats-interval = -1\n"), "config file 'PATH': key 'stats-interval': must be at least 0");
        assert_eq!(
            file_err("shutdown-timeout = 99999999999\n"),
            "config file 'PATH': key 'shutdown-timeout': must be at most 365 days"
        );
        assert_eq!(file_err("log-level = \"\"\n"), "config file 'PATH': key 'log-level': must not be empty");
    }
}
