//! Unit tests of the chat state machine, one file per area, over the harness below: fake
//! client ids, a fake clock, and checks that every line sent is well formed.

mod accounts;
mod case_mapping;
mod channels;
mod history;
mod hostile;
mod ircv3;
mod lists;
mod membership;
mod messages;
mod modes;
mod monitor;
mod oper;
mod queries;
mod queries_ext;
mod registration;
mod replica;
mod secure;
mod timers;

use super::*;

use std::net::{Ipv4Addr, Ipv6Addr};

const T0_UNIX: u64 = 1_000_000_000;

/// Drives a ChatServer with fake clients 1, 2, 3... from 10.0.0.<id>, on a fake clock.
struct H {
    s: ChatServer,
    now: Instant,
}

impl H {
    fn new() -> H {
        H::with(ChatConfig { server_name: "irc.test".to_owned(), ..ChatConfig::default() })
    }

    fn with(config: ChatConfig) -> H {
        let mut s = ChatServer::new(config);
        let now = Instant::now();
        s.clock = (now, T0_UNIX * 1000);
        s.latest = now;
        H { s, now }
    }

    fn connect(&mut self, id: ClientId) {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8));
        self.s.connect(id, ip, self.now);
    }

    fn send(&mut self, id: ClientId, line: &str) -> Effects {
        self.sendb(id, line.as_bytes())
    }

    fn sendb(&mut self, id: ClientId, line: &[u8]) -> Effects {
        let mut fx = Effects::default();
        self.s.handle_line(id, line, false, self.now, &mut fx);
        check_lines(&fx);
        fx
    }

    /// Connects and registers `id` as `nick` (user name = nick), discarding the welcome.
    fn register(&mut self, id: ClientId, nick: &str) {
        self.connect(id);
        self.send(id, &format!("NICK {nick}"));
        let fx = self.send(id, &format!("USER {nick} 0 * :Real {nick}"));
        assert_eq!(cmds(&fx, id)[0], "001", "{:?}", lines(&fx, id));
    }

    fn tick(&mut self, after: u64) -> Effects {
        self.now += Duration::from_secs(after);
        let mut fx = Effects::default();
        self.s.tick(self.now, Duration::from_secs(60), Duration::from_secs(30), &mut fx);
        check_lines(&fx);
        fx
    }
}

/// Every line sent is one well-formed IRC line.
fn check_lines(fx: &Effects) {
    for (_, line) in &fx.sends {
        let (tags, line) = echoport_irc::tags::split_tags(line);
        assert!(tags.len() <= echoport_irc::MAX_TAGS, "{} bytes of tags", tags.len());
        assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        assert!(line.ends_with(b"\r\n"));
        let body = &line[..line.len() - 2];
        assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0), "{:?}", String::from_utf8_lossy(line));
    }
}

use echoport_irc::{MAX_LINE, fold};

/// The lines `id` got, without CR LF.
fn lines(fx: &Effects, id: ClientId) -> Vec<String> {
    fx.sends
        .iter()
        .filter(|(to, _)| *to == id)
        .map(|(_, l)| String::from_utf8_lossy(&l[..l.len() - 2]).into_owned())
        .collect()
}

/// The commands (or numerics) of the lines `id` got.
fn cmds(fx: &Effects, id: ClientId) -> Vec<String> {
    lines(fx, id)
        .iter()
        .map(|l| {
            let mut words = l.split(' ').skip_while(|w| w.starts_with('@'));
            let first = words.next().unwrap_or("");
            if first.starts_with(':') { words.next().unwrap_or("").to_owned() } else { first.to_owned() }
        })
        .collect()
}

/// Every capability offered without accounts, as CAP LS lists them.
const OFFERED: &str = "account-notify account-tag away-notify batch cap-notify chghost draft/read-marker echo-message extended-join \
                       extended-monitor invite-notify labeled-response message-tags multi-prefix server-time setname userhost-in-names";

fn recipients(fx: &Effects) -> Vec<ClientId> {
    fx.sends.iter().map(|(id, _)| *id).collect()
}

fn with_oper() -> H {
    H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        opers: vec![("operuser".to_owned(), "operpassword".to_owned())],
        ..ChatConfig::default()
    })
}
