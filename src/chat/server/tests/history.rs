//! CHATHISTORY over the channel history: every subcommand and reference kind, the batch
//! around a reply, and the bounds on what is kept.

use super::*;

fn with_history(history: usize, history_bytes: usize) -> H {
    H::with(ChatConfig { server_name: "irc.test".to_owned(), history, history_bytes, ..ChatConfig::default() })
}

const CAPS: &str = "message-tags server-time echo-message batch labeled-response draft/chathistory";

/// alice (all caps) and bob in #c; alice sends `n` messages 10 ms apart and gets back each
/// echo's (time, msgid).
fn setup(h: &mut H, n: usize) -> Vec<(String, String)> {
    h.connect(1);
    h.send(1, "CAP LS 302");
    let fx = h.send(1, &format!("CAP REQ :{CAPS}"));
    assert!(lines(&fx, 1)[0].contains(" ACK "), "{:?}", lines(&fx, 1));
    h.send(1, "NICK alice");
    h.send(1, "USER alice 0 * :A");
    h.send(1, "CAP END");
    h.register(2, "bob");
    h.send(1, "JOIN #c");
    h.send(2, "JOIN #c");
    (0..n)
        .map(|i| {
            h.now += Duration::from_millis(10);
            let fx = h.send(1, &format!("PRIVMSG #c :message {i}"));
            let echo = &lines(&fx, 1)[0];
            let tags = echo.split(' ').next().unwrap().strip_prefix('@').unwrap();
            let get = |k: &str| tags.split(';').find_map(|t| t.strip_prefix(&format!("{k}="))).unwrap().to_owned();
            (get("time"), get("msgid"))
        })
        .collect()
}

/// The texts of the messages in the chathistory batch `id` got, after checking the batch.
fn replay(h: &mut H, line: &str) -> Vec<String> {
    let fx = h.send(1, line);
    let got = lines(&fx, 1);
    let (open, rest) = got.split_first().expect("a batch");
    let (close, inner) = rest.split_last().expect("a batch end");
    let open = open.split_once(' ').filter(|_| open.starts_with('@')).map_or(open.as_str(), |(_, rest)| rest);
    let reference = open.split(' ').nth(2).unwrap().strip_prefix('+').unwrap().to_owned();
    assert!(open.contains(" chathistory #c") && close.ends_with(&format!("BATCH -{reference}")), "{got:?}");
    inner
        .iter()
        .map(|l| {
            assert!(l.starts_with("@time=") && l.contains(&format!(";batch={reference}")), "{l}");
            l.rsplit(" :").next().unwrap().to_owned()
        })
        .collect()
}

fn texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("message {i}")).collect()
}

#[test]
fn every_subcommand_by_msgid_and_timestamp() {
    let mut h = with_history(100, 1 << 20);
    let m = setup(&mut h, 10);
    assert_eq!(replay(&mut h, "CHATHISTORY LATEST #c * 20"), texts(0..10));
    assert_eq!(replay(&mut h, "CHATHISTORY LATEST #c * 5"), texts(5..10));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY LATEST #c msgid={} 20", m[4].1)), texts(5..10));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY LATEST #c timestamp={} 20", m[4].0)), texts(5..10));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY BEFORE #c msgid={} 20", m[6].1)), texts(0..6));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY BEFORE #c timestamp={} 2", m[6].0)), texts(4..6));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY AFTER #c msgid={} 20", m[3].1)), texts(4..10));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY AFTER #c timestamp={} 3", m[3].0)), texts(4..7));
    let between =
        |a: usize, b: usize, n: usize| format!("CHATHISTORY BETWEEN #c msgid={} msgid={} {n}", m[a].1, m[b].1);
    assert_eq!(replay(&mut h, &between(0, 9, 20)), texts(1..9));
    assert_eq!(replay(&mut h, &between(9, 0, 20)), texts(1..9));
    assert_eq!(replay(&mut h, &between(0, 9, 3)), texts(1..4));
    assert_eq!(replay(&mut h, &between(9, 0, 3)), texts(6..9));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY AROUND #c msgid={} 1", m[7].1)), texts(7..8));
    assert_eq!(replay(&mut h, &format!("CHATHISTORY AROUND #c msgid={} 3", m[7].1)), texts(6..9));
    // The replay carries the time and msgid the live message had.
    let fx = h.send(1, "CHATHISTORY LATEST #c * 1");
    let line = &lines(&fx, 1)[1];
    assert!(line.starts_with(&format!("@time={};msgid={};batch=", m[9].0, m[9].1)), "{line}");
    // An unknown msgid gives an empty batch; errors are standard replies.
    assert!(replay(&mut h, "CHATHISTORY AFTER #c msgid=nosuch 10").is_empty());
    let fx = h.send(2, "CHATHISTORY LATEST #c * 10");
    assert_eq!(cmds(&fx, 2), ["421"], "bob did not enable draft/chathistory");
    let fx = h.send(1, "CHATHISTORY LATEST #nope * 10");
    assert!(
        lines(&fx, 1)[0]
            .ends_with(" :irc.test FAIL CHATHISTORY INVALID_TARGET LATEST #nope :No such channel, or not a member")
    );
    let fx = h.send(1, "CHATHISTORY BEFORE #c * 10");
    assert!(lines(&fx, 1)[0].contains("FAIL CHATHISTORY INVALID_PARAMS"));
    let fx = h.send(1, "CHATHISTORY SIDEWAYS #c * 10");
    assert!(lines(&fx, 1)[0].contains("FAIL CHATHISTORY UNKNOWN_COMMAND SIDEWAYS"));
    let fx = h.send(1, "CHATHISTORY LATEST #c * x");
    assert!(lines(&fx, 1)[0].contains("FAIL CHATHISTORY INVALID_PARAMS"));
    // Private messages are not kept: an empty batch.
    assert!(lines(&h.send(1, "CHATHISTORY LATEST bob * 10"), 1).len() == 2);
    // TARGETS lists the channel with its latest message's time.
    let fx = h.send(1, "CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10");
    assert_eq!(cmds(&fx, 1), ["BATCH", "CHATHISTORY", "BATCH"]);
    assert!(lines(&fx, 1)[1].ends_with(&format!("CHATHISTORY TARGETS #c {}", m[9].0)), "{:?}", lines(&fx, 1));
}

