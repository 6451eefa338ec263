//! Tamper evidence shared by the gateway (which signs) and the CLI (which verifies): the event
//! hash of the per-session chain, the bytes a session digest signs, and the key id of a key.
use crate::v1::{Event, SessionDigest};
use base64::Engine;
use prost::Message;
use sha2::{Digest, Sha256};

/// Domain separation: a digest signature can never be mistaken for a signature over anything
/// else the same key might sign.
pub const DIGEST_CONTEXT: &[u8] = b"gatehouse.v1.SessionDigest\0";

/// SHA-256 of the event's canonical protobuf encoding (fields in number order, maps in key
/// order): the `prev_hash` of the next event of its session.
pub fn event_hash(event: &Event) -> [u8; 32] {
    Sha256::digest(event.encode_to_vec()).into()
}

/// What the Ed25519 signature of a digest covers: the context, then the digest encoded with
/// `signature` empty.
pub fn digest_signed_bytes(digest: &SessionDigest) -> Vec<u8> {
    let mut unsigned = digest.clone();
    unsigned.signature = Default::default();
    let mut out = DIGEST_CONTEXT.to_vec();
    unsigned.encode(&mut out).unwrap_or_default();
    out
}

/// The RFC 7638 JWK thumbprint of an Ed25519 public key (base64url, unpadded): its `kid`.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // The thumbprint input is the required members in lexicographic order, no whitespace.
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64.encode(public_key)
    );
    b64.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap_or_default();
        let mut key = [0u8; 32];
        key.copy_from_slice(&x);
        assert_eq!(key_id(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn signed_bytes_ignore_the_signature_and_bind_every_field() {
        let mut d = SessionDigest {
            session_id: "s".into(),
            last_seq: 3,
            ..Default::default()
        };
        let a = digest_signed_bytes(&d);
        d.signature = vec![1u8; 64].into();
        assert_eq!(a, digest_signed_bytes(&d));
        d.last_seq = 4;
        assert_ne!(a, digest_signed_bytes(&d));
        assert!(a.starts_with(DIGEST_CONTEXT));
    }
}
