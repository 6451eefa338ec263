//! The policy document: a version, an explicit default, and rules tried in order. Every field
//! is checked while parsing (unknown keys, bad patterns, bad verbs), so errors carry a location.
use crate::index::RuleIndex;
use crate::mask::MaskSpec;
use crate::pattern::{Pattern, Source};
use crate::window::TimeWindow;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only 1 exists.
    pub version: Version,
    /// What happens when no rule matches. Required: a policy never falls open by accident.
    pub default: Default,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Who reviews held requests, for how long they are held, and where they are announced.
    #[serde(default)]
    pub approvals: Approvals,
    /// Named rule sets a just-in-time grant activates for its grantee (tried before `rules`).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Built on first evaluation (`parse` builds it up front); the rules are not changed after.
    #[serde(skip)]
    pub(crate) index: OnceLock<PolicyIndex>,
}

/// The rule indexes of a policy: its rules, then each role's, in `roles` order.
#[derive(Debug, Clone)]
pub(crate) struct PolicyIndex {
    pub(crate) rules: RuleIndex,
    pub(crate) roles: Vec<RuleIndex>,
}

/// `approvals:` of the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// Groups whose members may approve, deny and grant. Empty: nobody can.
    #[serde(default)]
    pub reviewers: Vec<Pattern>,
    /// How long a request is held before it is refused (`45s`, `5m`). kubectl's default
    /// `--request-timeout` is none, so the hold is bounded by this alone.
    #[serde(default = "default_hold", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Longest grant a reviewer may create.
    #[serde(default = "default_max_grant", deserialize_with = "duration")]
    pub max_grant: Duration,
    /// Announces each pending approval with a JSON POST.
    pub webhook: Option<Webhook>,
}

impl std::default::Default for Approvals {
    fn default() -> Self {
        Self {
            reviewers: Vec::new(),
            timeout: default_hold(),
            max_grant: default_max_grant(),
            webhook: None,
        }
    }
}

/// `30s`, `5m`, `1h 30m`.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(&s) {
        Ok(v) if !v.is_zero() => Ok(v),
        Ok(_) => Err(serde::de::Error::custom(
            "the duration must be more than zero",
        )),
        Err(e) => Err(serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (use e.g. 45s, 5m, 1h)"
        ))),
    }
}

fn default_hold() -> Duration {
    Duration::from_secs(300)
}

fn default_max_grant() -> Duration {
    Duration::from_secs(8 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// `generic` (the approval as JSON) or `slack` (an incoming-webhook `text` message).
    #[serde(default)]
    pub format: WebhookFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Generic,
    Slack,
}

/// A rule set a grant can activate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u32")]
pub struct Version;

impl TryFrom<u32> for Version {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if v == 1 {
            Ok(Version)
        } else {
            Err(format!(
                "unsupported policy version {v}: this gatehouse reads version 1"
            ))
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Default {
    pub action: Action,
    /// What a denied caller sees.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// Conditions, all of which must hold; an absent or empty list matches anything.
    #[serde(default, rename = "match")]
    pub matches: Match,
    pub action: Action,
    /// What a denied (or held) caller sees.
    pub message: Option<String>,
    /// `false` keeps request and response bodies out of the transcript (the exchange itself
    /// is still recorded).
    #[serde(default = "yes")]
    pub record_payload: bool,
    /// For `action: mask`: detectors, field rules, env names and DLP (default: all detectors,
    /// transcript only).
    #[serde(default, deserialize_with = "arc_mask")]
    pub mask: Option<Arc<MaskSpec>>,
}

fn arc_mask<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<MaskSpec>>, D::Error> {
    Ok(Some(Arc::new(MaskSpec::deserialize(d)?)))
}

fn yes() -> bool {
    true
}

/// Conditions of a rule: every field given must match (AND); within a list, any entry (OR).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub users: Vec<Pattern>,
    /// Matches when any of the caller's groups matches any entry.
    #[serde(default)]
    pub groups: Vec<Pattern>,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub verbs: Vec<Verb>,
    /// `""` is the core group.
    #[serde(default)]
    pub api_groups: Vec<Pattern>,
    #[serde(default)]
    pub resources: Vec<Pattern>,
    #[serde(default)]
    pub subresources: Vec<Pattern>,
    #[serde(default)]
    pub namespaces: Vec<Pattern>,
    #[serde(default)]
    pub names: Vec<Pattern>,
    /// Only exec requests match a rule with this set.
    pub exec: Option<ExecMatch>,
    /// The rule applies only inside one of these windows.
    #[serde(default)]
    pub time: Vec<TimeWindow>,
    /// Labels the request carries (a create/update body's `metadata.labels`, or `key=value`
    /// terms of a `labelSelector`): every key listed must be present with a matching value.
    #[serde(default)]
    pub labels: BTreeMap<String, Pattern>,
    /// Lines typed on an interactive exec/attach stdin (assembled best effort). A rule with
    /// `stdin` is checked per line only, never against the request itself.
    #[serde(default)]
    pub stdin: Vec<Pattern>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecMatch {
    #[serde(default)]
    pub containers: Vec<Pattern>,
    /// Matched against the command's arguments joined by single spaces (`rm -rf /`).
    #[serde(default)]
    pub argv: Vec<Pattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
    /// Held until a reviewer approves or denies it, or the approval timeout passes.
    RequireApproval,
    /// Allowed, with values masked in the transcript (and in the response too with `dlp`).
    Mask,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval => "require_approval",
            Action::Mask => "mask",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Deletecollection,
    #[serde(rename = "*")]
    Any,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Deletecollection => "deletecollection",
            Verb::Any => "*",
        }
    }

    pub fn matches(self, verb: &str) -> bool {
        self == Verb::Any || self.as_str() == verb
    }
}
