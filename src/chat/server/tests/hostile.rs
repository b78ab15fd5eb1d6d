//! Hostile input: smuggled line breaks, long lines, IPv6 hosts, random garbage.

use super::*;

#[test]
fn cr_and_nul_cannot_smuggle_a_second_line() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.send(1, "JOIN #a");
    h.send(2, "JOIN #a");
    for line in
        [&b"PRIVMSG #a :hi\rQUIT :pwned"[..], b"PRIVMSG #a :hi\0\r\n:x!y@z PRIVMSG #a :fake", b"PRIVMSG #a :hi\r"]
    {
        let fx = h.sendb(1, line);
        assert_eq!(
            fx.sends.iter().map(|(_, l)| &l[..]).collect::<Vec<_>>(),
            [&b":alice!alice@10.0.0.1 PRIVMSG #a :hi\r\n"[..]]
        );
    }
    // Cut before the text: nothing to send.
    let fx = h.sendb(1, b"PRIVMSG #a :\rtext");
    assert_eq!(cmds(&fx, 1), ["412"]);
    let fx = h.sendb(1, b"NICK bo\0b");
    assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 NICK bo"]);
    assert_eq!(h.s.clients(), 2);
}

#[test]
fn long_lines() {
    let mut h = H::new();
    let long_nick = "n".repeat(NICKLEN);
    h.register(1, &long_nick);
    h.register(2, "bob");
    h.send(1, "JOIN #a");
    h.send(2, "JOIN #a");
    // A maximal line (510 bytes) is relayed, capped at 512 bytes with its new prefix.
    let head = "PRIVMSG #a :";
    let text = "é".repeat((MAX_BODY - head.len()) / 2);
    let line = format!("{head}{text}");
    assert!(line.len() <= MAX_BODY);
    let fx = h.send(1, &line);
    let out = &fx.sends[0].1;
    assert_eq!(fx.sends.len(), 1);
    assert!(out.len() <= MAX_LINE);
    assert!(out.len() >= MAX_LINE - 1);
    std::str::from_utf8(out).expect("cut on a character boundary");
    // A line cut by the engine, or over 510 bytes: 417, not processed.
    let mut fx = Effects::default();
    h.s.handle_line(1, line.as_bytes(), true, h.now, &mut fx);
    assert_eq!(lines(&fx, 1), [format!(":irc.test 417 {long_nick} :Input line was too long")]);
    let fx = h.send(1, &format!("PING {}", "x".repeat(506)));
    assert_eq!(cmds(&fx, 1), ["417"]);
    let fx = h.send(1, &format!("PING {}", "x".repeat(505)));
    assert_eq!(cmds(&fx, 1), ["PONG"]);
    assert!(fx.sends[0].1.len() <= MAX_LINE);
    assert!(lines(&fx, 1)[0].contains(&"x".repeat(450)));
}

#[test]
fn ipv6_host_is_a_valid_middle_parameter() {
    let mut h = H::new();
    h.s.connect(1, IpAddr::V6(Ipv6Addr::LOCALHOST), h.now);
    h.send(1, "NICK six");
    let fx = h.send(1, "USER six 0 * :Six");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 001 six :Welcome to the echoport IRC Network six!six@0::1");
    let fx = h.send(1, "WHOIS six");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 311 six six six 0::1 * :Six");
}

#[test]
fn garbage_never_panics_and_output_stays_well_formed() {
    /// xorshift64*: deterministic and dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }
    let commands = [
        "NICK", "USER", "PASS", "CAP", "JOIN", "PART", "PRIVMSG", "NOTICE", "MODE", "TOPIC", "KICK", "INVITE", "WHO",
        "WHOIS", "NAMES", "LIST", "AWAY", "OPER", "KILL", "QUIT", "PING", "PONG", "TIME", "LUSERS", "MOTD", "ISON",
        "USERHOST", "WHOWAS", "VERSION", "INFO", "HELP", "HELPOP", "LINKS", "WALLOPS",
    ];
    let words = [
        "#a",
        "#b",
        "#A",
        "a",
        "b",
        "c",
        "0",
        "*",
        "+o",
        "-o",
        "+ntimslk",
        "-k",
        "+v",
        "b",
        "op",
        "pw",
        ":x y",
        ":",
        "",
        "#a,#b",
        "a,b,c",
        "LS",
        "END",
        "REQ",
        "+i",
        "1",
        "+w",
        "%tcuihsnfdlaor,123",
        "o%na",
        "%",
        ">0",
        "<2",
        "C>0",
        "T<9",
        "!#a*",
        "-1",
    ];
    let mut rng = Rng(7);
    let mut h = with_oper();
    for id in 1..=6 {
        h.connect(id);
    }
    for step in 0..60_000 {
        let id = 1 + rng.below(6);
        if !h.s.clients.contains_key(&id) {
            h.connect(id);
        }
        let mut line: Vec<u8> = Vec::new();
        if rng.below(10) == 0 {
            let n = rng.below(80);
            line.extend((0..n).map(|_| rng.next() as u8));
        } else {
            line.extend_from_slice(commands[rng.below(commands.len())].as_bytes());
            for _ in 0..rng.below(5) {
                line.push(b' ');
                if rng.below(8) == 0 {
                    line.push(rng.next() as u8);
                }
                line.extend_from_slice(words[rng.below(words.len())].as_bytes());
            }
        }
        let mut fx = Effects::default();
        h.s.handle_line(id, &line, rng.below(50) == 0, h.now, &mut fx);
        check_lines(&fx);
        if step % 1000 == 0 {
            let fx = h.tick(40);
            check_lines(&fx);
        }
        if rng.below(200) == 0 {
            let mut fx = Effects::default();
            h.s.disconnect(id, "gone", &mut fx);
            check_lines(&fx);
        }
        // Invariants: memberships and invitations agree on both sides; nick map agrees with
        // clients.
        if step % 97 == 0 {
            for (key, ch) in &h.s.channels {
                assert!(!ch.members.is_empty());
                // Members and their status are one map now (they were a list and a map whose
                // sizes had to agree): its size agrees with the clients that list the channel.
                assert_eq!(ch.members.len(), h.s.clients.values().filter(|c| c.channels.contains(key)).count());
                for m in ch.members.keys() {
                    assert!(h.s.clients[m].channels.contains(key));
                }
                for t in &ch.invited {
                    assert!(h.s.invites[t].contains(key));
                }
            }
            for (id, keys) in &h.s.invites {
                assert!(!keys.is_empty());
                for key in keys {
                    assert!(h.s.channels[key].invited.contains(id));
                }
            }
            for (id, c) in &h.s.clients {
                let mut distinct = c.channels.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), c.channels.len());
                for key in &c.channels {
                    assert!(h.s.channels[key].has(*id));
                }
                if let Some(nick) = &c.nick {
                    assert_eq!(h.s.nicks[&*fold(nick)], *id);
                }
            }
            assert_eq!(h.s.nicks.len(), h.s.clients.values().filter(|c| c.nick.is_some()).count());
            let registered = h.s.clients.values().filter(|c| c.registered).count();
            assert_eq!(h.s.registered, registered);
            assert_eq!(h.s.opers, h.s.clients.values().filter(|c| c.oper).count());
            assert_eq!(h.s.invisible, h.s.clients.values().filter(|c| c.registered && c.invisible).count());
            assert!(h.s.max_registered >= registered);
            let (history, indexed) = h.s.whowas.len();
            assert!(history <= 1000 && indexed <= history);
        }
    }
}
