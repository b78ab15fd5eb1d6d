//! The Docker image's contract, tested on the host (there is no Docker engine in CI).
//!
//! The test reads the top-level `Dockerfile`, takes the final (runtime) stage's ENTRYPOINT, CMD,
//! ENV, EXPOSE, STOPSIGNAL and HEALTHCHECK, and runs exactly those command lines against the freshly
//! built binaries (`/usr/local/bin/echoport` in the image is `CARGO_BIN_EXE_echoport` here), with
//! exactly the image's environment, as an unprivileged user. It asserts what `docker run`,
//! `docker inspect --format '{{.State.Health}}'` and `docker stop` would show: the server listens on
//! 0.0.0.0, the health check passes while it runs and fails when it is down, and the stop signal
//! ends it with exit status 0 inside Docker's default stop grace period.
//!
//! Every wait is bounded; the server is killed and reaped on drop even when an assertion fails.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where the Dockerfile installs the binaries.
const IMAGE_BINARIES: [&str; 2] = ["/usr/local/bin/echoport", "/usr/local/bin/echoport-load"];
/// The image's server binary, and the one cargo just built for this test: the image's command
/// lines (entrypoint, health check) run the server only.
const SERVER: (&str, &str) = (IMAGE_BINARIES[0], env!("CARGO_BIN_EXE_echoport"));

/// `docker stop`'s default grace period between the STOPSIGNAL and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Upper bound for the server to log that it listens (a loaded 2-core CI box; normally milliseconds).
const STARTUP_BOUND: Duration = Duration::from_secs(30);

/// `nobody:nogroup`, the unprivileged user the processes run as when the test runs as root
/// (the image runs as distroless' `nonroot`, 65532, which need not exist on the host).
const UNPRIVILEGED: u32 = 65534;

// ---------------------------------------------------------------------------
// Dockerfile parsing
// ---------------------------------------------------------------------------

/// One instruction: the keyword in upper case and the rest of the (continuation-joined) line.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of the Dockerfile, with comments, parser directives and blank lines removed and
/// `\`-continued lines joined.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment lines (also inside a continued instruction) and blank lines are dropped.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let full = std::mem::take(&mut current);
        let full = full.trim();
        if full.is_empty() {
            continue;
        }
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
        out.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_owned() });
    }
    assert!(current.trim().is_empty(), "Dockerfile ends inside a continued line: {current:?}");
    out
}

/// The final stage's instructions (everything after the last FROM), the FROM included.
fn final_stage(instructions: &[Instruction]) -> &[Instruction] {
    let last_from = instructions.iter().rposition(|i| i.keyword == "FROM").expect("Dockerfile has no FROM");
    &instructions[last_from..]
}

/// The single instruction `keyword` of a stage (the last one wins, as in Docker).
fn last<'a>(stage: &'a [Instruction], keyword: &str) -> Option<&'a Instruction> {
    stage.iter().rev().find(|i| i.keyword == keyword)
}

/// A JSON exec-form array: `["a", "b"]`. Shell form is a contract violation (the image has no shell).
fn exec_form(what: &str, args: &str) -> Vec<String> {
    let v: Vec<String> = serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{what} must be an exec-form JSON array of strings (no shell), got {args:?}: {e}"));
    v
}

/// `ENV K=V [K2=V2 ...]` (values optionally double-quoted) or the legacy `ENV K V`.
fn parse_env(args: &str) -> Vec<(String, String)> {
    let args = args.trim();
    let first = args.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        return vec![(k.to_owned(), v.trim().to_owned())];
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=')).collect();
        assert_eq!(chars.next(), Some('='), "ENV {args:?}: expected KEY=VALUE");
        let mut value = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => value.extend(chars.next()),
                (None, c) if c.is_whitespace() => break,
                (_, c) => value.push(c),
            }
        }
        out.push((key, value));
    }
    out
}

/// `HEALTHCHECK [--opt=value ...] CMD [...]`: the options and the exec-form command.
fn parse_healthcheck(args: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut rest = args.trim();
    let mut options = BTreeMap::new();
    while let Some(opt) = rest.strip_prefix("--") {
        let (word, tail) = opt.split_once(char::is_whitespace).unwrap_or((opt, ""));
        let (name, value) = word.split_once('=').unwrap_or_else(|| panic!("HEALTHCHECK option --{word} has no value"));
        options.insert(name.to_owned(), value.to_owned());
        rest = tail.trim_start();
    }
    let (cmd, json) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    assert!(cmd.eq_ignore_ascii_case("CMD"), "HEALTHCHECK must be `CMD [...]`, got {args:?}");
    (options, exec_form("HEALTHCHECK CMD", json.trim()))
}

