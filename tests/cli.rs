//! Runs the real `echoport` binary and checks what a user sees: exact error text and exit codes
//! for bad settings, `--help`, and flag > env > config-file precedence end to end.
//!
//! Readiness is always the startup log line on stderr, never a sleep; every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Upper bound on any wait for the child; generous so slow CI machines do not flake.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The clap hint that follows every clap error line.
const CLAP_HINT: &str = "\n\nFor more information, try '--help'.\n";

/// A command for the binary under test. Settings the test runner happens to have in its
/// environment (ECHOPORT_*, RUST_LOG) are removed so only what a test sets applies.
fn echoport(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echoport"));
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECHOPORT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running child. Dropping it kills and reaps the process, so a failed assertion never
/// leaves a server behind.
struct Running {
    child: Child,
    stderr: Receiver<String>,
    stdout: Option<JoinHandle<String>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd.spawn().expect("spawn echoport");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        // Lines go through a channel so waits can time out; stdout is drained on its own
        // thread so a full pipe can never block the child.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Running { child, stderr: rx, stdout: Some(stdout) }
    }

    /// The next stderr line, `None` once stderr is closed; panics after `deadline`.
    fn next_line(&mut self, deadline: Instant, seen: &[String]) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.stderr.recv_timeout(left) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("echoport still running after {TIMEOUT:?}; stderr so far:\n{}", seen.join("\n"))
            }
        }
    }

    /// Waits for the first stderr line matching `pred` and returns it.
    fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while let Some(line) = self.next_line(deadline, &seen) {
            if pred(&line) {
                return line;
            }
            seen.push(line);
        }
        panic!(
            "echoport closed stderr (status {:?}) without the expected line; stderr:\n{}",
            self.child.try_wait(),
            seen.join("\n")
        );
    }

    /// Waits for the process to exit and returns everything it wrote.
    fn finish(mut self) -> Outcome {
        let deadline = Instant::now() + TIMEOUT;
        let mut lines = Vec::new();
        while let Some(line) = self.next_line(deadline, &lines) {
            lines.push(line);
        }
        // stderr is closed, so the process has exited (it starts no children of its own).
        let status = self.child.wait().expect("wait for echoport");
        let stdout = self.stdout.take().map(|h| h.join().expect("stdout reader"));
        Outcome { status, stdout: stdout.unwrap_or_default(), stderr: lines.iter().map(|l| format!("{l}\n")).collect() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Both are no-ops once the child has been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs echoport to completion; it must exit on its own within [`TIMEOUT`].
fn run(cmd: &mut Command) -> Outcome {
    Running::spawn(cmd).finish()
}

/// Asserts a startup failure: exit code 2 and exactly `stderr`.
fn assert_fails(outcome: &Outcome, stderr: &str) {
    assert_eq!(outcome.stderr, stderr);
    assert_eq!(outcome.status.code(), Some(2), "stderr: {}", outcome.stderr);
}

/// A uniquely named config file in the temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("echoport-cli-test-{}-{}.toml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
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

/// Runs echoport with `--config` pointing at a file holding `contents`; `PATH` in `expected`
/// stands for that file's path.
fn assert_config_file_fails(contents: &str, expected: &str) {
    let file = TempConfig::new(contents);
    // --listen on an ephemeral port: if validation wrongly passed, no fixed port is taken.
    let outcome = run(&mut echoport(&["--listen", "127.0.0.1:0", "--config", file.path()]));
    assert_fails(&outcome, &expected.replace("PATH", file.path()));
}

/// The parts of the startup line `listening on A, B mode=echo workers=N`.
struct Startup {
    addrs: Vec<String>,
    mode: String,
    workers: usize,
}

fn parse_startup(line: &str) -> Startup {
    let rest = &line[line.find("listening on ").expect("startup line") + "listening on ".len()..];
    let (addrs, fields) = rest.split_once(" mode=").expect("mode= after the addresses");
    let field = |name: &str| {
        fields
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_owned()
    };
    Startup {
        addrs: addrs.split(", ").map(str::to_owned).collect(),
        mode: fields.split_whitespace().next().unwrap_or_default().to_owned(),
        workers: field("workers=").parse().expect("workers is a number"),
    }
}

/// Starts echoport on an ephemeral port and returns what its startup line reports.
fn startup(cmd: &mut Command) -> Startup {
    let mut server = Running::spawn(cmd);
    let line = server.wait_for_line(|l| l.contains("listening on "));
    parse_startup(&line)
    // `server` drops here: killed and reaped.
}

// ---- Errors before start -------------------------------------------------------------------

#[test]
fn unparsable_listen_address() {
    let outcome = run(&mut echoport(&["--listen", "nonsense"]));
    assert_fails(
        &outcome,
        &format!(
            "error: invalid value 'nonsense' for '--listen <ADDR>': \
             invalid socket address 'nonsense'{CLAP_HINT}"
        ),
    );
}

#[test]
fn zero_workers() {
    let outcome = run(&mut echoport(&["--workers", "0"]));
    assert_fails(&outcome, &format!("error: invalid value '0' for '--workers <N>': must be at least 1{CLAP_HINT}"));
}

#[test]
fn zero_workers_from_env() {
    let outcome = run(echoport(&[]).env("ECHOPORT_WORKERS", "0"));
    assert_fails(&outcome, &format!("error: invalid value '0' for '--workers <N>': must be at least 1{CLAP_HINT}"));
}

#[test]
fn unknown_mode() {
    let outcome = run(&mut echoport(&["--mode", "irc"]));
    assert_fails(
        &outcome,
        &format!(
            "error: invalid value 'irc' for '--mode <MODE>': unknown mode 'irc'; expected 'echo' or 'chat'{CLAP_HINT}"
        ),
    );
}

#[test]
fn bad_oper_credentials_flag() {
    let outcome = run(&mut echoport(&["--mode", "chat", "--oper", "admin"]));
    assert_fails(
        &outcome,
        &format!("error: invalid value 'admin' for '--oper <NAME:PASSWORD>': 'admin' is not NAME:PASSWORD{CLAP_HINT}"),
    );
}

#[test]
fn config_file_unknown_key() {
    assert_config_file_fails("workers = 2\nbogus = 1\n", "error: config file 'PATH': unknown key 'bogus'\n");
}

#[test]
fn config_file_wrong_type() {
    assert_config_file_fails(
        "workers = \"four\"\n",
        "error: config file 'PATH': key 'workers': expected an integer, found string\n",
    );
}

#[test]
fn config_file_bad_value() {
    assert_config_file_fails("workers = 0\n", "error: config file 'PATH': key 'workers': must be at least 1\n");
    assert_config_file_fails(
        "listen = [\"nonsense\"]\n",
        "error: config file 'PATH': key 'listen': invalid socket address 'nonsense'\n",
    );
}

#[test]
fn config_file_syntax_error() {
    assert_config_file_fails(
        "workers = 2\n\nbacklog = = 4\n",
        "error: config file 'PATH': line 3: extra `=`, expected nothing\n",
    );
}

#[test]
fn config_file_missing() {
    let path = std::env::temp_dir().join("echoport-cli-test-does-not-exist.toml");
    let path = path.to_str().expect("temp path is UTF-8");
    // The OS wording of "not found" is platform-specific; take it from the OS itself.
    let io_error = std::fs::read_to_string(path).expect_err("file must not exist");
    let outcome = run(&mut echoport(&["--config", path]));
    assert_fails(&outcome, &format!("error: config file '{path}': cannot read: {io_error}\n"));
}

#[test]
fn port_already_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let addr = taken.local_addr().expect("local addr").to_string();
    let outcome = run(&mut echoport(&["--listen", &addr]));
    assert_eq!(outcome.status.code(), Some(2), "stderr: {}", outcome.stderr);
    assert!(
        outcome.stderr.lines().any(|l| l.starts_with("error: ") && l.contains(&addr) && l.contains("in use")),
        "expected an 'error: ... {addr} ... in use' line; stderr:\n{}",
        outcome.stderr
    );
}

// ---- Help and version ----------------------------------------------------------------------

#[test]
fn help_has_examples() {
    let outcome = run(&mut echoport(&["--help"]));
    assert_eq!(outcome.status.code(), Some(0), "stderr: {}", outcome.stderr);
    for wanted in [
        "Examples:",
        "echoport --listen 0.0.0.0:7007 --workers 8 --max-conns 50000 --log-format json",
        "echoport --config config/echoport.toml",
        "ECHOPORT_<FLAG>",
        "[env: ECHOPORT_WORKERS=]",
    ] {
        assert!(outcome.stdout.contains(wanted), "no {wanted:?} in:\n{}", outcome.stdout);
    }
}

#[test]
fn version() {
    let outcome = run(&mut echoport(&["--version"]));
    assert_eq!(outcome.status.code(), Some(0));
    assert_eq!(outcome.stdout, format!("echoport {}\n", env!("CARGO_PKG_VERSION")));
}

// ---- Precedence: flag > env > config file > default ----------------------------------------

/// `echoport --listen 127.0.0.1:0 --config <file with workers = 3>` plus `extra` flags.
fn with_workers_file(file: &TempConfig, extra: &[&str]) -> Command {
    let mut args = vec!["--listen", "127.0.0.1:0", "--config", file.path()];
    args.extend_from_slice(extra);
    echoport(&args)
}

#[test]
fn workers_default_is_twice_the_cpus() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = startup(&mut echoport(&["--listen", "127.0.0.1:0"]));
    assert_eq!(started.workers, 2 * cpus);
    assert_eq!(started.mode, "echo");
}

