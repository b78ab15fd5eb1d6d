//! `--io`: which backend runs the port, and what happens when io_uring is refused.
//!
//! The refusal is real: the server runs under a seccomp filter that fails io_uring_setup with
//! EPERM, as Docker's default profile does (moby PR 46762). `auto` must then serve on epoll and
//! say why in one log line; `uring` must refuse to start with a clear error; neither may crash.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;
use std::io;
use std::process::Command;
use std::sync::Arc;

/// A filter that fails io_uring_setup (and only it) with EPERM.
fn refuse_io_uring() -> Arc<BpfProgram> {
    let arch = if cfg!(target_arch = "aarch64") { TargetArch::aarch64 } else { TargetArch::x86_64 };
    let rules = BTreeMap::from([(libc::SYS_io_uring_setup, Vec::new())]);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .expect("a valid filter");
    Arc::new(BpfProgram::try_from(filter).expect("the filter compiles"))
}

/// The server, started under [`refuse_io_uring`].
fn server_without_io_uring(args: &[&str]) -> ServerBuilder {
    let bpf = refuse_io_uring();
    let builder = Server::builder().args(args);
    // SAFETY: applying a compiled filter is prctl(2) and seccomp(2) only: async-signal-safe; the
    // error path builds an io::Error from a number, without allocating.
    unsafe {
        builder.pre_exec(move || seccompiler::apply_filter(&bpf).map_err(|_| io::Error::from_raw_os_error(libc::EPERM)))
    }
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_refused() {
    let mut server = server_without_io_uring(&["--io", "auto"]).spawn();
    let why = server.expect_line("io_uring not used, falling back to epoll", BOUND);
    assert!(why.contains("EPERM") && why.contains("seccomp"), "the line says why: {why}");
    let listening = server.expect_line("listening on", BOUND);
    assert!(listening.contains("io=epoll"), "{listening}");
    for i in 0..3 {
        echo_roundtrip(server.addr(), format!("served on epoll {i}").as_bytes());
    }
    server.assert_no_warnings("the fallback is no error");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(BOUND).code(), Some(0), "{}", server.log());
}

#[test]
fn uring_required_but_refused_is_a_clear_start_error() {
    let mut cmd = Command::new(bin());
    cmd.args(["--io", "uring", "--listen", "127.0.0.1:0"]);
    let bpf = refuse_io_uring();
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: as in `server_without_io_uring`.
        unsafe {
            cmd.pre_exec(move || seccompiler::apply_filter(&bpf).map_err(|_| io::Error::from_raw_os_error(libc::EPERM)))
        };
    }
    let ran = run_bounded(cmd, BOUND);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(2), "{ran:?}");
    let line = ran.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(line.starts_with("error: cannot use io_uring (--io uring): io_uring_setup was refused (EPERM)"), "{ran:?}");
}

/// This machine (and CI, the same kind) has io_uring: `auto` picks it, and says so at start-up
/// and in /metrics.
#[test]
fn auto_uses_io_uring_where_it_works_and_says_so() {
    let mut server = Server::start(&["--io", "auto", "--metrics-listen", "127.0.0.1:0"]);
    let listening = server.expect_line("listening on", BOUND);
    assert!(listening.contains("io=uring"), "{listening}");
    assert!(!server.log().contains("falling back"), "{}", server.log());
    echo_roundtrip(server.addr(), b"served on io_uring");
    let metrics = metrics_addr(&mut server);
    assert_eq!(scrape(metrics, "echoport_io_backend{backend=\"uring\"}"), Some(1));
}

#[test]
fn epoll_is_chosen_by_flag_and_reported_in_metrics() {
    let server = embedded::Server::start(&["--io", "epoll", "--metrics-listen", "127.0.0.1:0"]);
    echo_roundtrip(server.addr(), b"served on epoll");
    assert_eq!(scrape(server.metrics_addr(), "echoport_io_backend{backend=\"epoll\"}"), Some(1));
}
