//! A driver for fuzzing and property tests: replays arbitrary bytes as a session of several
//! clients against [`ChatServer`], through the same line framing the engine uses
//! (`conn::Input`, over the wire crate's [`echoport_irc::Framer`]), and
//! panics if any invariant breaks. Shared by the
//! cargo-fuzz target (fuzz/) and the proptest in tests/, so both check the same things.

use super::conn::Input;
use super::server::{ChatConfig, ChatServer, Effects};
use echoport_irc::tags::{split_tags, tags, valid_key};
use echoport_irc::{MAX_CLIENT_TAGS, MAX_LINE, MAX_TAGS};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
/// RFC 1459's line length, CR LF included (the `--max-line-bytes` default), plus the room the
/// framer leaves for a client's tag section.
const MAX_LINE_BYTES: usize = MAX_LINE + MAX_CLIENT_TAGS;
/// What each client enables before registering, so tagged and plain recipients mix.
const CAPS: [&str; CLIENTS] = [
    "account-notify account-tag away-notify batch cap-notify chghost echo-message extended-join invite-notify \
     labeled-response message-tags multi-prefix server-time setname userhost-in-names draft/chathistory \
     extended-monitor draft/read-marker draft/message-redaction",
    "message-tags echo-message",
    "",
    "server-time labeled-response batch",
];

/// The input is cut into records at each LF. A record's first byte picks the client (`% 4`) and
/// what to do: 0xFF drops and reconnects that client, 0xFE advances the clock and runs the ping
/// timers; otherwise the rest of the record is that client's bytes, with the LF when the byte's
/// high bit is clear and without it when set (so a line can arrive in pieces, interleaved with
/// other clients' lines).
pub fn drive(data: &[u8]) {
    let config = ChatConfig {
        password: None,
        opers: vec![("op".to_owned(), "pw".to_owned())],
        motd: Some(vec!["hello".to_owned()]),
        history: 8,
        history_bytes: 4096,
        ..ChatConfig::default()
    };
    let mut server = ChatServer::new(config);
    let mut now = Instant::now();
    let mut open: HashSet<usize> = HashSet::new();
    let framing = || Input::for_fuzzing(MAX_LINE_BYTES - 2);
    let mut inputs: Vec<Input> = (0..CLIENTS).map(|_| framing()).collect();
    // Registered clients already in a shared channel, so random commands reach the deep paths.
    for (id, caps) in CAPS.iter().enumerate() {
        server.connect(id, IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8 + 1)), now);
        open.insert(id);
        let mut fx = Effects::default();
        let setup = [
            format!("CAP REQ :{caps}"),
            "CAP END".to_owned(),
            format!("NICK c{id}"),
            format!("USER c{id} 0 * :client {id}"),
            "JOIN #chan".to_owned(),
        ];
        for line in setup {
            server.handle_line(id, line.as_bytes(), false, now, &mut fx);
        }
        check(&fx, &open);
    }
    let mut bytes = Vec::new();
    for record in data.split(|&b| b == b'\n') {
        let Some((&first, rest)) = record.split_first() else { continue };
        let id = usize::from(first) % CLIENTS;
        let mut fx = Effects::default();
        match first {
            0xFF => {
                server.disconnect(id, "fuzz", &mut fx);
                server.connect(id, IpAddr::V4(Ipv4Addr::LOCALHOST), now);
                inputs[id] = framing();
                open.insert(id);
            }
            0xFE => {
                now += Duration::from_secs(61);
                server.tick(now, Duration::from_secs(60), Duration::from_secs(30), &mut fx);
            }
            _ if open.contains(&id) => {
                bytes.clear();
                bytes.extend_from_slice(rest);
                if first & 0x80 == 0 {
                    bytes.push(b'\n');
                }
                let input = &mut inputs[id];
                input.feed(&bytes, now, |line, truncated| {
                    assert!(line.len() <= MAX_LINE_BYTES - 2, "framing passed on a {}-byte line", line.len());
                    assert!(!line.contains(&b'\n'), "framing passed on a line with an LF inside");
                    server.handle_line(id, line, truncated, now, &mut fx);
                });
                assert!(input.buffered() < MAX_LINE_BYTES, "unfinished line grew to {} bytes", input.buffered());
            }
            _ => {}
        }
        check(&fx, &open);
        for id in fx.close {
            server.disconnect(id, "closed", &mut Effects::default());
            open.remove(&id);
        }
        assert!(server.clients() <= CLIENTS, "more clients than connections");
    }
}

/// Every line sent is one well-formed IRC line: at most 512 bytes after a tag section of at most
/// 8191 whose keys are valid, CRLF-terminated, with no CR, LF or NUL inside (so no relayed text
/// can smuggle a second line), addressed to an open client.
fn check(fx: &Effects, open: &HashSet<usize>) {
    for (to, line) in &fx.sends {
        assert!(open.contains(to), "line for a client that is not connected: {to}");
        let (section, rest) = split_tags(line);
        assert!(section.len() <= MAX_TAGS, "tag section longer than {MAX_TAGS} bytes: {}", section.len());
        assert!(rest.len() <= MAX_LINE, "line longer than 512 bytes after its tags: {}", rest.len());
        if let Some(section) = section.strip_prefix(b"@") {
            let section = section.strip_suffix(b" ").unwrap_or_else(|| panic!("tags without a space after them"));
            assert!(!section.is_empty() && !section.contains(&b' '), "malformed tag section");
            for tag in tags(section) {
                assert!(valid_key(tag.key), "invalid tag key {:?}", String::from_utf8_lossy(tag.key));
            }
        }
        let body = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("line without CRLF: {:?}", String::from_utf8_lossy(line)));
        assert!(!body.is_empty(), "empty line");
        assert!(
            !body.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "CR, LF or NUL inside a line: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fx(line: &[u8]) -> Effects {
        Effects { sends: vec![(0, Arc::from(line))], ..Effects::default() }
    }

    #[test]
    #[should_panic(expected = "CR, LF or NUL inside a line")]
    fn a_smuggled_second_line_is_caught() {
        check(&fx(b":a PRIVMSG #c :x\r:evil QUIT\r\n"), &HashSet::from([0]));
    }

    #[test]
    #[should_panic(expected = "line without CRLF")]
    fn an_unterminated_line_is_caught() {
        check(&fx(b":a PRIVMSG #c :x"), &HashSet::from([0]));
    }

    #[test]
    fn a_well_formed_line_passes() {
        check(&fx(b":a PRIVMSG #c :x\r\n"), &HashSet::from([0]));
    }
}
