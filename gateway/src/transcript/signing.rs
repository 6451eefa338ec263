//! The gateway's Ed25519 digest key: loaded from a PKCS#8 PEM file, or generated for this
//! process only when none is configured (its digests then verify only against this process's
//! `/keys`, so a loud warning is logged).
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::{Signer as _, SigningKey};
use gatehouse_proto::chain::{digest_signed_bytes, key_id};
use gatehouse_proto::v1::SessionDigest;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read signing key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "signing key {path} is not an Ed25519 private key in PKCS#8 PEM (openssl genpkey -algorithm ed25519): {reason}"
    )]
    Parse { path: PathBuf, reason: String },
    #[error("cannot generate an ephemeral signing key: the system random source failed")]
    Random,
}

/// Signs session digests.
pub struct DigestSigner {
    key: SigningKey,
    kid: String,
    ephemeral: bool,
}

impl std::fmt::Debug for DigestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("DigestSigner")
            .field("kid", &self.kid)
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl DigestSigner {
    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<Self, SigningKeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| SigningKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| SigningKeyError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(key, false))
    }

    /// A key that lives as long as this process.
    pub fn ephemeral() -> Result<Self, SigningKeyError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| SigningKeyError::Random)?;
        Ok(Self::new(SigningKey::from_bytes(&seed), true))
    }

    fn new(key: SigningKey, ephemeral: bool) -> Self {
        let kid = key_id(key.verifying_key().as_bytes());
        Self {
            key,
            kid,
            ephemeral,
        }
    }

    /// `kid`: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as SPKI PEM (what `gatehouse verify --key` reads).
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap_or_default()
    }

    /// Fills in `key_id` and `signature`.
    pub fn sign(&self, digest: &mut SessionDigest) {
        digest.key_id = self.kid.clone();
        let sig = self.key.sign(&digest_signed_bytes(digest));
        digest.signature = sig.to_bytes().to_vec().into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    // `openssl genpkey -algorithm ed25519` (PKCS#8 v1), RFC 8410 section 10.3's example key.
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn loads_pkcs8_pem_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, PEM).unwrap();
        let s = DigestSigner::load(&path).unwrap();
        assert!(!s.is_ephemeral());
        let mut d = SessionDigest {
            session_id: "s1".into(),
            last_seq: 7,
            ..Default::default()
        };
        s.sign(&mut d);
        assert_eq!(d.key_id, s.kid());
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&s.public_key()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&d.signature).unwrap();
        assert!(vk.verify(&digest_signed_bytes(&d), &sig).is_ok());
        d.last_seq = 6;
        assert!(vk.verify(&digest_signed_bytes(&d), &sig).is_err());
        assert!(s.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn rejects_what_is_not_an_ed25519_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = DigestSigner::load(&path).unwrap_err().to_string();
        assert!(err.contains("not an Ed25519 private key"), "{err}");
        assert!(DigestSigner::load(&dir.path().join("missing")).is_err());
        let a = DigestSigner::ephemeral().unwrap();
        let b = DigestSigner::ephemeral().unwrap();
        assert_ne!(a.kid(), b.kid());
        assert!(a.is_ephemeral());
    }
}
