//! The policy document: a version, an explicit default, and rules tried in order. Every field
//! is checked while parsing (unknown keys, bad patterns, bad verbs), so errors carry a location.
use crate::pattern::{Pattern, Source};
use crate::window::TimeWindow;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only 1 exists.
    pub version: Version,
    /// What happens when no rule matches. Required: a policy never falls open by accident.
    pub default: Default,
    #[serde(default)]
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
    /// Parsed; until approvals exist the request is refused with "approval required".
    RequireApproval,
    /// Allowed, with the response masked in the transcript.
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
