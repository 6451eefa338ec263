//! Who the gateway tells the API server the caller is. Caller-sent `Impersonate-*` headers are
//! refused unless explicitly allowed; the identity map turns gateway identities into kube
//! users and groups; the gatehouse session id rides along as an `Impersonate-Extra-` key.
use crate::auth::Identity;
use gatehouse_proto::v1::Impersonation;
use http::HeaderMap;
use serde::Deserialize;
use std::path::Path;

/// The `Impersonate-Extra-` key carrying the gatehouse session id (lowercase, `/` escaped as
/// the apiserver expects for extra keys).
pub const SESSION_EXTRA_KEY: &str = "gatehouse.dev/session-id";

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("cannot read identity map {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid identity map {path}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("identity map rule {index} matches nothing: give `user` or `group` in `match`")]
    EmptyMatch { index: usize },
    #[error("invalid --allow-impersonation {0:?}: expected CALLER=TARGET")]
    AllowSyntax(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapFile {
    #[serde(default)]
    pub rules: Vec<MapRule>,
}

/// One mapping rule; the first whose `match` fits the caller applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapRule {
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    /// Kube user to impersonate; `{username}` is replaced by the caller's username.
    #[serde(default)]
    pub user: Option<String>,
    /// Kube groups to impersonate instead of the caller's groups.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Groups added to the caller's (or the replaced) groups.
    #[serde(default)]
    pub add_groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Impersonator {
    rules: Vec<MapRule>,
    /// (caller username, target kube user) pairs a caller may request with `--as`.
    allowed: Vec<(String, String)>,
}

/// What the caller's own `Impersonate-*` headers asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub other: bool,
}

impl Impersonator {
    pub fn load(map: Option<&Path>, allow: &[String]) -> Result<Self, MapError> {
        let rules = match map {
            None => Vec::new(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| MapError::Read {
                    path: shown.clone(),
                    source,
                })?;
                let file: IdentityMapFile =
                    serde_yaml::from_str(&text).map_err(|source| MapError::Parse {
                        path: shown,
                        source,
                    })?;
                file.rules
            }
        };
        for (index, r) in rules.iter().enumerate() {
            if r.matches.user.is_none() && r.matches.group.is_none() {
                return Err(MapError::EmptyMatch { index });
            }
        }
        let allowed = allow
            .iter()
            .map(|a| {
                a.split_once('=')
                    .filter(|(c, t)| !c.is_empty() && !t.is_empty())
                    .map(|(c, t)| (c.to_string(), t.to_string()))
                    .ok_or_else(|| MapError::AllowSyntax(a.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules, allowed })
    }

    /// The caller's own impersonation request, if any.
    pub fn requested(headers: &HeaderMap) -> Option<Requested> {
        let mut req = Requested {
            user: None,
            groups: Vec::new(),
            other: false,
        };
        let mut any = false;
        for (name, value) in headers {
            let n = name.as_str();
            if !n.starts_with("impersonate-") {
                continue;
            }
            any = true;
            let v = value.to_str().unwrap_or_default().to_string();
            match n {
                "impersonate-user" => req.user = Some(v),
                "impersonate-group" => req.groups.push(v),
                _ => req.other = true,
            }
        }
        any.then_some(req)
    }

    /// Decides who to impersonate for `id`. `Err` carries the 403 message for a refused
    /// caller-sent impersonation.
    pub fn target(
        &self,
        id: &Identity,
        requested: Option<&Requested>,
    ) -> Result<Impersonation, String> {
        let mut out = self.map(id);
        if let Some(req) = requested {
            let allowed = match (&req.user, req.groups.is_empty(), req.other) {
                (Some(target), true, false) => self
                    .allowed
                    .iter()
                    .any(|(caller, t)| caller == &id.username && t == target),
                _ => false,
            };
            if !allowed {
                return Err(format!(
                    "user {:?} may not impersonate through the gateway; the gateway already acts as you",
                    id.username
                ));
            }
            if let Some(target) = &req.user {
                out.user = target.clone();
                out.groups.clear();
            }
        }
        Ok(out)
    }

    fn map(&self, id: &Identity) -> Impersonation {
        let rule = self.rules.iter().find(|r| {
            r.matches.user.as_ref().is_none_or(|u| *u == id.username)
                && r.matches
                    .group
                    .as_ref()
                    .is_none_or(|g| id.groups.contains(g))
        });
        let mut out = Impersonation {
            user: id.username.clone(),
            groups: id.groups.clone(),
            uid: id.uid.clone(),
            extra: Default::default(),
        };
        if let Some(rule) = rule {
            if let Some(u) = &rule.user {
                out.user = u.replace("{username}", &id.username);
                out.uid = String::new();
            }
            if let Some(g) = &rule.groups {
                out.groups = g.clone();
            }
            out.groups.extend(rule.add_groups.iter().cloned());
        }
        out
    }
}

/// Writes the impersonation headers (after removing any the caller sent), with the gatehouse
/// session id as an extra so the apiserver's audit log can be joined to the transcript.
pub fn apply(headers: &mut HeaderMap, target: &Impersonation, session_id: &str) {
    let names: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
    let mut put = |name: String, value: &str| {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    };
    put("impersonate-user".into(), &target.user);
    for g in &target.groups {
        put("impersonate-group".into(), g);
    }
    if !target.uid.is_empty() {
        put("impersonate-uid".into(), &target.uid);
    }
    let session = (SESSION_EXTRA_KEY.to_string(), session_id.to_string());
    for (k, v) in target
        .extra
        .iter()
        .chain(std::iter::once((&session.0, &session.1)))
    {
        let key = percent_encoding::utf8_percent_encode(k, EXTRA_KEY_ESCAPE).to_string();
        put(format!("impersonate-extra-{key}"), v);
    }
}

/// Characters escaped in `Impersonate-Extra-` keys: everything not a header token character.
const EXTRA_KEY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity {
            username: user.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            uid: "u1".into(),
            method: AuthMethod::Oidc,
            issuer: String::new(),
            extra: Default::default(),
        }
    }

    #[test]
    fn passes_identity_through_and_adds_session_extra() {
        let imp = Impersonator::default();
        let t = imp.target(&id("alice", &["dev"]), None).unwrap();
        assert_eq!(t.user, "alice");
        assert_eq!(t.groups, vec!["dev"]);
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "evil".parse().unwrap());
        apply(&mut h, &t, "s1");
        assert_eq!(h.get_all("impersonate-user").iter().count(), 1);
        assert_eq!(h["impersonate-user"], "alice");
        assert_eq!(h["impersonate-extra-gatehouse.dev%2Fsession-id"], "s1");
    }

    #[test]
    fn refuses_caller_impersonation_unless_allowed() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "system:admin".parse().unwrap());
        let req = Impersonator::requested(&h).unwrap();
        let imp = Impersonator::default();
        assert!(imp.target(&id("alice", &[]), Some(&req)).is_err());
        let imp = Impersonator::load(None, &["alice=system:admin".into()]).unwrap();
        let t = imp.target(&id("alice", &[]), Some(&req)).unwrap();
        assert_eq!(t.user, "system:admin");
        assert!(imp.target(&id("bob", &[]), Some(&req)).is_err());
        h.append("impersonate-group", "system:masters".parse().unwrap());
        let req = Impersonator::requested(&h).unwrap();
        assert!(
            imp.target(&id("alice", &[]), Some(&req)).is_err(),
            "groups are never allowed"
        );
    }

    #[test]
    fn identity_map_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("map.yaml");
        std::fs::write(
            &p,
            "rules:\n- match: {group: agents}\n  user: 'agent:{username}'\n  groups: [gatehouse:agents]\n- match: {user: bob}\n  add_groups: [extra]\n",
        )
        .unwrap();
        let imp = Impersonator::load(Some(&p), &[]).unwrap();
        let t = imp.target(&id("ops-bot", &["agents"]), None).unwrap();
        assert_eq!(
            (t.user.as_str(), t.groups.clone()),
            ("agent:ops-bot", vec!["gatehouse:agents".to_string()])
        );
        let t = imp.target(&id("bob", &["g"]), None).unwrap();
        assert_eq!(t.groups, vec!["g", "extra"]);
        std::fs::write(&p, "rules:\n- match: {}\n").unwrap();
        assert!(matches!(
            Impersonator::load(Some(&p), &[]),
            Err(MapError::EmptyMatch { index: 0 })
        ));
        std::fs::write(&p, "rulez: []\n").unwrap();
        assert!(matches!(
            Impersonator::load(Some(&p), &[]),
            Err(MapError::Parse { .. })
        ));
    }
}
