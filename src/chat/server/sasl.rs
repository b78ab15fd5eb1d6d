//! SASL (IRCv3 sasl-3.1) with the PLAIN mechanism (RFC 4616), against the configured accounts.
//!
//! Choices made here:
//! - AUTHENTICATE works before registration only, as in sasl-3.1: after it a client gets 462
//!   (907 if it is logged in already), so an account never changes under a registered client.
//!   It does not need the `sasl` capability to have been requested.
//! - The response comes in 400-byte chunks; one of exactly 400 is followed by more or by `+`. A
//!   chunk over 400 bytes gets 905; a response over [`MAX_RESPONSE`] bytes in all gets 904.
//! - An unknown mechanism gets 908 (the list) and 904. `AUTHENTICATE *` gets 906 (during the
//!   password check it waits, like every line, for the answer; see [`accounts`](super::accounts)).
//! - PLAIN's authzid must be empty or the authcid itself (no acting as another account); an
//!   empty authcid or password, bad base64 or a NUL in the password fail with 904.
//! - Registration (CAP END, or NICK and USER without CAP) during an exchange aborts it with 906.

use base64ct::{Base64, Encoding};
use echoport_irc::{LineBuilder, Message, fold};

use super::accounts::Purpose;
use super::state::make_prefix;
use super::{ChatServer, ClientId, Effects};

/// The most a client may send in one AUTHENTICATE (sasl-3.1).
const CHUNK: usize = 400;
/// The most base64 one PLAIN response may total: a name and a password of over a kilobyte.
const MAX_RESPONSE: usize = 2048;

impl ChatServer {
    pub(super) fn cmd_authenticate(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(arg) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"AUTHENTICATE"], "Not enough parameters");
            return;
        };
        let c = &self.clients[&id];
        if self.accounts.is_empty() {
            self.reply(fx, id, "904", &[], "SASL authentication failed");
        } else if c.account.is_some() {
            self.reply(fx, id, "907", &[], "You have already authenticated using SASL");
        } else if c.registered {
            self.reply(fx, id, "462", &[], "You may not reregister");
        } else if arg == b"*" {
            self.sasl_abort(id, fx);
        } else if c.auth.sasl.is_none() {
            self.sasl_start(id, arg, fx);
        } else {
            self.sasl_chunk(id, arg, fx);
        }
    }

    /// `AUTHENTICATE <mechanism>`.
    fn sasl_start(&mut self, id: ClientId, mechanism: &[u8], fx: &mut Effects) {
        if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
            self.reply(fx, id, "908", &[b"PLAIN"], "are available SASL mechanisms");
            self.reply(fx, id, "904", &[], "SASL authentication failed");
            return;
        }
        self.clients.get_mut(&id).unwrap().auth.sasl = Some(Vec::new());
        fx.send(id, LineBuilder::new(b"", b"AUTHENTICATE").middle(b"+").finish());
    }

    /// One chunk of the response (`+`: an empty one).
    fn sasl_chunk(&mut self, id: ClientId, chunk: &[u8], fx: &mut Effects) {
        let auth = &mut self.clients.get_mut(&id).unwrap().auth;
        if chunk.len() > CHUNK {
            auth.sasl = None;
            self.reply(fx, id, "905", &[], "SASL message too long");
            return;
        }
        let Some(response) = auth.sasl.as_mut() else { return };
        if chunk != b"+" {
            response.extend_from_slice(chunk);
        }
        if response.len() > MAX_RESPONSE {
            auth.sasl = None;
            self.reply(fx, id, "904", &[], "SASL authentication failed");
            return;
        }
        if chunk.len() == CHUNK {
            return;
        }
        let response = auth.sasl.take().unwrap_or_default();
        match self.plain_credentials(&response) {
            Some((purpose, hash, password)) => self.start_check(id, purpose, hash, password, fx),
            None => self.reply(fx, id, "904", &[], "SASL authentication failed"),
        }
    }

    /// The check a PLAIN response asks for, or `None` if it is malformed or names another authzid.
    fn plain_credentials(&self, base64: &[u8]) -> Option<(Purpose, std::sync::Arc<str>, Vec<u8>)> {
        let mut buf = [0u8; MAX_RESPONSE];
        let decoded = Base64::decode(base64, &mut buf).ok()?;
        let mut parts = decoded.split(|&b| b == 0);
        let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || authcid.is_empty() || password.is_empty() {
            return None;
        }
        if !authzid.is_empty() && fold(authzid) != fold(authcid) {
            return None;
        }
        let (account, hash) = self.accounts.lookup(authcid)?;
        Some((Purpose::Login(account), hash, password.to_vec()))
    }

    /// `AUTHENTICATE *`.
    fn sasl_abort(&mut self, id: ClientId, fx: &mut Effects) {
        self.clients.get_mut(&id).unwrap().auth.sasl = None;
        self.reply(fx, id, "906", &[], "SASL authentication aborted");
    }

    /// 900 and 903 for a client now logged in as `account`.
    pub(super) fn logged_in(&mut self, id: ClientId, account: Vec<u8>, fx: &mut Effects) {
        let c = self.clients.get_mut(&id).unwrap();
        let mask = make_prefix(c.nick_or_star(), c.user.as_deref().unwrap_or(b"*"), &c.host);
        let text = [&b"You are now logged in as "[..], &account].concat();
        c.account = Some(account.clone());
        self.reply_bytes(fx, id, "900", &[&mask, &account], &text);
        self.reply(fx, id, "903", &[], "SASL authentication successful");
    }

    /// Called when a client registers: an exchange still waiting for the response ends with 906.
    pub(super) fn sasl_abort_on_registration(&mut self, id: ClientId, fx: &mut Effects) {
        if self.clients.get_mut(&id).unwrap().auth.sasl.take().is_some() {
            self.reply(fx, id, "906", &[], "SASL authentication aborted");
        }
    }
}
