//! Command line, environment and config-file settings, resolved into one validated [`Config`].
//!
//! Each setting is declared once, as a clap field of [`Config`] or [`ChatSettings`]: flag, help,
//! ECHOPORT_* variable, built-in default and its one validator (the value parser). Clap applies
//! flag > environment variable > default; the config file gets its place by becoming the
//! defaults. Each key names a flag; its TOML value is turned into the text that flag would take,
//! checked by that flag's own value parser and installed as the flag's default before the final
//! parse. So a bad value is described the same way wherever it came from.

use std::error::Error as _;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::num::{IntErrorKind, NonZero};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches, Id, Parser};
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

/// `--io`: which backend the completion port runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring if this kernel and process allow it, else epoll.
    Auto,
    /// This one, or the server does not start.
    Only(crate::port::Io),
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

// Timers that zero switches off are spelled `std::option::Option<Duration>`: clap then takes the
// whole `Option` as the flag's value (see `off_if_zero`) instead of making the flag optional.

/// Fully resolved and validated settings. The doc comments are the `--help` lines.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on; repeat for several; unset = 127.0.0.1:7007 (chat: 127.0.0.1:6667)
    // Empty after parsing means given nowhere; `with_mode_listen` then puts the mode's default in.
    #[arg(long, env = "ECHOPORT_LISTEN", value_name = "ADDR", value_delimiter = ',', value_parser = parse_socket_addr)]
    pub listen: Vec<SocketAddr>,

    /// What to do with connections: echo (RFC 862) or chat (IRC)
    #[arg(long, env = "ECHOPORT_MODE", value_name = "MODE", default_value = "echo", value_parser = parse_mode)]
    pub mode: Mode,

    /// I/O backend: auto (io_uring where it works, else epoll; the log says why), uring, epoll
    #[arg(long, env = "ECHOPORT_IO", value_name = "IO", default_value = "auto", value_parser = parse_io)]
    pub io: IoChoice,

    /// Worker threads; unset = 2 x CPUs
    #[arg(long, env = "ECHOPORT_WORKERS", value_name = "N", default_value_t = default_workers(), hide_default_value = true,
          value_parser = int_in::<usize>(1, MAX_WORKERS.into()))]
    pub workers: usize,

    /// Most connections open at once; 0 = only the open-file limit
    #[arg(long, env = "ECHOPORT_MAX_CONNS", value_name = "N", default_value_t = 0, value_parser = int_in::<usize>(0, usize_max()))]
    pub max_conns: usize,

    /// Most connections open at once from one address (IPv6: one /64); 0 = no cap
    #[arg(long, env = "ECHOPORT_MAX_CONNS_PER_IP", value_name = "N", default_value_t = 0,
          value_parser = int_in::<u32>(0, u32::MAX.into()))]
    pub max_conns_per_ip: u32,

    /// Listen backlog
    // listen(2) takes a C int.
    #[arg(long, env = "ECHOPORT_BACKLOG", value_name = "N", default_value_t = 1024, value_parser = int_in::<u32>(1, i32::MAX.into()))]
    pub backlog: u32,

    /// Receive buffer size in bytes, 512..=16777216
    #[arg(long, env = "ECHOPORT_BUFFER_SIZE", value_name = "BYTES", default_value_t = 16 * 1024,
          value_parser = int_in::<usize>(512, 16 * 1024 * 1024))]
    pub buffer_size: usize,

    /// Close connections idle this long; 0 = never
    #[arg(long, env = "ECHOPORT_IDLE_TIMEOUT", value_name = "DUR", default_value = "300s", value_parser = off_if_zero)]
    pub idle_timeout: std::option::Option<Duration>,

    /// How long shutdown waits for open connections to finish
    #[arg(long, env = "ECHOPORT_SHUTDOWN_TIMEOUT", value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log line format: text or json
    #[arg(long, env = "ECHOPORT_LOG_FORMAT", value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,

    /// Log filter, e.g. info, debug, echoport=trace; unset = $RUST_LOG, else info
    // `None` = the caller decides.
    #[arg(long, env = "ECHOPORT_LOG_LEVEL", value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// How often to log stats; 0 = never
    #[arg(long, env = "ECHOPORT_STATS_INTERVAL", value_name = "DUR", default_value = "60s", value_parser = off_if_zero)]
    pub stats_interval: std::option::Option<Duration>,

    /// Serve Prometheus metrics over HTTP at ADDR/metrics; unset = off
    #[arg(long, env = "ECHOPORT_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_socket_addr)]
    pub metrics_listen: Option<SocketAddr>,

    /// TOML config file; its keys are the flag names without "--"
    // Not a config key itself (see `is_file_key`).
    #[arg(long = "config", env = "ECHOPORT_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsSettings,

    #[command(flatten, next_help_heading = "Chat mode")]
    pub chat: ChatSettings,
}

