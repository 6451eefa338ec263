//! OIDC bearer tokens and JWKS documents (`gateway/src/auth/oidc`, `auth/bearer.rs`): an
//! untrusted key set and token go through key parsing, header decoding, key selection, the
//! signature and claim checks and the claim mapping without panicking. Input: JWKS JSON, a NUL,
//! then the token.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (jwks, token) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"{\"keys\":[]}"[..], data),
    };
    let token = String::from_utf8_lossy(token);
    let _ = gatehouse_gateway::auth::fuzz_verify(jwks, &token);
});
