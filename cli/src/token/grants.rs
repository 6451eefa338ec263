//! The OAuth grants against the issuer's discovery document: refresh token, device code
//! (RFC 8628) and client credentials; the token kept is the ID token when there is one.
use super::cache::Cached;
use super::http::Http;
use super::{TokenArgs, TokenError};
use base64::Engine;
use http::StatusCode;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub struct Client {
    http: Http,
    token_endpoint: String,
    device_endpoint: Option<String>,
    client_id: String,
    secret: Option<String>,
}

impl Client {
    /// Reads the issuer's discovery document.
    pub fn new(
        issuer: &str,
        client_id: &str,
        secret: Option<String>,
        args: &TokenArgs,
    ) -> Result<Self, TokenError> {
        if !issuer.starts_with("https://") {
            return Err(TokenError::Config(format!(
                "--issuer {issuer:?} must be an https URL"
            )));
        }
        let http = Http::new(args.issuer_ca.as_deref())?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (status, doc) = http.get_json(&url)?;
        if status != StatusCode::OK {
            return Err(TokenError::Issuer(format!("{url}: HTTP {status}")));
        }
        if doc["issuer"].as_str() != Some(issuer.trim_end_matches('/'))
            && doc["issuer"].as_str() != Some(issuer)
        {
            return Err(TokenError::Issuer(format!(
                "discovery names issuer {} instead of {issuer}",
                doc["issuer"]
            )));
        }
        let token_endpoint = doc["token_endpoint"]
            .as_str()
            .ok_or_else(|| TokenError::Issuer("discovery has no token_endpoint".into()))?
            .to_string();
        Ok(Self {
            http,
            token_endpoint,
            device_endpoint: doc["device_authorization_endpoint"]
                .as_str()
                .map(str::to_string),
            client_id: client_id.to_string(),
            secret,
        })
    }

    /// Form fields and Basic auth identifying this client (public clients send client_id).
    fn post<'a>(
        &'a self,
        url: &str,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> Result<(StatusCode, Value), TokenError> {
        let basic = self.secret.as_deref().map(|s| (self.client_id.as_str(), s));
        if basic.is_none() {
            form.push(("client_id", &self.client_id));
        }
        self.http.post_form(url, &form, basic)
    }

    pub fn refresh(&self, refresh_token: &str) -> Result<Cached, TokenError> {
        let (status, body) = self.post(
            &self.token_endpoint,
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )?;
        let mut t = token_response(status, &body)?;
        // Issuers that do not rotate refresh tokens return none: keep the one we have.
        t.refresh_token
            .get_or_insert_with(|| refresh_token.to_string());
        Ok(t)
    }

    pub fn client_credentials(&self, scopes: &str) -> Result<Cached, TokenError> {
        if self.secret.is_none() {
            return Err(TokenError::Config(
                "--grant client-credentials needs --client-secret-file".into(),
            ));
        }
        let (status, body) = self.post(
            &self.token_endpoint,
            vec![("grant_type", "client_credentials"), ("scope", scopes)],
        )?;
        token_response(status, &body)
    }

    /// RFC 8628: asks for a code, tells the user where to enter it, polls until approved.
    pub fn device_code(&self, scopes: &str) -> Result<Cached, TokenError> {
        let endpoint = self.device_endpoint.as_deref().ok_or_else(|| {
            TokenError::Issuer(
                "the issuer does not offer the device-code flow (no device_authorization_endpoint)"
                    .into(),
            )
        })?;
        let (status, auth) = self.post(endpoint, vec![("scope", scopes)])?;
        if status != StatusCode::OK {
            return Err(oauth_error(status, &auth));
        }
        let field = |k: &str| {
            auth[k].as_str().map(str::to_string).ok_or_else(|| {
                TokenError::Issuer(format!("device authorization answer has no {k}"))
            })
        };
        let (device_code, user_code, uri) = (
            field("device_code")?,
            field("user_code")?,
            field("verification_uri")?,
        );
        // stderr: kubectl shows it to the user (interactiveMode) while stdout is the credential.
        eprintln!("gatehouse: to sign in, open {uri} and enter the code {user_code}");
        if let Some(complete) = auth["verification_uri_complete"].as_str() {
            eprintln!("gatehouse: or open {complete}");
        }
        let mut interval = Duration::from_secs(auth["interval"].as_u64().unwrap_or(5).max(1));
        let deadline =
            SystemTime::now() + Duration::from_secs(auth["expires_in"].as_u64().unwrap_or(600));
        loop {
            std::thread::sleep(interval);
            let (status, body) = self.post(
                &self.token_endpoint,
                vec![("grant_type", DEVICE_GRANT), ("device_code", &device_code)],
            )?;
            if status == StatusCode::OK {
                eprintln!("gatehouse: signed in");
                return token_response(status, &body);
            }
            match body["error"].as_str() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += Duration::from_secs(5),
                Some("access_denied") => {
                    return Err(TokenError::Denied("the sign-in was declined".into()));
                }
                Some("expired_token") => {
                    return Err(TokenError::Denied(
                        "the code expired before it was entered: run the command again".into(),
                    ));
                }
                _ => return Err(oauth_error(status, &body)),
            }
            if SystemTime::now() > deadline {
                return Err(TokenError::Denied(
                    "the code expired before it was entered: run the command again".into(),
                ));
            }
        }
    }
}

fn oauth_error(status: StatusCode, body: &Value) -> TokenError {
    let code = body["error"].as_str().unwrap_or("unknown_error");
    let why = body["error_description"].as_str().unwrap_or("");
    let msg = format!("HTTP {status}: {code} {why}").trim().to_string();
    match code {
        "invalid_client" | "unauthorized_client" | "invalid_grant" | "access_denied" => {
            TokenError::Denied(msg)
        }
        _ => TokenError::Issuer(msg),
    }
}

/// The token to present (ID token, else access token), when it expires, and the refresh token.
fn token_response(status: StatusCode, body: &Value) -> Result<Cached, TokenError> {
    if status != StatusCode::OK {
        return Err(oauth_error(status, body));
    }
    let token = body["id_token"]
        .as_str()
        .or_else(|| body["access_token"].as_str())
        .ok_or_else(|| {
            TokenError::Issuer("the token answer holds no id_token or access_token".into())
        })?
        .to_string();
    let expires_at = jwt_expiry(&token)
        .or_else(|| {
            body["expires_in"]
                .as_u64()
                .map(|s| SystemTime::now() + Duration::from_secs(s))
        })
        .ok_or_else(|| TokenError::Issuer("the token has no exp and no expires_in".into()))?;
    Ok(Cached {
        token,
        expires_at,
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
    })
}

/// The `exp` claim of a JWT, read without verifying it: only to know when to renew (the gateway
/// verifies the signature).
pub fn jwt_expiry(jwt: &str) -> Option<SystemTime> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_jwt() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.sig", enc("{}"), enc(r#"{"exp":1900000000}"#));
        assert_eq!(
            jwt_expiry(&jwt),
            Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }

    #[test]
    fn an_error_answer_names_the_oauth_error() {
        let e = token_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_client", "error_description": "bad secret"}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sign-in refused: HTTP 401 Unauthorized: invalid_client bad secret"
        );
        assert_eq!(e.exit_code(), 2);
    }
}
