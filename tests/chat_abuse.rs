//! Hostile input in chat mode: overlong lines, binary garbage, NUL and invalid UTF-8, CR/LF
//! injection, JOIN and NICK floods, commands before registration. After each attack the offender
//! must have had a clear error line (or a clean close), and an innocent bystander in the same
//! channel must have received only well-formed lines it should get, and still be served.
//!
//! Attacks that are judged by the server's memory (RSS) run against the real binary; the others
//! against the server embedded in the test process.
//!
//! Synchronisation as in tests/chat.rs: a reply is the signal, and `sync` (a PING/PONG round trip)
//! marks "everything caused so far has arrived", so absence is asserted without sleeping.

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::net::SocketAddr;
use std::time::Instant;

use common::{BOUND, Rng, chat_server, embedded};
use irc::{Client, Message, WAIT, isupport, show};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Server RSS may grow at most this much during an attack: generous for a loaded CI box, yet well
/// below what buffering the attacker's bytes (or state per name it sent) would take.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// A bystander and an offender of the server at `addr`, both registered and in #room, with
/// everything read so far.
fn bystander_and_offender(addr: SocketAddr) -> (Client, Client) {
    let mut bystander = Client::registered(addr, "bystander");
    bystander.join("#room");
    let mut offender = Client::registered(addr, "offender");
    offender.join("#room");
    bystander.expect(|m| m.is("JOIN") && m.nick() == "offender", WAIT);
    assert_quiet(&mut bystander, "set-up");
    (bystander, offender)
}

/// Why `m` is not one well-formed IRC line (CR LF terminated, at most 512 bytes with it, no CR, LF
/// or NUL inside, a command that is a word or a three-digit numeric), or `None` if it is.
fn malformed(m: &Message) -> Option<String> {
    let Some(body) = m.raw.strip_suffix(b"\r") else {
        return Some("not terminated by CR LF".to_owned());
    };
    if body.len() + 2 > 512 {
        Some(format!("{} bytes with CR LF", body.len() + 2))
    } else if body.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        Some("a CR, LF or NUL inside the line".to_owned())
    } else if !(!m.command.is_empty() && m.command.bytes().all(|b| b.is_ascii_alphabetic()) || m.is_numeric()) {
        Some(format!("command {:?}", m.command))
    } else {
        None
    }
}

#[track_caller]
fn assert_wellformed(c: &Client, m: &Message) {
    if let Some(p) = malformed(m) {
        c.fail(&format!("malformed line ({p}): {:?}", String::from_utf8_lossy(&m.raw)));
    }
}

/// `sync`, checking every line that came before the PONG is well-formed.
#[track_caller]
fn sync_checked(c: &mut Client) -> Vec<Message> {
    let got = c.sync();
    for m in &got {
        assert_wellformed(c, m);
    }
    got
}

#[track_caller]
fn assert_quiet(c: &mut Client, what: &str) {
    let got = sync_checked(c);
    if !got.is_empty() {
        c.fail(&format!("{what}: expected nothing, got:\n{}", show(&got)));
    }
}

/// The bystander still talks to the offender's channel and back: both directions work.
#[track_caller]
fn still_works(bystander: &mut Client, offender: &mut Client, tag: &str) {
    bystander.send(&format!("PRIVMSG #room :bystander still here {tag}"));
    let m = offender.expect(|m| m.is("PRIVMSG"), WAIT);
    assert_eq!((m.nick(), m.last()), ("bystander", format!("bystander still here {tag}").as_str()));
    offender.send(&format!("PRIVMSG #room :offender still here {tag}"));
    let m = bystander.expect(|m| m.is("PRIVMSG"), WAIT);
    assert_wellformed(bystander, &m);
    assert_eq!(m.last(), format!("offender still here {tag}"));
}

/// The text of every PRIVMSG/NOTICE in `got`.
fn texts(got: &[Message]) -> Vec<&str> {
    got.iter().filter(|m| m.is("PRIVMSG") || m.is("NOTICE")).map(|m| m.last()).collect()
}

// ---------------------------------------------------------------------------
// Overlong lines
// ---------------------------------------------------------------------------