/// The runtime stage's contract, as Docker would apply it.
#[derive(Debug)]
struct Contract {
    from: String,
    user: Option<String>,
    /// ENTRYPOINT followed by CMD.
    command: Vec<String>,
    env: Vec<(String, String)>,
    expose: Vec<u16>,
    stop_signal: Signal,
    health_options: BTreeMap<String, String>,
    health_command: Vec<String>,
    copied: Vec<String>,
}

fn contract() -> Contract {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let all = parse_dockerfile(&text);
    let stage = final_stage(&all);

    let entrypoint = last(stage, "ENTRYPOINT").map(|i| exec_form("ENTRYPOINT", &i.args)).unwrap_or_default();
    let cmd = last(stage, "CMD").map(|i| exec_form("CMD", &i.args)).unwrap_or_default();
    let command: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    assert!(!command.is_empty(), "the final stage has neither ENTRYPOINT nor CMD");

    let env = stage.iter().filter(|i| i.keyword == "ENV").flat_map(|i| parse_env(&i.args)).collect();
    let expose = stage
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|p| {
            let port = p.strip_suffix("/tcp").unwrap_or(&p);
            port.parse().unwrap_or_else(|e| panic!("EXPOSE {p:?}: {e}"))
        })
        .collect();
    // Docker's default stop signal is SIGTERM.
    let stop_signal = last(stage, "STOPSIGNAL").map_or(Signal::SIGTERM, |i| {
        let name = i.args.trim();
        let name = if name.starts_with("SIG") { name.to_owned() } else { format!("SIG{name}") };
        Signal::from_str(&name).unwrap_or_else(|e| panic!("STOPSIGNAL {:?}: {e}", i.args))
    });
    let (health_options, health_command) =
        parse_healthcheck(&last(stage, "HEALTHCHECK").expect("the final stage has no HEALTHCHECK").args);
    // `COPY [--from=...] SRC... DEST`: each file's path in the image (DEST/ is a directory).
    let copied = stage
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let (dest, srcs) = words.split_last().expect("COPY without arguments");
            srcs.iter()
                .map(|s| match dest.ends_with('/') {
                    true => format!("{dest}{}", s.rsplit('/').next().unwrap()),
                    false => dest.to_string(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Contract {
        from: stage[0].args.clone(),
        user: last(stage, "USER").map(|i| i.args.clone()),
        command,
        env,
        expose,
        stop_signal,
        health_options,
        health_command,
        copied,
    }
}

/// Docker durations in HEALTHCHECK options: `3s`, `500ms`, `1m30s`.
fn docker_duration(s: &str) -> Duration {
    humantime_like(s).unwrap_or_else(|| panic!("unparseable Docker duration {s:?}"))
}

fn humantime_like(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        total += match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            _ => return None,
        };
        rest = &rest[unit_len..];
    }
    Some(total)
}

// ---------------------------------------------------------------------------
// Running the image's command lines on the host
// ---------------------------------------------------------------------------

/// Replace the image path of a binary by the one cargo built.
fn host_command(argv: &[String]) -> Vec<String> {
    let exe = &argv[0];
    assert_eq!(exe, SERVER.0, "the image's command lines run the server");
    std::iter::once(SERVER.1.to_owned()).chain(argv[1..].iter().cloned()).collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command as the container would run it: only the image's environment, working directory `/`,
/// and, when the test runs as root, an unprivileged user (`setpriv` execs, so the PID we signal is
/// the program's; without setpriv, std drops groups, gid and uid itself before exec).
fn container_command(argv: &[String], env: &[(String, String)]) -> Command {
    let argv = host_command(argv);
    let root = is_root();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| std::path::Path::new(p).exists());
    let mut cmd = match (root, setpriv) {
        (true, Some(setpriv)) => {
            let mut c = Command::new(setpriv);
            c.arg(format!("--reuid={UNPRIVILEGED}"))
                .arg(format!("--regid={UNPRIVILEGED}"))
                .arg("--clear-groups")
                .arg("--")
                .args(&argv);
            c
        }
        (true, None) => {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]).uid(UNPRIVILEGED).gid(UNPRIVILEGED);
            c
        }
        (false, _) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v))).current_dir("/").stdin(Stdio::null());
    cmd
}

/// The server from ENTRYPOINT + CMD, with its stderr lines forwarded to a channel. Killed and reaped
/// on drop.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    status: Option<ExitStatus>,
}

