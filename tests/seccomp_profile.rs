//! config/seccomp-io-uring.json, the seccomp profile that lets the io_uring backend run in a Docker
//! container (docs/docker.md), checked without Docker.
//!
//! Docker filters the profile's rules by the container's architecture and capabilities and hands
//! the rest to the kernel; a small model of both steps (`verdict`) answers what a syscall would get
//! in a container on amd64 or arm64 with Docker's default capabilities. The tests assert that the
//! three io_uring syscalls are allowed whatever their arguments, and that everything the epoll
//! backend and the health check call still is: the profile must be Docker's default plus io_uring,
//! never a narrower one that breaks the server it exists for.

use serde_json::Value;

const PROFILE: &str = include_str!("../config/seccomp-io-uring.json");

const IO_URING: [&str; 3] = ["io_uring_setup", "io_uring_enter", "io_uring_register"];

/// The architectures the image is built for, in the names Docker's `arches` conditions use.
const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// Docker's default capability set (`docker run` without --cap-add): the image asks for no more.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const EPERM: u64 = 1;
const ENOSYS: u64 = 38;

/// What the kernel does with one syscall.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(u64),
}

fn profile() -> Value {
    serde_json::from_str(PROFILE).expect("config/seccomp-io-uring.json is valid JSON")
}

fn rules(profile: &Value) -> &[Value] {
    profile["syscalls"].as_array().expect("the profile has a syscalls list")
}

/// A rule's syscalls (Docker accepts `names` or a single `name`).
fn names(rule: &Value) -> Vec<&str> {
    let list = rule["names"].as_array().map(|n| n.iter().filter_map(Value::as_str).collect());
    list.unwrap_or_else(|| rule["name"].as_str().into_iter().collect())
}

fn strings(list: &Value) -> Vec<&str> {
    list.as_array().map_or_else(Vec::new, |l| l.iter().filter_map(Value::as_str).collect())
}

/// Docker's filter (moby/profiles seccomp_linux.go, setupSeccomp): does the rule reach the kernel
/// for a container on `arch` with the default capabilities? `minKernel` conditions are taken as
/// met (the kernels io_uring needs are newer than every minKernel in the profile).
fn applies(rule: &Value, arch: &str) -> bool {
    let has_cap = |c: &str| DEFAULT_CAPS.contains(&c);
    let (inc, exc) = (&rule["includes"], &rule["excludes"]);
    let inc_arches = strings(&inc["arches"]);
    !strings(&exc["arches"]).contains(&arch)
        && !strings(&exc["caps"]).into_iter().any(has_cap)
        && (inc_arches.is_empty() || inc_arches.contains(&arch))
        && strings(&inc["caps"]).into_iter().all(has_cap)
}

/// Do the syscall's arguments satisfy every one of the rule's comparisons (libseccomp ANDs them)?
fn args_match(rule: &Value, args: &[u64; 6]) -> bool {
    let Some(conditions) = rule["args"].as_array() else { return true };
    conditions.iter().all(|c| {
        let index = c["index"].as_u64().expect("an args condition has an index") as usize;
        let arg = args[index];
        let value = c["value"].as_u64().expect("an args condition has a value");
        match c["op"].as_str().expect("an args condition has an op") {
            "SCMP_CMP_EQ" => arg == value,
            "SCMP_CMP_NE" => arg != value,
            "SCMP_CMP_LT" => arg < value,
            "SCMP_CMP_LE" => arg <= value,
            "SCMP_CMP_GT" => arg > value,
            "SCMP_CMP_GE" => arg >= value,
            "SCMP_CMP_MASKED_EQ" => arg & value == c["valueTwo"].as_u64().unwrap_or(0),
            op => panic!("unknown args op {op}"),
        }
    })
}

fn action(rule_or_profile: &Value, action_key: &str, errno_key: &str) -> Verdict {
    match rule_or_profile[action_key].as_str() {
        Some("SCMP_ACT_ALLOW") => Verdict::Allow,
        Some("SCMP_ACT_ERRNO") => Verdict::Errno(rule_or_profile[errno_key].as_u64().unwrap_or(EPERM)),
        other => panic!("action {other:?} is not modelled"),
    }
}

/// What `name(args)` gets in a container on `arch`: the action of the applicable rules it matches,
/// else the default action. Rules that match with different actions would be a broken profile.
fn verdict(profile: &Value, arch: &str, name: &str, args: [u64; 6]) -> Verdict {
    let mut matched = rules(profile)
        .iter()
        .filter(|r| names(r).contains(&name) && applies(r, arch) && args_match(r, &args))
        .map(|r| action(r, "action", "errnoRet"));
    let first = matched.next().unwrap_or_else(|| action(profile, "defaultAction", "defaultErrnoRet"));
    for other in matched {
        assert_eq!(other, first, "{name} on {arch}: rules with different actions match");
    }
    first
}