#[test]
fn overlong_lines_get_417_and_never_reach_the_channel() {
    let server = embedded::chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    let big = "A".repeat(10 * KIB);

    // In one piece.
    offender.send(&format!("PRIVMSG #room :{big}"));
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("417"), "{}", show(&got));
    assert_quiet(&mut bystander, "a 10 KB PRIVMSG");

    // Between two good lines in the same write, and as a JOIN: only the good lines take effect.
    let mut burst = b"PRIVMSG #room :before\r\n".to_vec();
    burst.extend_from_slice(format!("PRIVMSG #room :{big}\r\n").as_bytes());
    burst.extend_from_slice(format!("JOIN #{big}\r\n").as_bytes());
    burst.extend_from_slice(b"PRIVMSG #room :after\r\n");
    offender.send_raw(&burst);
    let got = sync_checked(&mut offender);
    assert_eq!(got.iter().map(|m| m.command.as_str()).collect::<Vec<_>>(), ["417", "417"], "{}", show(&got));
    let got = sync_checked(&mut bystander);
    assert_eq!(texts(&got), ["before", "after"], "{}", show(&got));
    assert_eq!(got.len(), 2, "{}", show(&got));

    // Dribbled in 1 KB writes: the cut is remembered across reads.
    let line = format!("PRIVMSG #room :{big}\r\n");
    for chunk in line.as_bytes().chunks(KIB) {
        offender.send_raw(chunk);
    }
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("417"), "{}", show(&got));
    assert_quiet(&mut bystander, "a 10 KB PRIVMSG in 1 KB pieces");

    // No channel came out of the overlong JOIN.
    offender.send("LIST");
    let got = sync_checked(&mut offender);
    let listed: Vec<&str> = got.iter().filter(|m| m.is("322")).map(|m| m.param(1)).collect();
    assert_eq!(listed, ["#room"], "{}", show(&got));
    still_works(&mut bystander, &mut offender, "after overlong lines");
}

#[test]
fn megabytes_without_a_newline_keep_memory_bounded_and_the_connection_usable() {
    const PUSH: usize = 64 * MIB;
    let server = chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    let before = server.rss_kib();
    let mut peak = before;

    offender.send_raw(b"PRIVMSG #room :");
    let chunk = vec![b'x'; 256 * KIB];
    let mut pushed = 0;
    let started = Instant::now();
    while pushed < PUSH {
        assert!(started.elapsed() < BOUND, "pushed only {pushed} bytes in {BOUND:?}");
        // The server may instead close a client that sends this much without a newline, but it must
        // do so cleanly (checked below); it must not stop reading and leave us blocked.
        if let Err(e) = offender.try_send_raw(&chunk) {
            eprintln!("the server stopped the unterminated line after {pushed} bytes: {e}");
            break;
        }
        pushed += chunk.len();
        if pushed % (8 * MIB) == 0 {
            peak = peak.max(server.rss_kib());
            // The others are served meanwhile.
            assert_quiet(&mut bystander, "during the unterminated line");
        }
    }
    peak = peak.max(server.rss_kib());
    eprintln!("pushed {} MiB without a newline; rss before={before} KiB peak={peak} KiB", pushed / MIB);
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "server RSS grew from {before} to {peak} KiB while one line of {pushed} bytes arrived"
    );

    if pushed == PUSH && offender.try_send_raw(b"\r\n").is_ok() {
        // Kept open: the line is refused as a whole, and the connection goes on.
        let got = sync_checked(&mut offender);
        assert!(got.len() == 1 && got[0].is("417"), "{}", show(&got));
        assert_quiet(&mut bystander, "a 64 MiB line");
        still_works(&mut bystander, &mut offender, "after 64 MiB without a newline");
    } else {
        // Closed: with an ERROR line at most, and the channel sees a QUIT, nothing of the line.
        let tail = offender.expect_closed(WAIT);
        for m in &tail {
            assert_wellformed(&offender, m);
            assert!(m.is("ERROR"), "{m:?}");
        }
        let quit = bystander.expect(|m| m.is("QUIT"), WAIT);
        assert_eq!(quit.nick(), "offender", "{quit:?}");
        assert_quiet(&mut bystander, "after the offender was closed");
    }
}

// ---------------------------------------------------------------------------
// Binary garbage, NUL, invalid UTF-8
// ---------------------------------------------------------------------------

