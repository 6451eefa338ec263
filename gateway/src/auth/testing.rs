//! Test support: signing keys, JWT minting, and a fake OIDC issuer on 127.0.0.1:0.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use hyper::body::Incoming;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::body::full;
use crate::upstream::testing::{TestPki, serve_https};

/// Fixed RSA test keys: generating RSA keys in a debug build takes seconds.
pub(crate) const RSA_KEY_1: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDcJz64RB30qCnT
bKLie3pgHMdIdGkBqVdprMlMbLsfBaIjylJtmktbZxKgwtLU4P3wgYZKL5FV6BDI
nqCLonbqn77Yp7v/QycgvQMNN0x/BMZD3zH2edyR9zYKOSpNHxfVICwD+gw2fRLH
VuqY384dPNCqKyveWY8PJQInxj586s8AnFwrBmjckKxGyWcDAVu+3OnNoOV77gU/
WfhNTKHH9TTma/zWOajXaTgQmd/XpwCd2YHC65mV/pxzra7FaiNu9SJBiiUazAKF
fumFJ7iSkctlDBzmQHE5XLCcZ41QXUWntJgoQjChAsojs5DTohLzwH86Q5twDrXp
pJFbG1rDAgMBAAECggEAI4/UqiVEBXzojLYetaD73+ymJZu68+wWf652hyQv3Hn8
z/U4TWtqws//3/y4hm9K9dT7tp4VHEsJSFmUq270mz/Er0X2W0HOCelzmxM/WxaQ
BESt0xeqO+CIAoIWGtvBQ3RtR73WHTMk8RL8KvJJXssFFd01ZTcS9ypOPSiLzYI/
sFjyL/hFrBc8HtA/uM+m8sP2J42ldZxcfW+gKDQVTOIiqj0xAGXpbuZX9zqQynX8
PvI8XUmiWpIDnvTDwtndsz9IZJLECMvMFwcQ/94cE2gXMQPkuk03LuC3GCCYhcxM
B9n140RjhmCITEACyKEyyfsi2UiXVIPpyxHzmXps4QKBgQD6sAskuTmhZfxpyshO
8JehUpQMZ3/5RBwrRh212BAK7ZE3RP6zSfajCEkkFJWD4XNwJDc1zzPugnjqpSE8
aayJXK1FFIhkE+/7NzoDLCXpKvVD3lVVLHuhqAeSeyLznpIuFmLPFuWB0K9qwjPF
3rU6d/Ha34OXN1fCTa2sJVWLMQKBgQDg0Y4ybsxcT76xuJJRo9nyd5BRH0OAuvjG
MH8ubmU4G7x76quCmGtg8J95BQYsIwxtvDIZqivtr1vrWlotzaOucCXnpF/AWBuA
VVvZFNO0TNqbR8xRCPuUZEy+SK0bm4KEgShwt4r/JPYy29hfABTlsNckYXAYij4p
mapNbLKgMwKBgQCU0wxaiegPzFcUi0Fts+Gg8UBZONy9o9TBUAf1W8byZeUvFbPL
xp44XYPmep3kxGRe7/Ei7dbbwvN8AfqAPhAjIDTxbOYn27o9vqSfG4eKLGmdGBI6
1YS0DOgp6xZt4PbRi5KvdN1duwFY9N/9mWCnzGt1z/n0PPPJs4nmR+fIEQKBgAsY
7P76TyYjXZNiO/7Bqsl4M2x9sZRSJmOKE00Ub/SkEdrAC7VHls1TM1wC7noRRNTJ
3GM97isuY8grTpZCN1kt+gEEMSHKd5kPHZiKmaSlwoi1s5Uwb1K03MDrz3e0Zm3p
/jgKJ1dO2MRL69NMqrtnzkbidGkRsd3V0v09Z1fXAoGAU/5JD+C0JtZAAHHDZLvX
8i4P0q3+ZIf1509u6sb6IYSdfv8ayvHKKm+ve/KTIJ/IGSlquwp/7Sov0T4TywCA
1/dyfuGT0X8OwQXnh4gyTNzbJ9XAHRE0RCd7Ow+0pHf/ZyAa/sjxoxhpjOxvnIz2
FwHY7PnGv3jCdt/V8ougwfU=
-----END PRIVATE KEY-----
";
pub(crate) const RSA_KEY_2: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCtAxI4AderGGmo
6embXfMbVFpGNBEjT00I4JHxpf1NRtjAFsQr9aaTDoEZxCKZvewZ3FYxD3V9x+Sm
eNwuP18u0Ccx5+vNcCSjJ5tVfBBdEtjVHOYSN7bFckaQtEqICxAUeb7XDj4ycHz5
f0NWLzXznLYpGDX+ecKPcW4iy0o3Ecq+64grIaX2fJwqE9hveV/r0grb1ZSIWLXX
OsdTqBRHOm2nQ9FS43pOIGr90gKZoUsFHenYddQ32id87jZLNX1ubAHwh2rFrAPt
iiPLXy5iTGrF9Rek4ltltvjnH7LKzQDcoVT2dJiy+KglAeMig0EtoxHhv/wpbIDN
AyNf50FVAgMBAAECggEAHpdgbU7GF5aleByEFdiy164+mBM0xI2NDXjH1XaIJ1XT
lYNxBGTXI0F5SlkH1S9jw97Vzq7xE2B46YaNSBAkgF6Fz6k2ZIjjsYWbTa42Jn7i
oCwP8kCvrJHcMFHwq8Vo/nXYbKY0ES8aqfL6sQ5/96dJ/lItmeVlpX9k/fn8EWhl
eaM6ricBJlWrQEd4uyHpnQEQJvMmrSIkW+ZdIyZV2NTCDZRpW/vHH/Kk1bi5w+ca
0QD3tltTxlriZO6jQPsV6lgivioy8ECdbxa4M6veKQSZbCMgRA9ywzcaTB8JKzW1
2oFL2uNfaIrugd+lYkdpz0XEZQAjRcrXnC1OJHH2AQKBgQDa4PiMz2zHsnuX1Pvq
0E8pt41GTSyoPLCXceFeovc6ui0np8gtswqxTsgdbhzslKHztFG8gcXT5LuT+LBL
yvHVVtrJDSZVll4TrUMKXXTSrIIS3LCOPhHKq2Af+5qrt9kW/jcSuogTYyRCAzKm
+6a7CrcRXwloLDpuf93UuxAu9QKBgQDKWrVLY3IT9p7OTAUVavhEiymzrcfQzplU
E/2/yXH/p9uiu2K+NtdkFovkZW7vCSGn53fygD3InbslgNxxW6DokY6is4099NCv
TsQ+Ocb4it8OSPUV7G6uLwf9hW0NNctUWLvyQfMvmPIzIFkatNmbG8YC7Hog+wcu
sFypiQCM4QKBgGaN8IdxjQOIglZiyeJ81gqy4TPmZx0wyoE7L6C69OIEZ7Hj8GxR
LppjUmpPtKe5AKUCgSW1HG8rBiTP6jKpFWSjfIGlcqe5e7z2eqn5ngo0IAIce3E6
bfWrFLAHoLICw2n9lOpmkembk1qGyw3obXfIDnzKLcsspfguW08Ykv2dAoGAB9Ir
sac9UII2rxiHFcXVpKiQSw6La4mgqXxAUXpSuqPdPFPrxBhQiODKNWCqQfjjYR70
Jt5IBQn7or5xRrxY4sRFdApmih99NVlhAlqvUwnjByVQu7EwsfDFaUoP5fPPUQpA
8WMVKCDMM6erafnVc0ZGh/Rl4AJzy50rZ64Q5GECgYEAkNm83JKnMM/jMQwEkHZ5
pXxIPqxlQNyfa9BhAj3u2nifMxif0RQ3Wyg9sEWXYBUZiengknmE83h9wX7pWX/g
fxkHoy4qYR6yt2qhYsubWm9YcjHjdRA+Blwpu7q1GC7jweWLfP2m2Jylo0TFfGYt
W8wR5TRlgHVZnA5HOy3BOlo=
-----END PRIVATE KEY-----
";

