//! echoport: a TCP echo server on an IOCP-style completion port.
//!
//! The modules follow the article's nouns: [`port`] (the completion queue), [`acceptor`],
//! [`worker`] (the pool looping on the port), [`buffer`] (the pool of receive buffers) and
//! [`echo`] (the protocol). [`server`] wires them together; [`config`] reads flags, env and file.

pub mod acceptor;
pub mod buffer;
pub mod chat;
pub mod check;
pub mod cluster;
pub mod config;
pub mod echo;
pub mod limits;
pub mod metrics;
pub mod port;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod tls;
pub mod worker;