#[test]
fn binary_garbage_lines_get_error_numerics_and_reach_no_one() {
    const LINES: usize = 400;
    let server = embedded::chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    let mut rng = Rng::new(0xBAD_B17E5);
    let mut garbage = Vec::new();
    for i in 0..LINES {
        // Some lines are one long word, so that an error reply quoting it would overflow 512 bytes.
        let len = if i % 10 == 0 { 500 } else { rng.range(1, 300) as usize };
        let mut line = rng.bytes(len);
        for b in &mut line {
            if *b == b'\n' || (i % 10 == 0 && matches!(*b, b' ' | b'\r' | 0)) {
                *b = b'G';
            }
        }
        // Never a valid command by accident (a stray QUIT would end the test early).
        line[0] = 0xFF;
        garbage.extend_from_slice(&line);
        garbage.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
    }
    offender.send_raw(&garbage);
    offender.log_received = false;
    let got = sync_checked(&mut offender);
    assert_eq!(got.len(), LINES, "replies to {LINES} garbage lines");
    for m in &got {
        assert!(m.is("421"), "garbage got a reply other than 421 Unknown command: {m:?}");
    }
    eprintln!("{} x 421 for {LINES} garbage lines", got.len());
    assert_quiet(&mut bystander, "binary garbage");
    still_works(&mut bystander, &mut offender, "after garbage");
}

#[test]
fn a_garbage_flood_under_default_flood_control_ends_with_an_error_line_and_a_quit() {
    // Default flood settings: this is what a server in production does with the same input.
    let server = embedded::Server::start(&["--mode", "chat"]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    let mut rng = Rng::new(0xF100D);
    let mut garbage = Vec::new();
    while garbage.len() < 2 * MIB {
        let len = rng.range(1, 200) as usize;
        let mut line = rng.bytes(len);
        line.retain(|&b| b != b'\n');
        garbage.extend_from_slice(&line);
        garbage.push(b'\n');
    }
    offender.log_received = false;
    let mut writer = offender.stream().try_clone().unwrap();
    let tail = std::thread::scope(|s| {
        // The server stops reading and resets the connection part-way: a failed write is expected.
        s.spawn(move || std::io::Write::write_all(&mut writer, &garbage));
        offender.expect_closed(WAIT)
    });
    for m in &tail {
        assert_wellformed(&offender, m);
    }
    let error = tail.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| offender.fail("no ERROR line before the close"));
    assert!(error.last().contains("Excess Flood"), "{error:?}");
    assert!(tail.iter().all(|m| m.is("421") || m.is("ERROR")), "{}", show(&tail));
    let quit = bystander.expect(|m| m.is("QUIT"), WAIT);
    assert_wellformed(&bystander, &quit);
    assert!(quit.nick() == "offender" && quit.last().contains("Excess Flood"), "{quit:?}");
    assert_quiet(&mut bystander, "after the flooder was dropped");
    let mut other = Client::registered(server.addr(), "other");
    other.join("#room");
    bystander.expect(|m| m.is("JOIN") && m.nick() == "other", WAIT);
    other.send("PRIVMSG #room :business as usual");
    let m = bystander.expect(|m| m.is("PRIVMSG"), WAIT);
    assert_eq!((m.nick(), m.last()), ("other", "business as usual"));
}

