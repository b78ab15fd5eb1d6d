//! The server under load: echoport embedded in the test process on a free loopback port, the
//! way a program embeds it (`Server::bind`, `run`, a `Shutdown` token), stopped on drop.

use echoport::server::{FinalStats, Server as Echoport, StartError};
use echoport::shutdown::Shutdown;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

/// Generous upper bound for any single wait (CI is a loaded 2-core box).
pub const BOUND: Duration = Duration::from_secs(30);

/// A running embedded server.
pub struct Server {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<FinalStats, StartError>>>,
}

impl Server {
    /// echoport with `args` (flags as on the command line) on 127.0.0.1, port chosen by the OS.
    pub fn start(args: &[&str]) -> Server {
        let argv = ["echoport", "--listen", "127.0.0.1:0", "--stats-interval", "0"].iter().chain(args);
        let config = echoport::config::load_from(argv).expect("valid server flags");
        let server = Echoport::bind(&config).expect("bind a free port");
        let addr = server.local_addrs()[0];
        let shutdown = Shutdown::new();
        let token = shutdown.clone();
        let thread = std::thread::Builder::new().name("embedded-echoport".into()).spawn(move || server.run(token));
        Server { addr, shutdown, thread: Some(thread.expect("spawn the server thread")) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process whose memory the server's connections use: this one.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.request();
        if let Some(thread) = self.thread.take() {
            let stats = thread.join().expect("server thread panicked").expect("server ran");
            // The load tool checks what it gets back; the server must not have seen errors either
            // (unless the test is already failing, when this would only hide the first panic).
            if !std::thread::panicking() {
                assert_eq!(stats.totals.errors, 0, "server saw connection errors: {stats:?}");
            }
        }
    }
}