impl Server {
    fn spawn(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(common::strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        Server { child, lines, log: Vec::new(), status: None }
    }

    /// Wait (bounded) for a stderr line matching `pred`.
    fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, bound: Duration) -> Option<String> {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    /// Wait (bounded) for the process to exit.
    fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the health-check command like Docker does: killed if it outlives HEALTHCHECK --timeout.
/// Returns the exit status (None if it timed out) and its stderr.
fn run_health_check(cmd: Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let ran = common::run_bounded(cmd, timeout);
    (ran.status, ran.stderr)
}

/// A TCP port nothing listens on right now: bind port 0 on every interface, read the port, close.
/// (Another process could take it before the server binds; that is unlikely and would show up as a
/// clear bind error in the server's log, not as a wrong result.)
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// Replace the port of the `--target HOST:PORT` argument (or `--target=HOST:PORT`). A probe without
/// --target is left alone: it can only be finding the server from the environment (ECHOPORT_LISTEN),
/// which already says P.
fn retarget(argv: &[String], port: u16) -> Vec<String> {
    let mut out = argv.to_vec();
    let with_port = |addr: &str| {
        let a: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("health check --target {addr:?}: {e}"));
        SocketAddr::new(a.ip(), port).to_string()
    };
    for i in 0..out.len() {
        if out[i] == "--target" && i + 1 < out.len() {
            out[i + 1] = with_port(&out[i + 1]);
        } else if let Some(addr) = out[i].strip_prefix("--target=") {
            out[i] = format!("--target={}", with_port(addr));
        }
    }
    out
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The static half of the contract: what must be true of the runtime stage before anything runs.
#[test]
fn runtime_stage_shape() {
    let c = contract();
    assert!(c.from.starts_with("gcr.io/distroless/cc-debian12:nonroot"), "runtime base: {}", c.from);
    if let Some(user) = &c.user {
        let uid = user.split(':').next().unwrap();
        assert!(uid != "0" && uid != "root", "the image must not run as root: USER {user}");
    }
    for image in IMAGE_BINARIES {
        assert!(c.copied.iter().any(|d| d == image), "{image} is not copied into the image: {:?}", c.copied);
    }
    assert_eq!(c.command[0], "/usr/local/bin/echoport", "ENTRYPOINT/CMD must start the server: {:?}", c.command);
    assert!(c.expose.contains(&7007) && c.expose.contains(&6667), "EXPOSE must list 7007 and 6667: {:?}", c.expose);
    assert_eq!(c.stop_signal, Signal::SIGTERM);
    let listen = env_value(&c.env, "ECHOPORT_LISTEN").expect("ENV ECHOPORT_LISTEN");
    assert!(listen.split(',').all(|a| a.starts_with("0.0.0.0:") || a.starts_with("[::]:")), "ECHOPORT_LISTEN={listen}");
    for opt in ["interval", "timeout", "start-period", "retries"] {
        assert!(c.health_options.contains_key(opt), "HEALTHCHECK --{opt} missing: {:?}", c.health_options);
    }
    assert_eq!(c.health_command[0], "/usr/local/bin/echoport", "the health check must be the binary's own probe");
    assert_eq!(c.health_command.get(1).map(String::as_str), Some("check"));
    let target = c.health_command.iter().position(|a| a == "--target").map(|i| &c.health_command[i + 1]);
    let port = listen.rsplit(':').next().unwrap();
    if let Some(target) = target {
        assert_eq!(
            target.rsplit(':').next(),
            Some(port),
            "the health check probes {target}, the server is on {listen}"
        );
    }
}

/// The dynamic half: run ENTRYPOINT + CMD with the image's ENV as an unprivileged user, probe it with
/// the HEALTHCHECK command, stop it with STOPSIGNAL, probe again.
#[test]
fn container_lifecycle_on_the_host() {
    lifecycle(&[]);
}

/// Chat mode as the Dockerfile documents it: `-e ECHOPORT_MODE=chat` (the server on the image's port,
/// published as 6667; or on 6667 with the HEALTHCHECK's --target moved there). The probe reads
/// ECHOPORT_MODE from the container's environment, so the image's HEALTHCHECK does a PING/PONG.
#[test]
fn chat_mode_lifecycle_on_the_host() {
    lifecycle(&[("ECHOPORT_MODE", "chat")]);
}

/// `docker run [-e K=V ...] image`, health checks while up and down, and `docker stop`, on the host.
fn lifecycle(overrides: &[(&str, &str)]) {
    let c = contract();
    let health_timeout = docker_duration(&c.health_options["timeout"]);

    // The image listens on 0.0.0.0:7007 (chat: 0.0.0.0:6667). On a shared CI host that port may be taken
    // (or another test may be using it), so the test moves the server to a free port P -- the one change
    // to the image's environment besides `overrides`, the same as `docker run -e ECHOPORT_LISTEN=0.0.0.0:P`
    // -- and points the health check's --target at P, as `docker run --health-cmd` would. Interface,
    // binary, arguments and everything else stay as the Dockerfile says.
    let port = free_port();
    let image_listen = env_value(&c.env, "ECHOPORT_LISTEN").expect("ENV ECHOPORT_LISTEN").to_owned();
    let image_addr: SocketAddr = image_listen.split(',').next().unwrap().parse().expect("ECHOPORT_LISTEN address");
    assert!(image_addr.ip().is_unspecified(), "the image must listen on every interface: {image_listen}");
    let listen = SocketAddr::new(image_addr.ip(), port);
    let mut env: Vec<(String, String)> = c.env.iter().filter(|(k, _)| k != "ECHOPORT_LISTEN").cloned().collect();
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(("ECHOPORT_LISTEN".into(), listen.to_string()));
    let chat = env_value(&env, "ECHOPORT_MODE") == Some("chat");
    let health = retarget(&c.health_command, port);

    // docker run: the server comes up; readiness is its `listening on` log line (stderr = docker logs).
    let started = Instant::now();
    let mut server = Server::spawn(container_command(&c.command, &env));
    let line = server.wait_for_line(|l| l.contains("listening on "), STARTUP_BOUND);
    let Some(line) = line else {
        panic!("no `listening on` line within {STARTUP_BOUND:?} from {:?}; log:\n{}", c.command, server.log());
    };
    assert!(line.contains(&format!("listening on {listen}")), "server is not listening on {listen}: {line:?}");
    let startup = started.elapsed();

    // The server runs unprivileged (the image's USER is not root; as root the test drops to nobody).
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("/proc/PID/status");
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("Uid: line");
    if is_root() {
        assert!(uids.split_whitespace().all(|u| u != "0"), "the server runs with root ids: Uid:{uids}");
    }

    // The server really serves on that address (the health check below should agree).
    if !chat {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"docker contract\n").unwrap();
        let mut back = [0u8; 16];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"docker contract\n");
    }