#[test]
fn nul_and_invalid_utf8_in_text_nicks_channels_and_commands() {
    let server = embedded::chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());

    // Text is relayed byte for byte, whatever its encoding.
    let text: &[u8] = b"\xff\xfe latin-1 caf\xe9, a lone \xc3, overlong \xc0\xaf, surrogate \xed\xa0\x80";
    let mut line = b"PRIVMSG #room :".to_vec();
    line.extend_from_slice(text);
    line.extend_from_slice(b"\r\n");
    offender.send_raw(&line);
    assert_quiet(&mut offender, "a PRIVMSG");
    let got = sync_checked(&mut bystander);
    assert_eq!(got.len(), 1, "{}", show(&got));
    assert!(got[0].is("PRIVMSG") && got[0].nick() == "offender" && got[0].param(0) == "#room", "{:?}", got[0]);
    let want: Vec<u8> = [b" :".as_slice(), text, b"\r"].concat();
    assert!(got[0].raw.ends_with(&want), "text not relayed byte for byte: {:?}", got[0]);

    // Nicks must be ASCII: refused with 432, and nothing changes for anyone.
    for bad in [&b"\xff\xfe"[..], b"caf\xe9", b"n\x01ck", b"\xc3\xa9t\xc3\xa9"] {
        offender.send_raw(&[b"NICK ", bad, b"\r\n"].concat());
        let got = sync_checked(&mut offender);
        assert!(got.len() == 1 && got[0].is("432"), "NICK {bad:?}: {}", show(&got));
    }
    assert_quiet(&mut bystander, "refused nick changes");

    // NUL ends the line: the command runs on what came before it, and nothing after it survives.
    offender.send_raw(b"NICK nul\0lified\r\n");
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("NICK") && got[0].param(0) == "nul", "{}", show(&got));
    let got = sync_checked(&mut bystander);
    assert!(got.len() == 1 && got[0].is("NICK") && got[0].param(0) == "nul", "{}", show(&got));
    offender.send_raw(b"PRIVMSG\0 #room :hidden\r\n");
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("411"), "PRIVMSG cut to no target: {}", show(&got));
    offender.send_raw(b"PRIV\xffMSG #room :hidden\r\n");
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("421"), "{}", show(&got));
    assert_quiet(&mut bystander, "NUL and invalid UTF-8 in commands");

    // A channel name that is not UTF-8 works as a name like any other, for both of them.
    let chan: &[u8] = b"#caf\xe9\xff";
    offender.send_raw(&[b"JOIN ", chan, b"\r\n"].concat());
    let got = sync_checked(&mut offender);
    assert!(got.first().is_some_and(|m| m.is("JOIN") && m.raw.ends_with(&[chan, b"\r"].concat())), "{}", show(&got));
    assert!(got.last().is_some_and(|m| m.is("366")), "{}", show(&got));
    assert_quiet(&mut bystander, "a JOIN to another channel");
    bystander.send_raw(&[b"JOIN ", chan, b"\r\n"].concat());
    let got = sync_checked(&mut bystander);
    let names = got.iter().find(|m| m.is("353")).unwrap_or_else(|| bystander.fail("no 353"));
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@nul", "bystander"]);
    offender.send_raw(&[b"PRIVMSG ", chan, b" :\xfe\xfe\r\n"].concat());
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("JOIN") && got[0].nick() == "bystander", "{}", show(&got));
    let got = sync_checked(&mut bystander);
    assert!(got.len() == 1 && got[0].raw.ends_with(&[chan, b" :\xfe\xfe\r"].concat()), "{}", show(&got));
    // A NUL inside a channel name cuts it there.
    offender.send_raw(b"JOIN #room2\0secret\r\n");
    let got = sync_checked(&mut offender);
    assert!(got.first().is_some_and(|m| m.is("JOIN") && m.param(0) == "#room2"), "{}", show(&got));
    assert_quiet(&mut bystander, "a JOIN cut at NUL");
    still_works(&mut bystander, &mut offender, "after NUL and invalid UTF-8");
}

// ---------------------------------------------------------------------------
// CR/LF injection
// ---------------------------------------------------------------------------

/// One line the bystander must receive from the offender: (command, target, text).
type Expected<'a> = (&'a str, &'a str, &'a str);

