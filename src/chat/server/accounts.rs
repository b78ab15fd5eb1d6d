//! Accounts from the configuration, and the password checks behind SASL PLAIN and OPER.
//!
//! Checking a password against its hash is slow on purpose (argon2's default costs take tens of
//! milliseconds), and the state machine runs under the engine's one lock. So the state machine
//! never checks: it records the attempt in the client (one at a time, with a token) and hands the
//! engine a [`Verify`] in [`Effects::verify`]. The engine checks it with the lock released and
//! answers with [`ChatServer::verified`]; an answer whose token is not the client's current one
//! (the client left and its id was reused) is ignored.
//!
//! While a client's check runs, its next lines are held and handled, in order, right after the
//! answer, so it sees its replies in the order it sent the commands (`AUTHENTICATE <response>`,
//! `CAP END` pipelined registers logged in; a PING sent after OPER is answered after 381). The
//! engine reads nothing more from it meanwhile, so what is held is one receive at most (and more
//! than [`MAX_HELD_LINES`] closes the connection, whatever `--buffer-size` allows). Each wrong password (SASL or OPER, an unknown name
//! included) counts: the [`MAX_AUTH_FAILURES`]th closes the connection.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use echoport_irc::fold;

use super::state::Key;
use super::{ChatServer, ClientId, Effects};
use crate::chat::passwords;

/// Wrong passwords (SASL and OPER together) a connection may send; the last closes it. Enough for
/// a typo and a retry, too few to guess with.
pub(super) const MAX_AUTH_FAILURES: u8 = 3;

/// Lines held behind a password check: a default 16 KiB receive of short lines, and at most
/// 512 KiB for one client.
pub(super) const MAX_HELD_LINES: usize = 1024;

/// A password to check against a hash away from the state lock; the engine answers with
/// [`ChatServer::verified`]`(id, token, ok, ...)`.
pub struct Verify {
    pub id: ClientId,
    pub token: u64,
    pub hash: Arc<str>,
    pub password: Vec<u8>,
}

impl Verify {
    /// The slow part: whether the password matches the hash.
    pub fn check(&self) -> bool {
        passwords::verify(&self.hash, &self.password)
    }
}

/// Without the password, so a debug log of [`Effects`] cannot leak it.
impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify").field("id", &self.id).field("token", &self.token).finish_non_exhaustive()
    }
}

/// The configured accounts by folded name: (name as configured, hash).
pub(super) struct Accounts {
    by_name: HashMap<Key, (Vec<u8>, Arc<str>)>,
    /// Unique per check for the server's lifetime, so no answer can match a later attempt.
    next_token: u64,
}

impl Accounts {
    pub(super) fn new(list: &[(String, String)]) -> Self {
        let mut by_name = HashMap::new();
        for (name, hash) in list {
            // The first of two accounts of the same name wins, as the first matching line would.
            by_name
                .entry(fold(name.as_bytes()))
                .or_insert_with(|| (name.as_bytes().to_vec(), Arc::from(hash.as_str())));
        }
        Accounts { by_name, next_token: 0 }
    }

    /// The next check's token (replicated: every instance of a network numbers checks alike).
    pub(super) fn next_token(&self) -> u64 {
        self.next_token
    }

    pub(super) fn set_next_token(&mut self, token: u64) {
        self.next_token = token;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The account named `name` (any case), or else, with `None` for the name, some account's
    /// hash: an unknown name is checked against it anyway (and fails whatever it says), so the
    /// reply's timing does not tell which names exist.
    pub(super) fn lookup(&self, name: &[u8]) -> Option<(Option<Vec<u8>>, Arc<str>)> {
        match self.by_name.get(&fold(name)) {
            Some((name, hash)) => Some((Some(name.clone()), hash.clone())),
            None => self.by_name.values().next().map(|(_, hash)| (None, hash.clone())),
        }
    }
}

/// A client's authentication in progress.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Auth {
    /// After `AUTHENTICATE PLAIN`: the base64 response received so far.
    pub(super) sasl: Option<Vec<u8>>,
    /// The check the engine is running for this client.
    checking: Option<Check>,
    /// Lines that arrived during the check (and whether the engine cut them), handled after it.
    held: Vec<(Vec<u8>, bool)>,
    /// Wrong passwords so far.
    failures: u8,
}

