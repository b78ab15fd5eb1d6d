//! Reading a server's `--metrics-listen` endpoint.

use super::{BOUND, Server, connect, read_to_eof};
use std::io::Write;
use std::net::SocketAddr;

/// The address of a server started with `--metrics-listen`, from its "metrics on" log line.
pub fn metrics_addr(server: &mut Server) -> SocketAddr {
    let line = server.wait_for_line(|l| l.contains("metrics on http://"), BOUND).expect("a `metrics on` line");
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("an address");
    addr.parse().unwrap_or_else(|_| panic!("bad metrics address in: {line}"))
}

/// GET `path` over plain HTTP/1.0; returns (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = connect(addr);
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let reply = String::from_utf8(read_to_eof(&mut s).expect("read the HTTP reply")).expect("UTF-8 reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header block");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// Prometheus samples `name{labels} value` as (name with labels, value); comments skipped.
pub fn samples(body: &str) -> Vec<(String, u64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("malformed sample: {l}"));
            (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

/// One sample's value from a fresh scrape (`name` with its labels, as exposed); `None` if absent.
pub fn scrape(addr: SocketAddr, name: &str) -> Option<u64> {
    let (_, body) = http_get(addr, "/metrics");
    samples(&body).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// `echoport_limit_hits_total{limit="<limit>"}` from a fresh scrape.
pub fn limit_hits(addr: SocketAddr, limit: &str) -> u64 {
    scrape(addr, &format!("echoport_limit_hits_total{{limit=\"{limit}\"}}"))
        .unwrap_or_else(|| panic!("no limit_hits series for {limit}"))
}
