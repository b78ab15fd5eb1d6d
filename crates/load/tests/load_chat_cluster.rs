//! `echoport-load chat` across a real echoport network: a private redis-server (loopback, a free
//! port, no persistence) and three embedded echoport instances joined to it with `--cluster`.
//! With the clients spread round-robin over the three, two thirds of every message's deliveries
//! cross Redis to another instance; the run must still reach everyone exactly once, in order.
//! redis-server must be installed (`apt-get install redis-server`; scripts/test.sh installs it);
//! without it this test fails, it never passes silently.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::run::load;
use common::{BOUND, Server};

/// A private redis-server; killed and reaped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        // The free port is found by binding and closing: another process may take it first, and
        // then this Redis exits and we try another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server is needed (apt-get install redis-server): {e}"));
            let mut redis = Redis { child, port };
            if redis.wait_ready() {
                return redis;
            }
        }
        panic!("redis-server did not come up on a loopback port");
    }

    /// PING answered with PONG, within BOUND; false if the server exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut reply = [0; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name value` from a scrape of `addr`'s /metrics, if the series is there.
fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn three_instances_of_one_network_lose_nothing() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let nodes: Vec<Server> = (1..=3)
        .map(|i| {
            let (name, server_name) = (format!("n{i}"), format!("n{i}.test"));
            Server::start(&[
                "--mode",
                "chat",
                "--flood-rate",
                "0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--cluster",
                &url,
                "--node-name",
                &name,
                "--server-name",
                &server_name,
            ])
        })
        .collect();
    // One network: every instance joined and sees all three (joining takes a few seconds).
    let deadline = Instant::now() + BOUND;
    for n in &nodes {
        while metric(n.metrics_addr(), "echoport_cluster_joined") != Some(1)
            || metric(n.metrics_addr(), "echoport_cluster_nodes") != Some(3)
        {
            assert!(Instant::now() < deadline, "the instances did not form one network of 3 within {BOUND:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }
    let targets: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let mut args = vec!["chat"];
    for t in &targets {
        args.extend(["--target", t.as_str()]);
    }
    args.extend(["--clients", "30", "--senders", "4", "--rate", "400", "--duration", "1", "--warmup", "0.3"]);
    args.extend(["--threads", "2"]);
    let r = load(&args);
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert!(r.u("sent") > 0, "{}", r.explain());
    assert_eq!(r.u("deliveries"), r.u("sent") * 29, "every message reached every other client\n{}", r.explain());
    for k in ["lost", "duplicates", "reordered", "errors"] {
        assert_eq!(r.u(k), 0, "{k}\n{}", r.explain());
    }
    for n in &nodes {
        assert_eq!(metric(n.metrics_addr(), "echoport_cluster_splits_total"), Some(0), "no split");
    }
    drop(nodes);
    drop(redis);
}
