//! Authentication (bearer tokens, client certificates) and impersonation
//! (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`), as the apiserver does them.

use std::collections::BTreeMap;

use http::HeaderMap;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::status::ApiError;

/// `authentication.k8s.io/v1 UserInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(username: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: username.to_string(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        }
    }

    pub fn with_uid(mut self, uid: &str) -> UserInfo {
        self.uid = uid.to_string();
        self
    }

    /// The groups with `system:authenticated` added, as the apiserver does for every
    /// authenticated (non-anonymous) user.
    pub fn with_authenticated_group(mut self) -> UserInfo {
        if self.username != "system:anonymous"
            && !self.groups.iter().any(|g| g == "system:authenticated")
        {
            self.groups.push("system:authenticated".to_string());
        }
        self
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// Who made a request: the authenticated principal and, after impersonation, the
/// effective user that authorization and `SelfSubjectReview` see.
#[derive(Clone, Debug)]
pub struct Caller {
    pub authenticated: UserInfo,
    pub effective: UserInfo,
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Applies the `Impersonate-*` headers for an authenticated user.
/// `may_impersonate` says whether the authenticated user holds the `impersonate` verb.
pub fn impersonate(
    headers: &HeaderMap,
    authenticated: &UserInfo,
    may_impersonate: bool,
) -> Result<Option<UserInfo>, ApiError> {
    let user = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let uid = headers
        .get("impersonate-uid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_decode_str(key).decode_utf8_lossy().to_lowercase();
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_default().push(v.to_string());
            }
        }
    }
    let Some(username) = user else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            // The apiserver refuses group/uid/extra impersonation without a user.
            return Err(ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: requested [{Group ...}] without impersonating a user",
            ));
        }
        return Ok(None);
    };
    if !may_impersonate {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "users \"{username}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                authenticated.username
            ),
        )
        .with_details(json!({"name": username, "kind": "users"})));
    }
    let info = UserInfo {
        username,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    };
    Ok(Some(info.with_authenticated_group()))
}

impl ApiError {
    pub fn with_details(mut self, d: Value) -> ApiError {
        self.details = Some(d);
        self
    }
}
