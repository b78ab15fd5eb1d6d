//! The server under load: echoport embedded in the test process on a free loopback port, the
//! way a program embeds it (`Server::bind`, `run`, a `Shutdown` token), with the harness the
//! server's own tests use. Stopped on drop, when it must have seen no connection errors: the load
//! tool checks what it gets back, and the server must not have failed either.

#[path = "../../../../tests/common/embedded.rs"]
mod embedded;

pub mod faulty_irc;
pub mod run;
pub mod tls_echo;

pub use embedded::Server;

use std::time::Duration;

/// Generous upper bound for any single wait (CI is a loaded 2-core box).
pub const BOUND: Duration = Duration::from_secs(30);
