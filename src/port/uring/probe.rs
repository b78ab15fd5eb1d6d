//! Can this process use io_uring the way the backend does? Asked once at start-up (`--io auto`
//! falls back to epoll when not, saying why), with a throwaway ring.

use super::bufring::BufRing;
use super::ring;
use io_uring::opcode;
use io_uring::register::Probe;
use std::io;

/// `Ok` when a ring with the backend's setup, the operations it uses and a provided-buffer ring
/// all work here; otherwise why not, in words a user can act on.
///
/// It runs on a thread of its own: the kernel ties a ring's task work to the thread that made it,
/// and tearing the throwaway ring down can still notify that thread, which would then see a
/// blocking call with a timeout (a socket read, say) fail with EINTR.
pub fn probe() -> Result<(), String> {
    std::thread::Builder::new()
        .name("echoport-uring-probe".into())
        .spawn(probe_here)
        .map_err(|e| format!("cannot start the io_uring probe: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the io_uring probe panicked".to_owned()))
}

fn probe_here() -> Result<(), String> {
    if usize::BITS < 64 {
        // A completion names its socket by key, whose generation bits a 32-bit key has no room for.
        return Err("the io_uring backend needs a 64-bit build".to_owned());
    }
    let uring = ring::builder().build(8).map_err(|e| setup_refused(&e))?;
    let mut probe = Probe::new();
    uring.submitter().register_probe(&mut probe).map_err(|e| format!("io_uring cannot list its operations: {e}"))?;
    let needed = [
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Read::CODE, "READ"),
    ];
    if let Some((_, name)) = needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(format!("the kernel's io_uring lacks the {name} operation (Linux 6.1 or later has it)"));
    }
    let mut bufs = BufRing::register(&uring, 1, 64)
        .map_err(|e| format!("the kernel refuses a provided-buffer ring ({e}); Linux 5.19 or later has them"))?;
    bufs.unregister(&uring).map_err(|e| format!("io_uring cannot unregister a buffer ring: {e}"))?;
    Ok(())
}

/// Why `io_uring_setup` failed, from its errno and the sysctl that restricts it.
fn setup_refused(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (too old, or built without it)".to_owned(),
        Some(libc::EPERM) => {
            match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").as_deref().map(str::trim) {
                Ok("2") => "io_uring is disabled by sysctl kernel.io_uring_disabled=2".to_owned(),
                Ok("1") => "io_uring is restricted by sysctl kernel.io_uring_disabled=1 to the group in \
                        kernel.io_uring_group, and this process is not in it"
                    .to_owned(),
                _ => "io_uring_setup was refused (EPERM): a seccomp filter blocks it (Docker's default profile \
                  does: run with --security-opt seccomp=config/seccomp-io-uring.json, see docs/docker.md)"
                    .to_owned(),
            }
        }
        Some(libc::EINVAL) => {
            "the kernel's io_uring lacks SINGLE_ISSUER/DEFER_TASKRUN (Linux 6.1 or later has them)".to_owned()
        }
        Some(libc::ENOMEM) => format!("no memory for an io_uring ring ({e}): RLIMIT_MEMLOCK may be too low"),
        _ => format!("io_uring_setup failed: {e}"),
    }
}