#[test]
fn injected_line_breaks_never_smuggle_a_second_line_to_others() {
    let server = embedded::chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    // Channel operator, so that its TOPIC (and any smuggled MODE) would take effect.
    bystander.send("MODE #room +o offender");
    bystander.expect(|m| m.is("MODE"), WAIT);
    offender.expect(|m| m.is("MODE"), WAIT);
    // (bytes sent, what the bystander must see: (command, target, text) for each line, in order)
    let attacks: &[(&[u8], &[Expected])] = &[
        (b"PRIVMSG #room :one\rQUIT :injected\r\n", &[("PRIVMSG", "#room", "one")]),
        (b"PRIVMSG #room :two\r \n", &[("PRIVMSG", "#room", "two")]),
        (b"PRIVMSG #room :three\r\r\r\n", &[("PRIVMSG", "#room", "three")]),
        (b"PRIVMSG #room :four\r:bystander!b@h PRIVMSG #room :spoofed\r\n", &[("PRIVMSG", "#room", "four")]),
        (b"NOTICE #room :five\0KICK #room bystander\r\n", &[("NOTICE", "#room", "five")]),
        (b"PRIVMSG #room :six\rPRIVMSG #room :seven\n", &[("PRIVMSG", "#room", "six")]),
        // A client cannot choose its source: a spoofed prefix or tags are dropped.
        (b":bystander!b@h PRIVMSG #room :eight\r\n", &[("PRIVMSG", "#room", "eight")]),
        (b"@time=x;+evil=\\r\\n :server PRIVMSG #room :nine\r\n", &[("PRIVMSG", "#room", "nine")]),
        // Escapes and look-alikes of CR/LF are text, relayed as they are, in one line.
        (b"PRIVMSG #room :ten %0D%0AQUIT\r\n", &[("PRIVMSG", "#room", "ten %0D%0AQUIT")]),
        (b"PRIVMSG #room :eleven \\r\\nQUIT\r\n", &[("PRIVMSG", "#room", "eleven \\r\\nQUIT")]),
        (
            b"PRIVMSG #room :twelve \xe2\x80\xa8\xe2\x80\xa9\xc2\x85 QUIT\r\n",
            &[("PRIVMSG", "#room", "twelve \u{2028}\u{2029}\u{85} QUIT")],
        ),
        (
            b"PRIVMSG #room :thirteen \xc0\x8d\xc0\x8a QUIT\r\n",
            &[("PRIVMSG", "#room", "thirteen \u{fffd}\u{fffd}\u{fffd}\u{fffd} QUIT")],
        ),
        // Injection through stored text that is relayed later.
        (b"TOPIC #room :topic\rMODE #room +i\r\n", &[("TOPIC", "#room", "topic")]),
        (b"PRIVMSG bystander :private\rPRIVMSG #room :x\r\n", &[("PRIVMSG", "bystander", "private")]),
        (b"AWAY :gone\r:x 001 bystander :fake\r\nPRIVMSG bystander :back\r\n", &[("PRIVMSG", "bystander", "back")]),
        (b"PART #room :bye\rJOIN #evil\r\n", &[("PART", "#room", "bye")]),
    ];
    for (i, (bytes, want)) in attacks.iter().enumerate() {
        offender.send_raw(bytes);
        sync_checked(&mut offender);
        let got = sync_checked(&mut bystander);
        let what = format!("attack {i} {:?}", String::from_utf8_lossy(bytes));
        assert_eq!(got.len(), want.len(), "{what}: the bystander got\n{}", show(&got));
        for (m, (command, target, text)) in got.iter().zip(want.iter()) {
            assert!(
                m.is(command) && m.nick() == "offender" && m.param(0) == *target && m.last() == *text,
                "{what}: expected `:offender {command} {target} :{text}`, got {m:?}"
            );
        }
    }
    // The away message stored from the injection attempt is just "gone".
    bystander.send("WHOIS offender");
    let got = sync_checked(&mut bystander);
    let away = got.iter().find(|m| m.is("301")).unwrap_or_else(|| bystander.fail("no 301 in WHOIS"));
    assert_eq!(away.last(), "gone");
    // The topic as a later joiner sees it, and no mode was smuggled in.
    let mut late = Client::registered(server.addr(), "late");
    let got = late.join("#room");
    let topic = got.iter().find(|m| m.is("332")).unwrap_or_else(|| late.fail("no 332"));
    assert_eq!(topic.last(), "topic");
    let names = got.iter().find(|m| m.is("353")).unwrap_or_else(|| late.fail("no 353"));
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@bystander", "late"], "the offender parted; no one else is there");
}

