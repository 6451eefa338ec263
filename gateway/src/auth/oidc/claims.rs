//! Turning verified claims into an identity, like kube-apiserver's `--oidc-*-claim` flags.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::auth::{AuthError, AuthMethod, Identity};

pub(crate) struct ClaimMapping {
    pub issuer: String,
    pub username_claim: String,
    /// Already resolved: `None` means no prefix.
    pub username_prefix: Option<String>,
    pub groups_claim: String,
    pub groups_prefix: Option<String>,
    pub uid_claim: Option<String>,
}

impl ClaimMapping {
    pub fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let username = match claims.get(&self.username_claim) {
            Some(Value::String(name)) if !name.is_empty() => name,
            Some(_) => {
                return Err(AuthError::unauthorized(format!(
                    "token claim {:?} is not a non-empty string",
                    self.username_claim
                )));
            }
            None => {
                return Err(AuthError::unauthorized(format!(
                    "token has no {:?} claim",
                    self.username_claim
                )));
            }
        };
        // kube-apiserver refuses an email username whose address the issuer has not verified.
        if self.username_claim == "email"
            && let Some(verified) = claims.get("email_verified")
            && verified != &Value::Bool(true)
        {
            return Err(AuthError::unauthorized("token email is not verified"));
        }
        let username = format!(
            "{}{username}",
            self.username_prefix.as_deref().unwrap_or_default()
        );

        let groups = match claims.get(&self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        AuthError::unauthorized(format!(
                            "token claim {:?} is not a list of strings",
                            self.groups_claim
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(AuthError::unauthorized(format!(
                    "token claim {:?} is not a string or list of strings",
                    self.groups_claim
                )));
            }
        };
        let prefix = self.groups_prefix.as_deref().unwrap_or_default();
        let groups = groups.into_iter().map(|g| format!("{prefix}{g}")).collect();

        let uid = match &self.uid_claim {
            None => String::new(),
            Some(claim) => match claims.get(claim) {
                Some(Value::String(uid)) => uid.clone(),
                _ => {
                    return Err(AuthError::unauthorized(format!(
                        "token has no string {claim:?} claim"
                    )));
                }
            },
        };

        Ok(Identity {
            username,
            groups,
            uid,
            method: AuthMethod::Oidc,
            issuer: self.issuer.clone(),
            extra: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            issuer: "https://idp".into(),
            username_claim: "email".into(),
            username_prefix: Some("oidc:".into()),
            groups_claim: "roles".into(),
            groups_prefix: Some("idp:".into()),
            uid_claim: Some("sub".into()),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn maps_claims_with_prefixes() -> anyhow::Result<()> {
        let id = mapping().identity(&claims(json!({
            "sub": "123", "email": "a@b.c", "email_verified": true, "roles": ["dev", "ops"]
        })))?;
        assert_eq!(id.username, "oidc:a@b.c");
        assert_eq!(id.groups, vec!["idp:dev", "idp:ops"]);
        assert_eq!(id.uid, "123");
        let id = mapping().identity(&claims(
            json!({"sub": "1", "email": "a@b.c", "roles": "solo"}),
        ))?;
        assert_eq!(id.groups, vec!["idp:solo"]);
        Ok(())
    }

    #[test]
    fn rejects_bad_claims() {
        for (bad, want) in [
            (json!({"sub": "1"}), "token has no \"email\" claim"),
            (json!({"sub": "1", "email": 5}), "is not a non-empty string"),
            (
                json!({"sub": "1", "email": "a@b", "email_verified": false}),
                "email is not verified",
            ),
            (
                json!({"sub": "1", "email": "a@b", "roles": [1]}),
                "not a list of strings",
            ),
            (json!({"email": "a@b"}), "no string \"sub\" claim"),
        ] {
            let err = mapping()
                .identity(&claims(bad))
                .err()
                .map(|e| e.to_string());
            assert!(err.as_deref().is_some_and(|e| e.contains(want)), "{err:?}");
        }
    }
}
