//! A deliberately broken IRC relay, to prove `echoport-load chat` notices what a broken network
//! would do: drop, duplicate or reorder messages. Just enough IRC for the tool: `NICK`/`USER`
//! get 001, `JOIN` gets 366, `PRIVMSG` is relayed to every other client, `QUIT` closes. One
//! thread per client; the relay's fault applies to every `EVERY`-th PRIVMSG it relays (counted
//! over the whole run), so each run has a known handful of faults.
//!
//! Stopped on drop (the accept loop polls a flag); the client threads end with their clients.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Every how many relayed PRIVMSGs the fault strikes.
pub const EVERY: u64 = 25;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The message is not delivered to the first other client.
    Drop,
    /// Every other client gets the message twice.
    Duplicate,
    /// Every other client gets the message after the next one.
    Reorder,
}

struct Relay {
    fault: Fault,
    /// PRIVMSGs relayed so far.
    count: u64,
    /// (client id, its socket, a message held back for it by `Reorder`).
    clients: Vec<(usize, TcpStream, Option<Vec<u8>>)>,
}

pub struct FaultyIrc {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FaultyIrc {
    pub fn start(fault: Fault) -> FaultyIrc {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the faulty relay");
        let addr = listener.local_addr().expect("relay address");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let stop = Arc::new(AtomicBool::new(false));
        let relay = Arc::new(Mutex::new(Relay { fault, count: 0, clients: Vec::new() }));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            let mut next_id = 0;
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let relay = Arc::clone(&relay);
                        let id = next_id;
                        next_id += 1;
                        thread::spawn(move || serve(id, s, &relay));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultyIrc { addr, stop }
    }
}

impl Drop for FaultyIrc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(id: usize, s: TcpStream, relay: &Mutex<Relay>) {
    let _ = s.set_nonblocking(false);
    let Ok(mut w) = s.try_clone() else { return };
    let mut nick = String::from("*");
    for line in BufReader::new(s).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        let mut words = line.splitn(3, ' ');
        let (cmd, arg) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let reply = match cmd {
            "NICK" => {
                nick = arg.to_string();
                continue;
            }
            "USER" => format!(":faulty 001 {nick} :welcome\r\n"),
            "JOIN" => {
                let clone = w.try_clone().expect("clone the client socket");
                relay.lock().unwrap().clients.push((id, clone, None));
                format!(":faulty 366 {nick} {arg} :End of /NAMES list\r\n")
            }
            "PRIVMSG" => {
                let out = format!(":{nick}!~{nick}@127.0.0.1 {line}\r\n");
                relay.lock().unwrap().relay(id, out.as_bytes());
                continue;
            }
            "QUIT" => break,
            _ => continue,
        };
        if w.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
    relay.lock().unwrap().clients.retain(|c| c.0 != id);
}

impl Relay {
    fn relay(&mut self, from: usize, msg: &[u8]) {
        self.count += 1;
        let strike = self.count.is_multiple_of(EVERY);
        let mut first = true;
        for (id, s, held) in &mut self.clients {
            if *id == from {
                continue;
            }
            let mut out = Vec::new();
            match (strike, self.fault) {
                (true, Fault::Drop) if first => {}
                (true, Fault::Duplicate) => out.extend_from_slice(&[msg, msg].concat()),
                (true, Fault::Reorder) => *held = Some(msg.to_vec()),
                _ => {
                    out.extend_from_slice(msg);
                    out.extend(held.take().unwrap_or_default());
                }
            }
            first = false;
            // A client gone mid-write ends its own thread; the others go on.
            let _ = s.write_all(&out);
        }
    }
}