/// TLS listeners and the certificate they present.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// Address to accept TLS connections on, beside --listen; repeat for several; unset = none
    #[arg(long, env = "ECHOPORT_TLS_LISTEN", value_name = "ADDR", value_delimiter = ',',
          value_parser = parse_socket_addr)]
    pub tls_listen: Vec<SocketAddr>,

    /// TLS certificate chain, PEM, the server's own certificate first; re-read on SIGHUP
    #[arg(long, env = "ECHOPORT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP
    #[arg(long, env = "ECHOPORT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Close a TLS connection whose handshake has not finished within this
    #[arg(long, env = "ECHOPORT_TLS_HANDSHAKE_TIMEOUT", value_name = "DUR", default_value = "10s",
          value_parser = at_least_a_second)]
    pub tls_handshake_timeout: Duration,
}

/// Chat-mode settings.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ChatSettings {
    /// Chat: password clients must send with PASS; unset = none
    #[arg(long, env = "ECHOPORT_PASSWORD", value_name = "PW", value_parser = parse_password)]
    pub password: Option<String>,

    /// Chat: the server's name in replies
    #[arg(long, env = "ECHOPORT_SERVER_NAME", value_name = "NAME", default_value = "echoport", value_parser = parse_server_name)]
    pub server_name: String,

    /// Chat: the server's description (LINKS, WHOIS 312); unset = "echoport IRC server"
    #[arg(long, env = "ECHOPORT_SERVER_INFO", value_name = "TEXT", value_parser = parse_server_info)]
    pub server_info: Option<String>,

    /// Chat: message-of-the-day file; unset = none
    #[arg(long, env = "ECHOPORT_MOTD", value_name = "FILE")]
    pub motd: Option<PathBuf>,

    /// Chat: bytes queued for a client before it is dropped with "SendQ exceeded"
    #[arg(long, env = "ECHOPORT_SENDQ_BYTES", value_name = "N", default_value_t = 1024 * 1024,
          value_parser = int_in::<usize>(512, u32::MAX.into()))]
    pub sendq_bytes: usize,

    /// Chat: longest line a client may send, CR LF included, 64..=512, not counting its IRCv3
    /// tags (4096 bytes more); longer ones get 417
    // Up to RFC 1459's 512: every line is relayed within that limit. Down to 64, still room for a
    // command and its parameters.
    #[arg(long, env = "ECHOPORT_MAX_LINE_BYTES", value_name = "N", default_value_t = 512, value_parser = int_in::<usize>(64, 512))]
    pub max_line_bytes: usize,

    /// Chat: drop a client whose line stays unfinished this long (slowloris); 0 = never
    #[arg(long, env = "ECHOPORT_LINE_TIMEOUT", value_name = "DUR", default_value = "30s", value_parser = off_if_zero)]
    pub line_timeout: std::option::Option<Duration>,

    /// Chat: lines per second a client may send on average; 0 = no flood control
    #[arg(long, env = "ECHOPORT_FLOOD_RATE", value_name = "PER_SEC", default_value_t = 10.0, value_parser = parse_rate)]
    pub flood_rate: f64,

    /// Chat: lines a client may send at once above the rate
    #[arg(long, env = "ECHOPORT_FLOOD_BURST", value_name = "N", default_value_t = 20, value_parser = int_in::<u32>(1, 1_000_000))]
    pub flood_burst: u32,

    /// Chat: PING a client silent this long
    #[arg(long, env = "ECHOPORT_PING_INTERVAL", value_name = "DUR", default_value = "120s", value_parser = at_least_a_second)]
    pub ping_interval: Duration,

    /// Chat: drop a client that does not answer a PING within this
    #[arg(long, env = "ECHOPORT_PING_TIMEOUT", value_name = "DUR", default_value = "60s", value_parser = at_least_a_second)]
    pub ping_timeout: Duration,

    /// Chat: messages kept per channel for CHATHISTORY (IRCv3 draft/chathistory); 0 = none
    #[arg(long, env = "ECHOPORT_HISTORY", value_name = "N", default_value_t = 0, value_parser = int_in::<usize>(0, 100_000))]
    pub history: usize,

    /// Chat: bytes of channel history kept, all channels together
    #[arg(long, env = "ECHOPORT_HISTORY_BYTES", value_name = "BYTES", default_value_t = 64 << 20,
          value_parser = int_in::<usize>(0, i64::MAX))]
    pub history_bytes: usize,

    /// Chat: advertise IRCv3 STS (strict transport security) with this TLS port: plain clients
    /// are told to reconnect there; unset = none
    #[arg(long, env = "ECHOPORT_STS_PORT", value_name = "N", value_parser = int_in::<u16>(1, u16::MAX.into()))]
    pub sts_port: Option<u16>,

    /// Chat: how long clients that reached us over TLS keep to TLS (the STS policy's duration)
    #[arg(long, env = "ECHOPORT_STS_DURATION", value_name = "DUR", default_value = "30d", value_parser = parse_duration)]
    pub sts_duration: Duration,

    /// Chat: join the network of every instance with this Redis URL (redis://HOST:PORT[/DB]):
    /// one set of nicks, channels and messages across instances; unset = on its own
    #[arg(long, env = "ECHOPORT_CLUSTER", value_name = "URL", value_parser = parse_cluster_url)]
    pub cluster: Option<String>,

    /// Chat: this instance's name in the network (logs, metrics); unset = the server name
    #[arg(long, env = "ECHOPORT_NODE_NAME", value_name = "NAME", value_parser = parse_server_name)]
    pub node_name: Option<String>,

    /// Chat: refuse text that is not UTF-8 (FAIL ... INVALID_UTF8) and advertise UTF8ONLY;
    /// off relays bytes as they came
    #[arg(long, env = "ECHOPORT_UTF8_ONLY", value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    pub utf8_only: bool,

    /// Chat: operator credentials for OPER, NAME:PASSWORD or NAME:HASH (argon2 or bcrypt, as
    /// `echoport hash-password` makes; a plain password here is visible in `ps`); repeatable;
    /// unset = none
    // No clap value delimiter: a PHC hash has commas of its own (see `Credentials`). The env
    // value is not shown in --help: it may hold a password.
    #[arg(long = "oper", env = "ECHOPORT_OPER", hide_env_values = true, value_name = "NAME:PASSWORD", value_parser = parse_opers)]
    pub opers: Vec<Credentials>,

    /// Chat: an account for SASL PLAIN, NAME:HASH (argon2 or bcrypt, as `echoport hash-password`
    /// makes; never a plain password); repeatable; unset = none (no SASL)
    #[arg(long = "account", env = "ECHOPORT_ACCOUNT", hide_env_values = true, value_name = "NAME:HASH", value_parser = parse_accounts)]
    pub accounts: Vec<Credentials>,
}

