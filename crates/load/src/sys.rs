//! What the tool asks of the operating system: the open-file limit, a server's resident memory,
//! the number of cores.

/// Descriptors the tool needs besides its connections: stdio, pollers, files, slack.
pub const FD_SLACK: u64 = 64;

/// Raise the soft RLIMIT_NOFILE to the hard limit and return the new soft limit. Opening
/// thousands of connections is the point of the tool, and the soft limit is often 1024.
#[cfg(unix)]
pub fn raise_nofile() -> Result<u64, String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass, which lives for the whole call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // rlim_t is u64 on Linux but not on every Unix.
    #[allow(clippy::useless_conversion)]
    Ok(u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX))
}

#[cfg(not(unix))]
pub fn raise_nofile() -> Result<u64, String> {
    Ok(u64::MAX)
}

/// Fail with a clear message when `conns` connections cannot fit under the open-file limit.
pub fn check_nofile(conns: usize) -> Result<(), String> {
    let limit = raise_nofile()?;
    let need = conns as u64 + FD_SLACK;
    if need > limit {
        return Err(format!(
            "--conns {conns} needs about {need} open files but RLIMIT_NOFILE allows {limit} \
             (the hard limit); lower --conns or raise the limit"
        ));
    }
    Ok(())
}

/// What the report says instead of the server's memory where [`rss_kib`] has no reading.
pub const RSS_UNAVAILABLE: &str = "not available on this OS";

/// The resident set size (VmRSS) of process `pid` in KiB, from /proc/PID/status. `Ok(None)` where
/// there is no /proc (Windows): the idle report then says so instead of failing the run.
pub fn rss_kib(pid: u32) -> Result<Option<u64>, String> {
    if !cfg!(target_os = "linux") {
        return Ok(None);
    }
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("no VmRSS line in {path}"))
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_rss_and_limits() {
        #[cfg(target_os = "linux")]
        {
            assert!(super::rss_kib(std::process::id()).unwrap().unwrap() > 0);
            assert!(super::rss_kib(u32::MAX).is_err());
        }
        #[cfg(not(target_os = "linux"))]
        assert_eq!(super::rss_kib(std::process::id()), Ok(None));
        assert!(super::raise_nofile().unwrap() > 0);
        #[cfg(unix)]
        assert!(super::check_nofile(usize::MAX / 2).is_err());
        // Windows has no descriptor limit to check against.
        #[cfg(not(unix))]
        assert!(super::check_nofile(usize::MAX / 2).is_ok());
    }
}