#[test]
fn injected_line_breaks_in_registration_fields_never_reach_others() {
    let server = embedded::chat_server(&[]);
    let mut bystander = Client::registered(server.addr(), "bystander");
    bystander.join("#room");
    let mut mallory = Client::connect(server.addr(), "mallory");
    // A user name cut at its NUL leaves too few parameters.
    mallory.send_raw(b"NICK mallory\rQUIT\r\nUSER mal\0evil 0 * :x\r\n");
    let got = sync_checked(&mut mallory);
    assert!(got.len() == 1 && got[0].is("461"), "{}", show(&got));
    mallory.send_raw(b"USER mal 0 * :Real\rname :x 001 bystander :fake\r\n");
    mallory.finish_registration();
    mallory.join("#room");
    bystander.expect(|m| m.is("JOIN") && m.nick() == "mallory", WAIT);
    for query in ["WHO #room", "WHOIS mallory", "NAMES #room", "USERHOST mallory"] {
        bystander.send(query);
        let got = sync_checked(&mut bystander);
        assert!(!got.is_empty(), "{query}: no reply");
        for m in &got {
            assert!(m.is_numeric() && m.nick() == "echoport", "{query}: {m:?}");
        }
        let text = show(&got);
        assert!(!text.contains("fake") && !text.contains("evil"), "{query} shows injected text:\n{text}");
    }
    bystander.send("WHOIS mallory");
    let got = sync_checked(&mut bystander);
    let user = got.iter().find(|m| m.is("311")).unwrap_or_else(|| bystander.fail("no 311"));
    assert_eq!((user.param(1), user.last()), ("mallory", "Real"), "{user:?}");
}

// ---------------------------------------------------------------------------
// JOIN and NICK floods
// ---------------------------------------------------------------------------

#[test]
fn thousands_of_joins_hit_the_channel_limit_and_the_bystander_stays_served() {
    const JOIN_LINES: usize = 5000;
    let server = chat_server(&[]);
    let mut bystander = Client::registered(server.addr(), "bystander");
    bystander.join("#room");
    let mut offender = Client::connect(server.addr(), "offender");
    let burst = offender.register("offender");
    let limit: usize = isupport(&burst)
        .get("CHANLIMIT")
        .and_then(|v| v.strip_prefix("#:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| offender.fail("no CHANLIMIT=#:N in ISUPPORT"));
    offender.join("#room");
    bystander.expect(|m| m.is("JOIN") && m.nick() == "offender", WAIT);
    offender.log_received = false;
    let before = server.rss_kib();

    // 5,000 names in one JOIN do not fit in a line: refused as a whole.
    let names: Vec<String> = (0..JOIN_LINES).map(|i| format!("#many{i}")).collect();
    offender.send(&format!("JOIN {}", names.join(",")));
    let got = sync_checked(&mut offender);
    assert!(got.len() == 1 && got[0].is("417"), "{}", show(&got));

    // As many names as fit in a line: joined up to the limit, then 405 for each of the rest.
    let mut line = String::from("JOIN ");
    let mut listed = 0;
    while line.len() + names[listed].len() < 500 {
        line.push_str(&names[listed]);
        line.push(',');
        listed += 1;
    }
    assert!(listed > limit, "test set-up: {listed} names fit in a line, the limit is {limit}");
    offender.send(line.trim_end_matches(','));
    let got = sync_checked(&mut offender);
    let joins = got.iter().filter(|m| m.is("JOIN")).count();
    let refused = got.iter().filter(|m| m.is("405")).count();
    assert_eq!((joins, refused), (limit - 1, listed - (limit - 1)), "{} lines", got.len());
    assert_quiet(&mut bystander, "JOINs to other channels");

    // Thousands of JOIN lines (the first after leaving everything): the same limit holds.
    let mut lines = b"JOIN 0\r\n".to_vec();
    for n in &names {
        lines.extend_from_slice(format!("JOIN {n}\r\n").as_bytes());
    }
    offender.send_raw(&lines);
    let got = sync_checked(&mut offender);
    let joins = got.iter().filter(|m| m.is("JOIN")).count();
    let refused = got.iter().filter(|m| m.is("405")).count();
    assert_eq!((joins, refused), (limit, JOIN_LINES - limit), "{} lines", got.len());
    // The bystander saw the offender leave #room (JOIN 0), nothing else, and is served.
    let got = sync_checked(&mut bystander);
    assert!(got.len() == 1 && got[0].is("PART") && got[0].nick() == "offender", "{}", show(&got));
    bystander.send("LIST");
    let got = sync_checked(&mut bystander);
    assert_eq!(got.iter().filter(|m| m.is("322")).count(), 1 + limit, "channels listed");
    let after = server.rss_kib();
    eprintln!("rss before={before} KiB after={after} KiB");
    assert!(after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB, "RSS {before} -> {after} KiB");

    // Leaving them all removes them.
    offender.send("JOIN 0");
    sync_checked(&mut offender);
    bystander.send("LIST");
    let got = sync_checked(&mut bystander);
    let listed: Vec<&str> = got.iter().filter(|m| m.is("322")).map(|m| m.param(1)).collect();
    assert_eq!(listed, ["#room"]);
}

#[test]
fn many_clients_filling_thousands_of_channels_leave_no_state_behind() {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 50;
    let server = chat_server(&[]);
    let mut bystander = Client::registered(server.addr(), "bystander");
    bystander.join("#room");
    let before = server.rss_kib();
    let mut crowd: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let nick = format!("crowd{i}");
            let mut c = Client::registered(server.addr(), &nick);
            c.log_received = false;
            let joins: String = (0..PER_CLIENT).map(|k| format!("JOIN #c{i}x{k}\r\n")).collect();
            c.send_raw(joins.as_bytes());
            c
        })
        .collect();
    for c in &mut crowd {
        let got = sync_checked(c);
        assert_eq!(got.iter().filter(|m| m.is("JOIN")).count(), PER_CLIENT, "{}", c.name());
    }
    bystander.log_received = false;
    bystander.send("LIST");
    let got = sync_checked(&mut bystander);
    assert_eq!(got.iter().filter(|m| m.is("322")).count(), 1 + CLIENTS * PER_CLIENT);
    let full = server.rss_kib();
    for c in &mut crowd {
        c.send("QUIT :done");
        c.expect_closed(WAIT);
    }
    bystander.send("LIST");
    let got = sync_checked(&mut bystander);
    let listed: Vec<&str> = got.iter().filter(|m| m.is("322")).map(|m| m.param(1)).collect();
    assert_eq!(listed, ["#room"], "channels left behind by clients that quit");
    bystander.send("LUSERS");
    let got = sync_checked(&mut bystander);
    let users = got.iter().find(|m| m.is("251")).unwrap_or_else(|| bystander.fail("no 251"));
    assert!(users.last().contains("There are 1 users"), "{users:?}");
    eprintln!("rss before={before} KiB with {} channels={full} KiB", CLIENTS * PER_CLIENT);
    assert!(full.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB, "RSS {before} -> {full} KiB");
}