/// NAME:SECRET pairs from one `--oper` or `--account` value (or one item of the file's array).
/// Commas separate pairs, as in every ECHOPORT_* list, except that a piece without a colon
/// continues the pair before it: that is the `m=...,t=...,p=...` of an argon2 hash (a hash never
/// has a colon), or a comma in a plain password. So a hash is given as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials(pub Vec<(String, String)>);

impl ChatSettings {
    /// Every `--oper` pair, in order.
    pub fn oper_list(&self) -> Vec<(String, String)> {
        self.opers.iter().flat_map(|c| c.0.iter().cloned()).collect()
    }

    /// This instance's name in a network: `--node-name`, else the server name.
    pub fn node(&self) -> &str {
        self.node_name.as_deref().unwrap_or(&self.server_name)
    }

    /// Every `--account` pair, in order.
    pub fn account_list(&self) -> Vec<(String, String)> {
        self.accounts.iter().flat_map(|c| c.0.iter().cloned()).collect()
    }
}

/// The built-in defaults, whatever the environment says.
impl Default for Config {
    fn default() -> Self {
        built_in::<Config>().with_mode_listen()
    }
}

impl Default for ChatSettings {
    fn default() -> Self {
        built_in()
    }
}

/// What clap makes of no arguments and no environment: the defaults declared on the fields.
fn built_in<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(Command::new("echoport")).mut_args(|arg| arg.env(None));
    let parsed = cmd.try_get_matches_from(["echoport"]).and_then(|m| T::from_arg_matches(&m));
    parsed.expect("the built-in defaults are valid (tested)")
}

