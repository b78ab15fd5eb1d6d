//! A sub-millisecond wake-up for the open loop. epoll's own timeout counts whole milliseconds
//! (mio rounds up), so sends paced by it go out up to 1 ms late, and since open-loop latency is
//! measured from the intended send time, that lateness would be reported as server latency. A
//! Linux timerfd in the same poller fires within microseconds. Elsewhere there is no timer and
//! callers fall back to the poll timeout (on Windows no finer than the system timer).

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

#[cfg(target_os = "linux")]
pub struct Timer {
    fd: std::os::fd::OwnedFd,
    armed: Option<Instant>,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// A timer registered in `registry` under `token` (readable when it fires).
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create takes no pointers; the result is checked before use.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        registry.register(&mut mio::unix::SourceFd(&fd.as_raw_fd()), token, mio::Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Fire at `at` (at once if it has passed). Re-arming for the same instant is free.
    pub fn arm(&mut self, at: Instant) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.armed == Some(at) {
            return Ok(());
        }
        let d = at.saturating_duration_since(Instant::now());
        // A zero it_value would disarm the timer: fire after 1 ns instead.
        let (sec, nsec) = if d.is_zero() { (0, 1) } else { (d.as_secs(), d.subsec_nanos()) };
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(sec).unwrap_or(libc::time_t::MAX),
                tv_nsec: nsec.into(),
            },
        };
        // SAFETY: `spec` lives across the call and the old-value pointer may be null.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }

    /// Call on the timer's event: consumes the expiry so the next one signals again.
    pub fn fired(&mut self) {
        use std::os::fd::AsRawFd;
        let mut ticks = 0u64;
        // SAFETY: reads at most 8 bytes into `ticks`, which lives across the call. A failure
        // (EAGAIN: nothing to consume) needs no handling.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut ticks).cast(), 8) };
        self.armed = None;
    }
}

#[cfg(not(target_os = "linux"))]
pub struct Timer;

#[cfg(not(target_os = "linux"))]
impl Timer {
    pub fn new(_: &Registry, _: Token) -> io::Result<Timer> {
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn arm(&mut self, _: Instant) -> io::Result<()> {
        Ok(())
    }
    pub fn fired(&mut self) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    #[test]
    fn fires_with_sub_millisecond_precision() {
        let mut poll = Poll::new().unwrap();
        let mut t = Timer::new(poll.registry(), Token(7)).unwrap();
        let mut events = Events::with_capacity(4);
        for _ in 0..3 {
            let at = Instant::now() + Duration::from_micros(300);
            t.arm(at).unwrap();
            poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
            let woke = Instant::now();
            assert!(events.iter().any(|e| e.token() == Token(7)), "the timer fired");
            assert!(woke >= at, "not early");
            t.fired();
        }
    }
}