#[test]
fn thousands_of_nick_changes_reach_the_channel_in_order_and_free_the_old_nicks() {
    const CHANGES: usize = 5000;
    let server = chat_server(&[]);
    let (mut bystander, mut offender) = bystander_and_offender(server.addr());
    bystander.log_received = false;
    offender.log_received = false;
    let before = server.rss_kib();
    let lines: String = (0..CHANGES).map(|i| format!("NICK n{i}\r\n")).collect();
    offender.send_raw(lines.as_bytes());
    let got = sync_checked(&mut offender);
    assert_eq!(got.iter().filter(|m| m.is("NICK")).count(), CHANGES);
    let got = sync_checked(&mut bystander);
    assert_eq!(got.len(), CHANGES, "NICK lines seen by the bystander");
    let mut from = "offender".to_owned();
    for (i, m) in got.iter().enumerate() {
        assert_wellformed(&bystander, m);
        let to = format!("n{i}");
        assert!(m.is("NICK") && m.nick() == from && m.param(0) == to, "change {i}: {m:?}");
        from = to;
    }
    let after = server.rss_kib();
    assert!(after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB, "RSS {before} -> {after} KiB");
    // The old nicks are free again; the last one is taken.
    let mut newcomer = Client::registered(server.addr(), "n0");
    newcomer.send("NICK offender");
    let got = sync_checked(&mut newcomer);
    assert!(got.len() == 1 && got[0].is("NICK"), "{}", show(&got));
    newcomer.send(&format!("NICK n{}", CHANGES - 1));
    let got = sync_checked(&mut newcomer);
    assert!(got.len() == 1 && got[0].is("433"), "{}", show(&got));
    assert_quiet(&mut bystander, "nick changes outside the channel");
    still_works(&mut bystander, &mut offender, "after 5000 nick changes");
}