#[derive(Serialize, Deserialize)]
struct Check {
    token: u64,
    purpose: Purpose,
}

/// What a check's answer is for.
#[derive(Serialize, Deserialize)]
pub(super) enum Purpose {
    /// SASL: log in as this account (`None`: no such account, the answer cannot succeed).
    Login(Option<Vec<u8>>),
    /// OPER against a hashed operator password.
    Oper,
}

impl Auth {
    pub(super) fn checking(&self) -> bool {
        self.checking.is_some()
    }
}

impl ChatServer {
    /// The SASL mechanisms on offer (for `CAP LS`'s `sasl=`): PLAIN when accounts are configured.
    pub fn sasl_mechanisms(&self) -> Option<&'static str> {
        (!self.accounts.is_empty()).then_some("PLAIN")
    }

    /// Asks the engine to check `password` against `hash` for `id`, for `purpose`.
    pub(super) fn start_check(
        &mut self,
        id: ClientId,
        purpose: Purpose,
        hash: Arc<str>,
        password: Vec<u8>,
        fx: &mut Effects,
    ) {
        let token = self.accounts.next_token;
        self.accounts.next_token += 1;
        if let Some(c) = self.clients.get_mut(&id) {
            c.auth.checking = Some(Check { token, purpose });
            fx.verify.push(Verify { id, token, hash, password });
        }
    }

    /// The engine's answer to [`Verify`] `token` for `id`: logs in (900, 903) or makes an operator
    /// (381), or counts a failure (904 or 464). Then registration, if it was waiting, goes on.
    pub fn verified(&mut self, id: ClientId, token: u64, ok: bool, now: Instant, fx: &mut Effects) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        if c.auth.checking.as_ref().is_none_or(|check| check.token != token) {
            return;
        }
        let Some(Check { purpose, .. }) = c.auth.checking.take() else { return };
        let held = std::mem::take(&mut c.auth.held);
        match purpose {
            Purpose::Login(Some(account)) if ok => self.logged_in(id, account, fx),
            Purpose::Login(_) => {
                self.reply(fx, id, "904", &[], "SASL authentication failed");
                self.auth_failed(id, fx);
            }
            Purpose::Oper if ok => self.become_oper(id, fx),
            Purpose::Oper => {
                self.reply(fx, id, "464", &[], "Password incorrect");
                self.auth_failed(id, fx);
            }
        }
        // The lines held meanwhile, in order; one may start another check, which holds the rest.
        for (line, truncated) in held {
            self.handle_line(id, &line, truncated, now, fx);
        }
    }

    /// Keeps a line that arrived during a check, for [`verified`](Self::verified).
    pub(super) fn hold_line(&mut self, id: ClientId, line: &[u8], truncated: bool, fx: &mut Effects) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        if c.auth.held.len() < MAX_HELD_LINES {
            c.auth.held.push((line.to_vec(), truncated));
            return;
        }
        let reason = b"Too many lines during a password check";
        self.send_error(fx, id, reason);
        self.remove_client(id, reason, fx);
        fx.close.push(id);
    }

    /// Counts a wrong password; at [`MAX_AUTH_FAILURES`] the client is told and closed.
    pub(super) fn auth_failed(&mut self, id: ClientId, fx: &mut Effects) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        c.auth.failures = c.auth.failures.saturating_add(1);
        if c.auth.failures >= MAX_AUTH_FAILURES {
            let reason = b"Too many failed authentication attempts";
            self.send_error(fx, id, reason);
            self.remove_client(id, reason, fx);
            fx.close.push(id);
        }
    }
}