#[test]
fn config_file_beats_default() {
    let file = TempConfig::new("workers = 3\n");
    assert_eq!(startup(&mut with_workers_file(&file, &[])).workers, 3);
}

#[test]
fn env_beats_config_file() {
    let file = TempConfig::new("workers = 3\n");
    let mut cmd = with_workers_file(&file, &[]);
    cmd.env("ECHOPORT_WORKERS", "5");
    assert_eq!(startup(&mut cmd).workers, 5);
}

#[test]
fn flag_beats_env() {
    let file = TempConfig::new("workers = 3\n");
    let mut cmd = with_workers_file(&file, &["--workers", "7"]);
    cmd.env("ECHOPORT_WORKERS", "5");
    assert_eq!(startup(&mut cmd).workers, 7);
}

#[test]
fn config_from_env_and_listen_list_from_env() {
    let file = TempConfig::new("workers = 3\nlisten = \"127.0.0.1:1\"\n");
    let mut cmd = echoport(&[]);
    cmd.env("ECHOPORT_CONFIG", file.path()).env("ECHOPORT_LISTEN", "127.0.0.1:0,127.0.0.1:0");
    let started = startup(&mut cmd);
    assert_eq!(started.workers, 3, "workers from the ECHOPORT_CONFIG file");
    assert_eq!(started.addrs.len(), 2, "addresses: {:?}", started.addrs);
    for addr in &started.addrs {
        assert!(addr.starts_with("127.0.0.1:"), "address {addr}");
        assert_ne!(addr, "127.0.0.1:0", "the bound port is reported");
    }
}

