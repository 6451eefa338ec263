//! `GET /keys` on the operations listener: the digest signing key as a JWKS (RFC 8037 OKP
//! Ed25519), so `gatehouse verify --keys-url` and auditors can check session digests.
use crate::transcript::signing::DigestSigner;
use base64::Engine;
use serde_json::json;

/// The JWKS document of `signer`'s public key.
pub fn jwks(signer: &DigestSigner) -> String {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.public_key());
    json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": signer.kid(),
            "alg": "EdDSA",
            "use": "sig",
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_the_public_key_under_its_thumbprint() {
        let s = DigestSigner::ephemeral().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&jwks(&s)).unwrap();
        let k = &doc["keys"][0];
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["kid"], s.kid());
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k["x"].as_str().unwrap())
            .unwrap();
        assert_eq!(x, s.public_key());
        assert!(k.get("d").is_none(), "never the private key");
    }
}
