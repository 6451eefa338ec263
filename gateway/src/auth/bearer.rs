//! Finding the bearer token in a request, and peeking at a JWT's issuer before trusting it.
use base64::Engine as _;
use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::AuthError;

/// The bearer token from `Authorization: Bearer …`, if there is one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::unauthorized(
            "more than one Authorization header provided",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::unauthorized(
            "unsupported Authorization scheme, expected Bearer",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::unauthorized("empty bearer token"));
    }
    Ok(Some(token))
}

/// The unverified `iss` claim of a compact JWS, or `None` if `token` is not a JWT. Only used to
/// pick a verifier; nothing is trusted before the signature is checked.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&payload).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> anyhow::Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, v.parse()?);
        }
        Ok(map)
    }

    #[test]
    fn bearer_parsing() -> anyhow::Result<()> {
        assert_eq!(bearer_token(&headers(&[])?)?, None);
        assert_eq!(bearer_token(&headers(&["Bearer abc"])?)?, Some("abc"));
        assert_eq!(bearer_token(&headers(&["bearer  abc "])?)?, Some("abc"));
        for bad in [
            &["Basic dXNlcjpwdw=="][..],
            &["Bearer "],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(matches!(
                bearer_token(&headers(bad)?),
                Err(AuthError::Unauthorized(_))
            ));
        }
        Ok(())
    }

    #[test]
    fn issuer_peek() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64("{}"), b64(r#"{"iss":"https://x"}"#));
        assert_eq!(peek_issuer(&jwt).as_deref(), Some("https://x"));
        assert_eq!(peek_issuer("opaque-token"), None);
        assert_eq!(peek_issuer("a.b.c"), None);
    }
}
