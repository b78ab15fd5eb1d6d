//! Arbitrary bytes as a multi-client IRC session against the chat logic: no panic, and every
//! line the server would send is well formed (see echoport::chat::drive).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echoport::chat::drive::drive(data));