    // HEALTHCHECK while running: exit 0 within --timeout (Docker kills it at --timeout and counts a failure).
    let (status, stderr) = run_health_check(container_command(&health, &env), health_timeout);
    assert!(
        status.is_some_and(|s| s.success()),
        "health check {health:?} against the running server: {status:?} (None = killed after {health_timeout:?}), \
         stderr: {stderr:?}; server log:\n{}",
        server.log()
    );

    // docker stop: STOPSIGNAL, then exit status 0 before the grace period ends in SIGKILL.
    let pid = Pid::from_raw(server.child.id() as i32);
    let stop = Instant::now();
    kill(pid, c.stop_signal).expect("send the stop signal");
    let status = server.wait_exit(STOP_GRACE);
    let Some(status) = status else {
        panic!("{} did not end the server within {STOP_GRACE:?}; log:\n{}", c.stop_signal, server.log());
    };
    assert_eq!(status.code(), Some(0), "exit after {}: {status:?}; log:\n{}", c.stop_signal, server.log());
    let stopped_in = stop.elapsed();

    // HEALTHCHECK with the server down: non-zero, in time, with a one-line reason.
    let (status, stderr) = run_health_check(container_command(&health, &env), health_timeout);
    let status = status.unwrap_or_else(|| panic!("health check against a stopped server outlived {health_timeout:?}"));
    assert!(!status.success(), "health check passed with the server stopped: {status:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "the health check's reason should be one line: {stderr:?}");

    eprintln!("{overrides:?}: startup {startup:?}, stop {stopped_in:?}, health check when down: {}", stderr.trim());
}

/// The parser handles what the Dockerfile may reasonably contain.
#[test]
fn dockerfile_parser() {
    let text = "# syntax=docker/dockerfile:1\nFROM rust AS build\nRUN a \\\n  # comment\n  b\n\
                FROM scratch\nENV A=1 B=\"two words\"\nENV C 3\n\
                healthcheck --interval=10s \\\n  CMD [\"x\", \"y\"]\nCMD []\n";
    let all = parse_dockerfile(text);
    assert_eq!(all.len(), 7, "{all:?}");
    assert_eq!(all[1].args, "a  b");
    let stage = final_stage(&all);
    assert_eq!(stage[0].args, "scratch");
    assert_eq!(parse_env(&stage[1].args), [("A".into(), "1".into()), ("B".into(), "two words".into())]);
    assert_eq!(parse_env(&stage[2].args), [("C".to_owned(), "3".to_owned())]);
    let (opts, cmd) = parse_healthcheck(&stage[3].args);
    assert_eq!(opts["interval"], "10s");
    assert_eq!(cmd, ["x", "y"]);
    assert!(exec_form("CMD", &stage[4].args).is_empty());
    assert_eq!(docker_duration("1m30s"), Duration::from_secs(90));
    assert_eq!(docker_duration("500ms"), Duration::from_millis(500));
}