impl Config {
    /// `listen`'s default depends on the mode, so it is filled in after parsing.
    fn with_mode_listen(mut self) -> Self {
        if self.listen.is_empty() {
            self.listen = vec![self.mode.default_listen()];
        }
        self
    }
}

/// The article's choice, twice the CPUs. The port keeps at most one awake per core; the others
/// wait as spares, so the extra threads cost only their stacks.
fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, NonZero::get);
    (2 * cpus).min(MAX_WORKERS.into())
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
    /// Keeps clap's one-line summary (`invalid value '0' for '--workers <N>': ...`) and drops
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
/// A subcommand (`check`, `hash-password`) is returned as such; otherwise the server configuration.
pub fn invocation() -> Result<Invocation, ConfigError> {
    let cli = parse(std::env::args_os(), |e| e.exit())?;
    Ok(match cli.command {
        Some(Subcommand::Check(args)) => Invocation::Check(args),
        Some(Subcommand::HashPassword) => Invocation::HashPassword,
        None => Invocation::Serve(Box::new(cli.config)),
    })
}

/// Like [`invocation`] for the server configuration, from explicit arguments (`args[0]` is the
/// program name). Clap errors are returned instead of exiting. Environment variables are still read.
pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse(args, |e| ConfigError::from_clap(&e)).map(|cli| cli.config)
}

/// Parses twice: flags and env alone say where the config file is; then again with the file's
/// values as the defaults, so clap applies flag > env > file > built-in default.
fn parse<I, T>(args: I, clap_error: impl Fn(clap::Error) -> ConfigError) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let given = Cli::command().try_get_matches_from(&args).map_err(&clap_error)?;
    let mut cli = Cli::from_arg_matches(&given).map_err(&clap_error)?;
    // `check` probes a running server and `hash-password` hashes stdin; the server's config file
    // is the business of neither.
    if let (None, Some(path)) = (&cli.command, cli.config.config_file.clone()) {
        let cmd = with_file_defaults(Cli::command(), &path, &given)?;
        let matches = cmd.try_get_matches_from(&args).map_err(&clap_error)?;
        cli = Cli::from_arg_matches(&matches).map_err(&clap_error)?;
    }
    cli.config = cli.config.with_mode_listen();
    if cli.config.mode == Mode::Echo && cli.config.chat.cluster.is_some() {
        return Err(ConfigError("--cluster: a network of instances is for --mode chat".to_owned()));
    }
    Ok(cli)
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
    config: Config,
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// Probe a running server: one echo round trip (PING/PONG with --mode chat); exit status 0
    /// when it answered correctly, 1 with a one-line reason otherwise (for health checks)
    Check(CheckArgs),
    /// Read a password (one line) from standard input and print its argon2id hash, for
    /// `account = ["NAME:HASH"]` or `--oper NAME:HASH`
    HashPassword,
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
    /// Probe over TLS; the certificate is checked against --tls-ca (for the target's IP address),
    /// or not at all with --insecure
    #[arg(long)]
    pub tls: bool,
    /// With --tls: accept any certificate (self-signed ones); the handshake is still verified
    #[arg(long, requires = "tls", conflicts_with = "tls_ca")]
    pub insecure: bool,
    /// With --tls: trust the certificates in this PEM file (a CA, or the server's own certificate)
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Config>),
    Check(CheckArgs),
    HashPassword,
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