// ---------------------------------------------------------------------------
// Before registration
// ---------------------------------------------------------------------------

#[test]
fn commands_before_registration_get_451_and_change_nothing() {
    let server = embedded::chat_server(&["--oper", "admin:secret"]);
    let mut op = Client::registered(server.addr(), "op");
    op.join("#room");
    op.send("TOPIC #room :original topic");
    op.sync();
    let mut early = Client::connect(server.addr(), "early");
    // Half registered (NICK only) is still unregistered.
    early.send("NICK early");
    assert_quiet(&mut early, "NICK alone");
    let commands = [
        "PRIVMSG #room :hello",
        "PRIVMSG op :hello",
        "privmsg #room :lower case",
        "JOIN #room",
        "JoIn #other",
        "PART #room",
        "TOPIC #room :hijacked",
        "MODE #room +i",
        "MODE #room +o early",
        "MODE early +i",
        "KICK #room op",
        "INVITE early #room",
        "NAMES #room",
        "LIST",
        "WHO *",
        "WHOIS op",
        "WHOWAS op",
        "AWAY :away",
        "OPER admin secret",
        "KILL op :bye",
        "TIME",
        "MOTD",
        "LUSERS",
        "VERSION",
        "ISON op",
        "USERHOST op",
        "INFO",
        "HELP",
        "HELPOP JOIN",
        "LINKS",
        "WALLOPS :hello",
    ];
    for cmd in commands {
        early.send(cmd);
        let got = sync_checked(&mut early);
        assert!(got.len() == 1 && got[0].is("451"), "{cmd:?} before registration got:\n{}", show(&got));
    }
    // NOTICE gets no reply at all (RFC 2812: never an automatic reply to a NOTICE).
    early.send("NOTICE #room :hello");
    early.send("NOTICE op :hello");
    assert_quiet(&mut early, "NOTICE before registration");
    assert_quiet(&mut op, "commands of an unregistered client");

    // Nothing changed: topic, modes, members.
    op.send("TOPIC #room");
    let got = sync_checked(&mut op);
    assert!(got.iter().any(|m| m.is("332") && m.last() == "original topic"), "{}", show(&got));
    op.send("MODE #room");
    let got = sync_checked(&mut op);
    let modes = got.iter().find(|m| m.is("324")).unwrap_or_else(|| op.fail("no 324"));
    assert_eq!(modes.param(2), "+nt", "{modes:?}");
    op.send("NAMES #room");
    let got = sync_checked(&mut op);
    let names = got.iter().find(|m| m.is("353")).unwrap_or_else(|| op.fail("no 353"));
    assert_eq!(names.last(), "@op");
    op.send("WHOIS op");
    let got = sync_checked(&mut op);
    assert!(!got.iter().any(|m| m.is("301")), "op was marked away by someone else: {}", show(&got));

    // Registration still works afterwards, and the channel is open to it.
    early.send("USER early 0 * :Early Bird");
    early.finish_registration();
    early.join("#room");
    let got = sync_checked(&mut op);
    assert!(got.len() == 1 && got[0].is("JOIN") && got[0].nick() == "early", "{}", show(&got));
}

#[test]
fn the_wellformedness_check_rejects_broken_lines() {
    // Guards against a checker bug that would make the tests above vacuous.
    assert_eq!(malformed(&Message::parse(b":s PRIVMSG #a :hi\r")), None);
    assert_eq!(malformed(&Message::parse(b":s 001 n :hi\r")), None);
    assert!(malformed(&Message::parse(b":s PRIVMSG #a :hi")).is_some(), "no CR");
    assert!(malformed(&Message::parse(b":s PRIVMSG #a :h\ri\r")).is_some(), "bare CR");
    assert!(malformed(&Message::parse(b":s PRIVMSG #a :h\0i\r")).is_some(), "NUL");
    assert!(malformed(&Message::parse(format!(":s PRIVMSG #a :{}\r", "x".repeat(500)).as_bytes())).is_some());
    assert!(malformed(&Message::parse(b":s \xffX #a :hi\r")).is_some(), "command");
    assert!(malformed(&Message::parse(b":s\r")).is_some(), "no command");
}