#[test]
fn history_is_bounded_per_channel_and_in_all_and_goes_with_the_channel() {
    let mut h = with_history(4, 1 << 20);
    setup(&mut h, 10);
    assert_eq!(replay(&mut h, "CHATHISTORY LATEST #c * 20"), texts(6..10), "four kept");
    let held = h.s.history_bytes();
    assert!(held > 0 && held < 4 * 300, "{held}");
    h.send(1, "PART #c");
    h.send(2, "PART #c");
    assert_eq!(h.s.history_bytes(), 0, "an empty channel keeps nothing");
    // A byte budget that holds about two messages keeps about two.
    let mut h = with_history(100, 2 * 200);
    setup(&mut h, 10);
    let kept = replay(&mut h, "CHATHISTORY LATEST #c * 20");
    assert!(!kept.is_empty() && kept.len() <= 2 && kept.last().unwrap() == "message 9", "{kept:?}");
    assert!(h.s.history_bytes() <= 2 * 200);
}

#[test]
fn without_history_nothing_is_offered_or_kept() {
    let mut h = H::new();
    h.connect(1);
    let fx = h.send(1, "CAP LS 302");
    assert!(!lines(&fx, 1)[0].contains("chathistory"));
    h.send(1, "NICK a");
    h.send(1, "USER a 0 * :a");
    h.send(1, "CAP END");
    h.send(1, "JOIN #c");
    h.send(1, "PRIVMSG #c :x");
    assert_eq!(h.s.history_bytes(), 0);
    let fx = h.send(1, "CHATHISTORY LATEST #c * 10");
    assert_eq!(cmds(&fx, 1), ["421"]);
}

#[test]
fn redact_takes_a_message_out_of_history_for_its_sender_or_an_operator() {
    let mut h = with_history(100, 1 << 20);
    let m = setup(&mut h, 3);
    // bob (not an operator) with the capability, carol without it.
    h.send(2, "CAP REQ :draft/message-redaction message-tags");
    h.register(3, "carol");
    h.send(3, "JOIN #c");
    h.send(1, "CAP REQ :draft/message-redaction");
    let fx = h.send(2, &format!("REDACT #c {}", m[0].1));
    assert_eq!(
        lines(&fx, 2),
        [format!(":irc.test FAIL REDACT REDACT_FORBIDDEN #c {} :You may not redact that message", m[0].1)]
    );
    let fx = h.send(1, &format!("REDACT #c {} :oops", m[0].1));
    assert_eq!(recipients(&fx), [1, 2], "members with the capability; carol keeps what she saw");
    assert!(
        lines(&fx, 2)[0].ends_with(&format!(":alice!alice@10.0.0.1 REDACT #c {} :oops", m[0].1)),
        "{:?}",
        lines(&fx, 2)
    );
    assert_eq!(replay(&mut h, "CHATHISTORY LATEST #c * 10"), texts(1..3), "gone from the history");
    let fx = h.send(1, &format!("REDACT #c {}", m[0].1));
    assert!(lines(&fx, 1)[0].contains("FAIL REDACT UNKNOWN_MSGID #c "), "{:?}", lines(&fx, 1));
    let fx = h.send(1, "REDACT #nope x");
    assert!(lines(&fx, 1)[0].contains("FAIL REDACT INVALID_TARGET #nope "));
    // bob may redact his own.
    h.now += Duration::from_millis(10);
    let fx = h.send(2, "PRIVMSG #c :mine");
    let id = lines(&fx, 1)[0].split("msgid=").nth(1).unwrap().split([';', ' ']).next().unwrap().to_owned();
    let fx = h.send(2, &format!("REDACT #c {id}"));
    assert_eq!(cmds(&fx, 2), ["REDACT"]);
    let carol = h.send(3, "PING x");
    assert_eq!(cmds(&carol, 3), ["PONG"]);
}