fn parse_io(s: &str) -> Result<IoChoice, String> {
    use crate::port::Io;
    match s.trim() {
        "auto" => Ok(IoChoice::Auto),
        "uring" | "io_uring" => Ok(IoChoice::Only(Io::Uring)),
        "epoll" => Ok(IoChoice::Only(Io::Epoll)),
        other => Err(format!("unknown I/O backend '{other}'; expected 'auto', 'uring' or 'epoll'")),
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
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parsed = if digits(s) {
        // Digits only, so the only possible failure is overflow.
        s.parse().map(Duration::from_secs).unwrap_or(Duration::MAX)
    } else if s.strip_prefix('-').is_some_and(digits) {
        return Err("must be at least 0".to_owned());
    } else {
        humantime::parse_duration(s).map_err(|_| {
            format!("invalid duration '{s}'; expected seconds (30) or a duration such as 30s, 500ms, 2m")
        })?
    };
    if parsed > MAX_DURATION {
        return Err("must be at most 365 days".to_owned());
    }
    Ok(parsed)
}

/// A timer that zero switches off, in every source.
fn off_if_zero(s: &str) -> Result<Option<Duration>, String> {
    parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
}

/// The PING timers: below a second they would only make the server busy, so they are raised to it.
fn at_least_a_second(s: &str) -> Result<Duration, String> {
    parse_duration(s).map(|d| d.max(Duration::from_secs(1)))
}

/// An integer in `min..=max`. Integers are read as `i64` (TOML's integer type), so a flag and
/// a file key get the same "must be at least" wording, negative numbers included.
fn int_in<T: TryFrom<i64> + Clone + Send + Sync + 'static>(
    min: i64,
    max: i64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let n = match s.trim().parse::<i64>() {
            Ok(n) => n,
            // Below any lower bound.
            Err(e) if *e.kind() == IntErrorKind::NegOverflow => i64::MIN,
            Err(e) if *e.kind() == IntErrorKind::PosOverflow => return Err(format!("'{s}' is too large")),
            Err(_) => return Err(format!("'{s}' is not a whole number")),
        };
        if n < min {
            return Err(format!("must be at least {min}"));
        }
        if n > max {
            return Err(format!("must be at most {max}"));
        }
        T::try_from(n).map_err(|_| format!("must be at most {max}"))
    }
}

/// Saturates on the (hypothetical) targets where `usize` is wider than `i64`.
fn usize_max() -> i64 {
    i64::try_from(usize::MAX).unwrap_or(i64::MAX)
}

/// Far more threads than any machine has cores; beyond it a typo would only exhaust memory.
const MAX_WORKERS: u16 = 4096;

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
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

/// Any text that fits a trailing parameter: no CR, LF or NUL, at most 100 bytes.
fn parse_server_info(s: &str) -> Result<String, String> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) || s.len() > 100 {
        return Err("the server info must be one line of at most 100 bytes".to_owned());
    }
    Ok(s.to_owned())
}

/// A Redis URL the `redis` crate can use (checked now, so a typo stops the start, not the
/// first connection attempt).
fn parse_cluster_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.starts_with("redis://") {
        return Err("the cluster URL must look like redis://HOST:PORT[/DB]".to_owned());
    }
    redis::Client::open(s).map(|_| s.to_owned()).map_err(|e| format!("bad Redis URL: {e}"))
}

fn parse_server_name(s: &str) -> Result<String, String> {
    irc_word(s.trim(), "the server name")
}

/// See [`Credentials`]: splits at the commas that start a new NAME:SECRET pair.
fn credential_pieces(s: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for piece in s.split(',') {
        match pieces.last_mut() {
            Some(last) if !piece.contains(':') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => pieces.push(piece.to_owned()),
        }
    }
    pieces
}

/// Operator credentials: a secret starting with `$` is a hash and must be a valid one; any other
/// is a plain-text password.
fn parse_opers(s: &str) -> Result<Credentials, String> {
    let mut pairs = Vec::new();
    for piece in credential_pieces(s) {
        let (name, secret) = piece.split_once(':').ok_or_else(|| format!("'{piece}' is not NAME:PASSWORD"))?;
        let name = irc_word(name, "the operator name")?;
        if crate::chat::passwords::is_hash(secret) {
            crate::chat::passwords::check(secret).map_err(|e| format!("operator '{name}': {e}"))?;
        }
        pairs.push((name, irc_word(secret, "the operator password")?));
    }
    Ok(Credentials(pairs))
}