// ---- Accounts ----

/// Accounts take hashes only, checked at start-up: the error names the account and never echoes
/// what looks like a plain password.
#[test]
fn config_file_bad_account_hashes() {
    assert_config_file_fails(
        "account = [\"alice:$argon2id$v=19$m=8,t=1,p=1$\"]\n",
        "error: config file 'PATH': key 'account': account 'alice': malformed argon2 hash: \
         salt too short (minimum 8 bytes)\n",
    );
    assert_config_file_fails(
        "account = [\"bob:sesame\"]\n",
        "error: config file 'PATH': key 'account': account 'bob': not an argon2 or bcrypt hash \
         (plain-text passwords are not accepted here; make a hash with `echoport hash-password`)\n",
    );
    assert_config_file_fails(
        "oper = [\"root:$2b$04$bad\"]\n",
        "error: config file 'PATH': key 'oper': operator 'root': malformed bcrypt hash: \
         Invalid hash: the hash format is malformed; expected 60 ASCII bytes\n",
    );
}

/// `echoport hash-password` hashes one line of stdin; the hash is what `--account` accepts and
/// it verifies against that line (its line break excluded).
#[test]
fn hash_password_reads_stdin_and_prints_an_argon2id_hash() {
    use std::io::Write;
    let mut cmd = echoport(&["hash-password"]);
    cmd.stdin(Stdio::piped());
    let mut running = Running::spawn(&mut cmd);
    let mut stdin = running.child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"s3cret pass\r\n").expect("write the password");
    drop(stdin);
    let outcome = running.finish();
    assert_eq!((outcome.status.code(), outcome.stderr.as_str()), (Some(0), ""), "stdout: {}", outcome.stdout);
    let hash = outcome.stdout.strip_suffix('\n').expect("one line");
    assert!(hash.starts_with("$argon2id$v=19$") && !hash.contains('\n'), "{hash}");
    assert!(echoport::chat::passwords::verify(hash, b"s3cret pass"));
    assert!(!echoport::chat::passwords::verify(hash, b"s3cret pass\r"));
    let account = format!("alice:{hash}");
    echoport::config::load_from(["echoport", "--account", &account]).expect("the hash is a valid --account");

    let outcome = run(&mut echoport(&["hash-password"]));
    assert_eq!(outcome.stderr, "error: no password on stdin (one line expected)\n");
    assert_eq!(outcome.status.code(), Some(1));
}