#[test]
fn denied_syscalls_fail_with_eperm() {
    let p = profile();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    // EPERM is what `--io auto` reports as "blocked by a seccomp filter" under Docker's own profile.
    assert_eq!(p["defaultErrnoRet"], EPERM);
    for arch in ARCHES {
        assert_eq!(verdict(&p, arch, "kexec_load", [0; 6]), Verdict::Errno(EPERM));
        assert_eq!(verdict(&p, arch, "mount", [0; 6]), Verdict::Errno(EPERM));
        // The argument filters bite: a new user namespace, an AF_ALG socket.
        assert_eq!(verdict(&p, arch, "clone", [0x1000_0000, 0, 0, 0, 0, 0]), Verdict::Errno(EPERM));
        assert_eq!(verdict(&p, arch, "socket", [38, 5, 0, 0, 0, 0]), Verdict::Errno(EPERM));
    }
}

#[test]
fn io_uring_syscalls_are_allowed_unconditionally() {
    let p = profile();
    for name in IO_URING {
        let naming: Vec<&Value> = rules(&p).iter().filter(|r| names(r).contains(&name)).collect();
        assert!(!naming.is_empty(), "{name} is not in the profile");
        // Every rule naming it is a plain allow: no argument filter, no architecture or capability
        // condition, so no combination of them can turn it off.
        for rule in naming {
            assert_eq!(rule["action"], "SCMP_ACT_ALLOW", "{name}: {rule}");
            for key in ["args", "includes", "excludes"] {
                let empty = match &rule[key] {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                assert!(empty, "{name} is allowed only under a condition ({key}): {rule}");
            }
        }
        for arch in ARCHES {
            for args in [[0; 6], [u64::MAX; 6], [4096, 1, 2, 3, 4, 5]] {
                assert_eq!(verdict(&p, arch, name, args), Verdict::Allow, "{name}{args:?} on {arch}");
            }
        }
    }
}

/// Every syscall echoport made under `strace -f` (both backends: epoll, and io_uring, whose
/// io_uring_* calls the test above checks; echo and chat mode with a round trip, /metrics, the idle
/// timeout, SIGTERM shutdown, and `echoport check`; glibc, x86_64), plus
/// what other libc versions, arches or a later change may use instead (epoll_pwait, sendmsg,
/// recvmsg, readv). Those whose arguments the profile filters are checked with their arguments.
const UNFILTERED: &str = "\
    accept4 access bind brk close connect epoll_create1 epoll_ctl epoll_wait epoll_pwait \
    eventfd2 execve exit exit_group fcntl futex getpeername getrandom getsockname gettid ioctl \
    listen lseek madvise mmap mprotect munmap newfstatat openat pipe2 poll prctl pread64 prlimit64 \
    read readv recvfrom recvmsg rseq rt_sigaction rt_sigprocmask rt_sigreturn sched_getaffinity \
    sendmsg sendto set_robust_list set_tid_address setsockopt shutdown sigaltstack socketpair \
    statx write writev";

#[test]
fn syscalls_echoport_makes_are_allowed() {
    let p = profile();
    for arch in ARCHES {
        for name in UNFILTERED.split_whitespace() {
            assert_eq!(verdict(&p, arch, name, [0; 6]), Verdict::Allow, "{name} on {arch}");
        }
        // Listeners, connections and the health check's probe: AF_UNIX, AF_INET, AF_INET6.
        for family in [1, 2, 10] {
            assert_eq!(
                verdict(&p, arch, "socket", [family, 1, 0, 0, 0, 0]),
                Verdict::Allow,
                "socket({family}) on {arch}"
            );
        }
        // Threads: glibc's clone3 gets ENOSYS without CAP_SYS_ADMIN, on which glibc falls back to
        // clone with the same flags (it does not fall back on EPERM); clone allows them.
        let clone3 = verdict(&p, arch, "clone3", [0; 6]);
        assert!(matches!(clone3, Verdict::Allow | Verdict::Errno(ENOSYS)), "clone3 on {arch}: {clone3:?}");
        // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID, as traced.
        let pthread_flags = 0x003d_0f00;
        assert_eq!(verdict(&p, arch, "clone", [pthread_flags, 0, 0, 0, 0, 0]), Verdict::Allow, "clone on {arch}");
    }
    assert_eq!(verdict(&p, "amd64", "arch_prctl", [0x1002, 0, 0, 0, 0, 0]), Verdict::Allow);
}