/// Accounts: the secret must be a valid hash; a plain-text password is refused (and not echoed).
fn parse_accounts(s: &str) -> Result<Credentials, String> {
    let mut pairs = Vec::new();
    for piece in credential_pieces(s) {
        let Some((name, hash)) = piece.split_once(':') else {
            return Err("an account is NAME:HASH, with no colon here".to_owned());
        };
        let name = irc_word(name, "the account name")?;
        crate::chat::passwords::check(hash).map_err(|e| format!("account '{name}': {e}"))?;
        pairs.push((name, hash.to_owned()));
    }
    Ok(Credentials(pairs))
}

// ---- Config file ---------------------------------------------------------------------------

/// `cmd` with the config file's values installed as its args' defaults.
fn with_file_defaults(mut cmd: Command, path: &Path, given: &ArgMatches) -> Result<Command, ConfigError> {
    let error = |msg: String| ConfigError(format!("config file '{}': {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let table: Table = text.parse().map_err(|e| error(syntax_error(&text, &e)))?;
    for (id, values) in file_values(&cmd, &table).map_err(error)? {
        // Clap applies a default only where no flag or env var gave the arg, so that is the only
        // place the file's value can matter. There it is installed without the arg's value
        // delimiter (which splits env lists): the file's arrays already separate the values, so
        // `oper = ["a:b,c"]` stays one credential.
        let source = given.value_source(id.as_str());
        if !matches!(source, Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            cmd = cmd.mut_arg(id, |arg| arg.default_values(values).value_delimiter(None));
        }
    }
    Ok(cmd)
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

/// Every setting has an ECHOPORT_* variable; `--config` has one too, but a file cannot name
/// another file.
fn is_file_key(arg: &Arg) -> bool {
    arg.get_env().is_some() && arg.get_long() != Some("config")
}

/// Each key's value as the flag values it stands for, checked key by key so every error can name
/// its key.
fn file_values(cmd: &Command, table: &Table) -> Result<Vec<(Id, Vec<String>)>, String> {
    let arg_named = |key: &str| cmd.get_arguments().find(|a| a.get_long() == Some(key) && is_file_key(a));
    let mut found = Vec::new();
    for (key, value) in table {
        let arg = arg_named(key).ok_or_else(|| format!("unknown key '{key}'"))?;
        let values = flag_values(arg, value).and_then(|v| validate(arg, v)).map_err(|e| format!("key '{key}': {e}"))?;
        found.push((arg.get_id().clone(), values));
    }
    Ok(found)
}

/// The TOML types a key takes, which follow from its flag.
#[derive(Clone, Copy)]
enum Kind {
    /// A repeatable flag: an array of strings, or one string for the common single case.
    Strings,
    /// The same, for addresses to listen on: an empty list would listen nowhere.
    Addresses,
    /// `N`, `BYTES`.
    Integer,
    /// `DUR`: a string such as "30s", or an integer number of seconds.
    Duration,
    /// `PER_SEC`: integer or float.
    Number,
    /// `BOOL`: true or false.
    Bool,
    Text,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        let value_name = arg.get_value_names().and_then(<[_]>::first).map_or("", |n| n.as_str());
        match (arg.get_action(), value_name) {
            (ArgAction::Append, "ADDR") => Kind::Addresses,
            (ArgAction::Append, _) => Kind::Strings,
            (_, "N" | "BYTES") => Kind::Integer,
            (_, "DUR") => Kind::Duration,
            (_, "PER_SEC") => Kind::Number,
            (_, "BOOL") => Kind::Bool,
            _ => Kind::Text,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Strings | Kind::Addresses => "an array of strings",
            Kind::Integer => "an integer",
            Kind::Duration => "a duration (a string such as \"30s\" or an integer)",
            Kind::Number => "a number",
            Kind::Bool => "true or false",
            Kind::Text => "a string",
        }
    }
}

/// A TOML value as the text(s) its flag would take.
fn flag_values(arg: &Arg, value: &Value) -> Result<Vec<String>, String> {
    let kind = Kind::of(arg);
    Ok(match (kind, value) {
        (Kind::Addresses, Value::Array(items)) if items.is_empty() => {
            return Err("must list at least one address".to_owned());
        }
        (Kind::Strings | Kind::Addresses, Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| wrong_type("a string", item)))
            .collect::<Result<_, _>>()?,
        (Kind::Strings | Kind::Addresses | Kind::Duration | Kind::Text, Value::String(s)) => vec![s.clone()],
        (Kind::Integer | Kind::Duration | Kind::Number, Value::Integer(n)) => vec![n.to_string()],
        (Kind::Number, Value::Float(f)) => vec![f.to_string()],
        (Kind::Bool, Value::Boolean(b)) => vec![b.to_string()],
        _ => return Err(wrong_type(kind.expected(), value)),
    })
}

fn wrong_type(expected: &str, found: &Value) -> String {
    format!("expected {expected}, found {}", found.type_str())
}

/// Runs the values through the flag's own value parser, by parsing them as `--flag=value` with a
/// one-flag command; the message is the parser's own, without clap's "invalid value" frame.
fn validate(arg: &Arg, values: Vec<String>) -> Result<Vec<String>, String> {
    if values.is_empty() {
        return Ok(values);
    }
    let flag = arg.get_long().unwrap_or_default();
    let probe = Command::new("file").no_binary_name(true).arg(arg.clone().value_delimiter(None));
    match probe.try_get_matches_from(values.iter().map(|v| format!("--{flag}={v}"))) {
        Ok(_) => Ok(values),
        Err(e) => Err(e.source().map_or_else(|| ConfigError::from_clap(&e).0, ToString::to_string)),
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
            if let Err(err) = file_values(&Cli::command(), &table) {
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
        assert_eq!(chat.oper_list(), [("alice".to_owned(), "a1".to_owned()), ("bob".to_owned(), "b2".to_owned())]);

        let file = TempConfig::new("mode = \"chat\"\nflood-rate = 2.5\noper = [\"x:y\"]\nmotd = \"/m\"\n");
        let c = load(&["--config", file.path()]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:6667".parse().unwrap()]);
        assert_eq!((c.chat.flood_rate, c.chat.oper_list().len()), (2.5, 1));
        assert_eq!(c.chat.motd.as_deref(), Some(Path::new("/m")));
    }

    #[test]
    fn server_info_is_one_short_line() {
        assert_eq!(load(&[]).unwrap().chat.server_info, None);
        assert_eq!(load(&["--server-info", "test server"]).unwrap().chat.server_info.as_deref(), Some("test server"));
        assert!(load_err(&["--server-info", &"x".repeat(101)]).contains("at most 100 bytes"));
    }

    #[test]
    fn utf8_only_is_a_switch_in_flags_env_style_and_file() {
        assert!(!load(&[]).unwrap().chat.utf8_only);
        assert!(load(&["--utf8-only"]).unwrap().chat.utf8_only);
        assert!(!load(&["--utf8-only=false"]).unwrap().chat.utf8_only);
        let file = TempConfig::new("utf8-only = true\n");
        assert!(load(&["--config", file.path()]).unwrap().chat.utf8_only);
        let file = TempConfig::new("utf8-only = \"yes\"\n");
        let e = load(&["--config", file.path()]).unwrap_err().to_string();
        assert!(e.contains("true or false"), "{e}");
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

    /// Accounts take hashes only; operators take hashes or plain passwords. A hash's commas do
    /// not split it, in a flag, an env list or the file.
    #[test]
    fn accounts_and_hashed_opers() {
        let argon = crate::chat::passwords::cheap_argon2("sesame");
        assert!(argon.contains(','), "{argon}");
        let bcrypt = bcrypt::hash("sesame", 4).unwrap();
        let c = load(&["--account", &format!("alice:{argon}"), "--account", &format!("bob:{bcrypt},carol:{argon}")])
            .unwrap();
        let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, h)| ((*n).to_owned(), (*h).to_owned())).collect()
        };
        assert_eq!(c.chat.account_list(), want(&[("alice", &argon), ("bob", &bcrypt), ("carol", &argon)]));
        let c = load(&["--oper", &format!("root:{argon},admin:plain,pw")]).unwrap();
        assert_eq!(c.chat.oper_list(), want(&[("root", &argon), ("admin", "plain,pw")]));

        let file = TempConfig::new(&format!("account = [\"alice:{argon}\"]\noper = \"root:{bcrypt}\"\n"));
        let c = load(&["--config", file.path()]).unwrap();
        assert_eq!(c.chat.account_list(), want(&[("alice", &argon)]));
        assert_eq!(c.chat.oper_list(), want(&[("root", &bcrypt)]));
        assert_eq!(load(&[]).unwrap().chat.account_list(), []);
    }

    #[test]
    fn bad_accounts_are_refused_naming_the_account() {
        let err = file_err("account = [\"alice:sesame\"]\n");
        assert!(
            err.starts_with("config file 'PATH': key 'account': account 'alice': not an argon2 or bcrypt hash"),
            "{err}"
        );
        assert!(err.contains("echoport hash-password") && !err.contains("sesame"), "{err}");
        let err = file_err("account = [\"bob:$argon2id$v=19$m=8,t=1,p=1$\"]\n");
        assert!(err.starts_with("config file 'PATH': key 'account': account 'bob': malformed argon2 hash"), "{err}");
        let err = load_err(&["--account", "carol:$2b$10$tooshort"]);
        assert!(err.contains("account 'carol': malformed bcrypt hash"), "{err}");
        assert!(load_err(&["--account", "nocolon"]).contains("an account is NAME:HASH"));
        assert!(load_err(&["--account", ":$2b$"]).contains("the account name must be non-empty"));
        let err = load_err(&["--oper", "root:$argon2id$junk"]);
        assert!(err.contains("operator 'root': malformed argon2 hash"), "{err}");
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

    /// workers, log-level and account are shown commented out; they must be valid once uncommented.
    #[test]
    fn example_config_file_commented_keys_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/echoport.toml");
        let text = std::fs::read_to_string(path).expect("read example config");
        let text = text.replace("# workers = ", "workers = ").replace("# log-level = ", "log-level = ");
        let text = text.replace("# account = ", "account = ");
        let file = TempConfig::new(&text);
        let c = load(&["--config", file.path()]).expect("uncommented example is valid");
        assert_eq!(c.workers, 8);
        assert_eq!(c.log_level.as_deref(), Some("info"));
        let accounts = c.chat.account_list();
        assert_eq!(accounts.len(), 1);
        assert!(crate::chat::passwords::verify(&accounts[0].1, b"change-me"), "the example hash is of change-me");
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

    /// The file fills only what flags and env leave unset and takes its arrays as they are (a
    /// comma in an oper password stays); `check` does not read it.
    #[test]
    fn file_layering_details() {
        let file = TempConfig::new("oper = [\"a:b,c\", \"d:e\"]\nping-interval = 0\n");
        let c = load(&["--config", file.path(), "--ping-timeout=0"]).unwrap();
        assert_eq!(c.chat.oper_list(), [("a".to_owned(), "b,c".to_owned()), ("d".to_owned(), "e".to_owned())]);
        assert_eq!((c.chat.ping_interval, c.chat.ping_timeout), (Duration::from_secs(1), Duration::from_secs(1)));
        let c = load(&["--config", file.path(), "--oper=x:y"]).unwrap();
        assert_eq!(c.chat.oper_list(), [("x".to_owned(), "y".to_owned())]);
        let file = TempConfig::new("oper = []\n");
        assert_eq!(load(&["--config", file.path()]).unwrap().chat.oper_list(), []);
        assert_eq!(file_err("help = true\n"), "config file 'PATH': unknown key 'help'");
        assert_eq!(file_err("version = true\n"), "config file 'PATH': unknown key 'version'");

        let args = ["echoport", "--config", "/nonexistent/echoport.toml", "check"];
        let cli = parse(args, |e| ConfigError::from_clap(&e)).expect("check reads no config file");
        assert!(matches!(cli.command, Some(Subcommand::Check(_))));
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
