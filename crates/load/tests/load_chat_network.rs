//! `echoport-load chat` with several `--target`s (the servers of one network), and its
//! delivery checks: messages lost, duplicated or reordered are each counted and fail the run.
//! Servers: echoport embedded (one listening twice is one network with two entrances; two
//! without `--cluster` are two networks), and a relay broken on purpose (common/faulty_irc.rs).

mod common;

use std::sync::{Mutex, MutexGuard};

use common::Server;
use common::faulty_irc::{EVERY, Fault, FaultyIrc};
use common::run::{Run, load};

/// echoport in chat mode, flood control off (the runs send in volume), plus `extra`.
fn chat_server(extra: &[&str]) -> Server {
    Server::start(&[&["--mode", "chat", "--flood-rate", "0"], extra].concat())
}

/// The runs load the CPU: the tests of this file take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn chat(targets: &[String], extra: &[&str]) -> Run {
    let mut args = vec!["chat"];
    for t in targets {
        args.extend(["--target", t.as_str()]);
    }
    args.extend(["--threads", "2"]);
    args.extend_from_slice(extra);
    load(&args)
}

/// One server listening twice: clients spread over both addresses are still one channel, so a
/// clean run must reach everyone exactly once.
#[test]
fn two_targets_of_one_network_lose_nothing() {
    let _s = serial();
    let server = chat_server(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    let targets: Vec<String> = server.addrs().iter().map(|a| a.to_string()).collect();
    assert_eq!(targets.len(), 2);
    let r =
        chat(&targets, &["--clients", "30", "--senders", "4", "--rate", "400", "--duration", "1", "--warmup", "0.3"]);
    assert_eq!(r.code(), Some(0), "{}", r.explain());
    assert!(r.u("sent") > 0, "{}", r.explain());
    assert_eq!(r.u("deliveries"), r.u("expected_deliveries"), "{}", r.explain());
    assert_eq!(r.u("deliveries"), r.u("sent") * 29, "{}", r.explain());
    for k in ["lost", "duplicates", "reordered", "errors"] {
        assert_eq!(r.u(k), 0, "{k}\n{}", r.explain());
    }
    assert_eq!(r.j()["target"], targets.join(","), "the report names every target");
    drop(server);
}

/// Two servers that are not one network: client i is on server i mod 2, so the one sender
/// (client 0, on the first) reaches its 4 neighbours there and none of the 5 clients on the
/// other. That is exactly what the report must say: 4 deliveries and 5 losses per message.
#[test]
fn two_separate_servers_lose_what_crosses_between_them() {
    let _s = serial();
    let (a, b) = (chat_server(&[]), chat_server(&[]));
    let targets = [a.addr().to_string(), b.addr().to_string()];
    // No warm-up: the far receivers never acknowledge, so the sender stops after its first
    // window of messages (flow control), and those must count.
    let r =
        chat(&targets, &["--clients", "10", "--senders", "1", "--rate", "200", "--duration", "0.5", "--warmup", "0"]);
    assert_eq!(r.code(), Some(1), "losses fail the run\n{}", r.explain());
    let sent = r.u("sent");
    assert!(sent > 0, "{}", r.explain());
    assert_eq!(r.u("expected_deliveries"), sent * 9, "{}", r.explain());
    assert_eq!(r.u("deliveries"), sent * 4, "{}", r.explain());
    assert_eq!(r.u("lost"), sent * 5, "{}", r.explain());
    assert_eq!(r.u("duplicates") + r.u("reordered") + r.u("chat_errors"), 0, "{}", r.explain());
    assert!(r.stderr.contains("never arrived"), "{}", r.explain());
    drop((a, b));
}

/// One sender, so "reordered" is about one stream; 200 messages/s for 1 s after 0.2 s of
/// warm-up (the faults strike every EVERY-th message of the whole run, warm-up included).
fn faulty_run(fault: Fault) -> Run {
    let relay = FaultyIrc::start(fault);
    chat(
        &[relay.addr.to_string()],
        &["--clients", "6", "--senders", "1", "--rate", "200", "--duration", "1", "--warmup", "0.2"],
    )
}

#[test]
fn dropped_messages_are_counted_lost() {
    let _s = serial();
    let r = faulty_run(Fault::Drop);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    let (sent, lost) = (r.u("sent"), r.u("lost"));
    // One receiver misses every EVERY-th message: about sent / EVERY of the measured ones.
    assert!(lost > 0 && lost.abs_diff(sent / EVERY) <= 1, "lost {lost} of {sent}\n{}", r.explain());
    assert_eq!(r.u("deliveries") + lost, r.u("expected_deliveries"), "each pair is got or lost\n{}", r.explain());
    assert_eq!(r.u("duplicates") + r.u("reordered"), 0, "{}", r.explain());
    assert!(r.stderr.contains("never arrived"), "{}", r.explain());
}

#[test]
fn duplicated_messages_are_counted_once_and_as_duplicates() {
    let _s = serial();
    let r = faulty_run(Fault::Duplicate);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    let dups = r.u("duplicates");
    // 5 receivers get every EVERY-th message of the whole run (warm-up included) twice.
    assert!(dups > 0 && dups.is_multiple_of(5), "{}", r.explain());
    assert_eq!(r.u("deliveries"), r.u("expected_deliveries"), "a second copy is no delivery\n{}", r.explain());
    assert_eq!(r.u("lost") + r.u("reordered"), 0, "{}", r.explain());
    assert!(r.stderr.contains("second copies"), "{}", r.explain());
}

#[test]
fn reordered_messages_are_counted_and_still_delivered() {
    let _s = serial();
    let r = faulty_run(Fault::Reorder);
    assert_eq!(r.code(), Some(1), "{}", r.explain());
    let reordered = r.u("reordered");
    assert!(reordered > 0 && reordered.is_multiple_of(5), "{}", r.explain());
    assert_eq!(r.u("duplicates"), 0, "a late message is not a second copy\n{}", r.explain());
    // The relay holds a message until the next one: the very last one may never come.
    assert!(r.u("lost") <= 5, "{}", r.explain());
    assert_eq!(r.u("deliveries") + r.u("lost"), r.u("expected_deliveries"), "{}", r.explain());
    assert!(r.stderr.contains("later message"), "{}", r.explain());
}