/// A key that signs test tokens, with its public JWK.
pub(crate) struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    pub fn rsa(kid: &str, pem: &str) -> anyhow::Result<Self> {
        Ok(Signer {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(pem.trim().as_bytes())?,
        })
    }

    pub fn ec(kid: &str) -> anyhow::Result<Self> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Signer {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?,
        })
    }

    /// The public key as a JWKS entry.
    pub fn jwk(&self) -> anyhow::Result<Value> {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg)?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(serde_json::to_value(jwk)?)
    }

    /// A compact JWS over `claims`, naming this key's kid.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// Like `sign`, but naming `kid` instead of our own.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }
}

pub(crate) fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// An OIDC issuer serving discovery and a JWKS that tests can change, counting fetches.
pub(crate) struct FakeIdp {
    pub pki: TestPki,
    pub issuer: String,
    pub jwks: Arc<Mutex<Vec<Value>>>,
    pub jwks_hits: Arc<AtomicUsize>,
    pub discovery_hits: Arc<AtomicUsize>,
}

impl FakeIdp {
    pub async fn start(keys: Vec<Value>) -> anyhow::Result<Self> {
        let pki = TestPki::new("idp ca")?;
        let jwks = Arc::new(Mutex::new(keys));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let discovery_hits = Arc::new(AtomicUsize::new(0));
        let issuer_cell = Arc::new(Mutex::new(String::new()));
        let handler = {
            let (jwks, jwks_hits, discovery_hits, issuer_cell) = (
                jwks.clone(),
                jwks_hits.clone(),
                discovery_hits.clone(),
                issuer_cell.clone(),
            );
            move |req: Request<Incoming>| {
                let issuer = issuer_cell.lock().clone();
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => {
                        discovery_hits.fetch_add(1, Ordering::SeqCst);
                        Some(json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") }))
                    }
                    "/jwks" => {
                        jwks_hits.fetch_add(1, Ordering::SeqCst);
                        Some(json!({ "keys": *jwks.lock() }))
                    }
                    _ => None,
                };
                async move {
                    match body {
                        Some(body) => http::Response::new(full(body.to_string())),
                        None => {
                            let mut resp = http::Response::new(full("not found"));
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                            resp
                        }
                    }
                }
            }
        };
        let addr = serve_https(pki.server_config(false)?, handler).await?;
        let issuer = format!("https://127.0.0.1:{}", addr.port());
        *issuer_cell.lock() = issuer.clone();
        Ok(FakeIdp {
            pki,
            issuer,
            jwks,
            jwks_hits,
            discovery_hits,
        })
    }

    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    auth: super::AuthArgs,
}

/// `AuthArgs` parsed from `flags`, as the binary would.
pub(crate) fn auth_args(flags: &[&str]) -> super::AuthArgs {
    use clap::Parser as _;
    Cli::parse_from(std::iter::once("gateway").chain(flags.iter().copied())).auth
}
