//! First-match evaluation: the first rule whose conditions all hold decides; otherwise the
//! explicit default does. `evaluate` checks only the rules the index leaves; `explain` walks all.
use crate::index::RuleIndex;
use crate::mask::MaskSpec;
use crate::model::{Action, Match, Policy, PolicyIndex, Rule};
use crate::pattern::Pattern;
use crate::request::Request;
use std::sync::{Arc, LazyLock};

/// What `action: mask` without a `mask:` block masks.
static DEFAULT_MASK: LazyLock<Arc<MaskSpec>> = LazyLock::new(|| Arc::new(MaskSpec::default()));

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Index and name of the deciding rule; `None` when the default decided.
    pub rule: Option<(usize, String)>,
    /// The message a refused caller sees.
    pub message: String,
    pub record_payload: bool,
    /// Set for `mask`: what to mask beyond the built-in Secret values.
    pub mask: Option<Arc<MaskSpec>>,
    /// The granted role whose rule decided, if one did.
    pub role: Option<String>,
}

impl Decision {
    /// Allowed through (`allow` or `mask`).
    pub fn allowed(&self) -> bool {
        matches!(self.action, Action::Allow | Action::Mask)
    }
}

/// A rule tried before the deciding one, and the first condition it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped<'p> {
    pub index: usize,
    pub name: &'p str,
    pub failed: &'static str,
}

fn any(patterns: &[Pattern], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
}

impl Match {
    /// The first condition that does not hold, or `None` when all do.
    pub fn first_miss(&self, r: &Request) -> Option<&'static str> {
        if !any(&self.users, &r.user) {
            return Some("users");
        }
        if !self.groups.is_empty()
            && !r
                .groups
                .iter()
                .any(|g| self.groups.iter().any(|p| p.matches(g)))
        {
            return Some("groups");
        }
        if !self.sources.is_empty() && !self.sources.iter().any(|s| s.matches(&r.source)) {
            return Some("sources");
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v.matches(&r.verb)) {
            return Some("verbs");
        }
        if !any(&self.api_groups, &r.api_group) {
            return Some("api_groups");
        }
        if !any(&self.resources, &r.resource) {
            return Some("resources");
        }
        if !any(&self.subresources, &r.subresource) {
            return Some("subresources");
        }
        if !any(&self.namespaces, &r.namespace) {
            return Some("namespaces");
        }
        if !any(&self.names, &r.name) {
            return Some("names");
        }
        if let Some(em) = &self.exec {
            let Some(exec) = &r.exec else {
                return Some("exec");
            };
            if !any(&em.containers, &exec.container) {
                return Some("exec.containers");
            }
            if !em.argv.is_empty() && !any(&em.argv, &exec.argv.join(" ")) {
                return Some("exec.argv");
            }
        }
        if !self.labels.is_empty()
            && !self
                .labels
                .iter()
                .all(|(k, p)| r.labels.iter().any(|(rk, rv)| rk == k && p.matches(rv)))
        {
            return Some("labels");
        }
        if !self.time.is_empty() && !self.time.iter().any(|w| w.contains(r.time)) {
            return Some("time");
        }
        None
    }

    /// The conditions this rule sets, as written, for explanations (`verbs: delete`).
    pub fn describe(&self) -> Vec<String> {
        fn list(out: &mut Vec<String>, key: &str, items: Vec<String>) {
            if !items.is_empty() {
                out.push(format!("{key}: {}", items.join(", ")));
            }
        }
        let pats = |p: &[Pattern]| p.iter().map(Pattern::as_written).collect::<Vec<_>>();
        let mut out = Vec::new();
        list(&mut out, "users", pats(&self.users));
        list(&mut out, "groups", pats(&self.groups));
        list(
            &mut out,
            "sources",
            self.sources.iter().map(|s| s.as_written()).collect(),
        );
        list(
            &mut out,
            "verbs",
            self.verbs.iter().map(|v| v.as_str().to_string()).collect(),
        );
        list(
            &mut out,
            "api_groups",
            self.api_groups
                .iter()
                .map(|p| match p.as_written() {
                    s if s.is_empty() => "\"\" (core)".to_string(),
                    s => s,
                })
                .collect(),
        );
        list(&mut out, "resources", pats(&self.resources));
        list(&mut out, "subresources", pats(&self.subresources));
        list(&mut out, "namespaces", pats(&self.namespaces));
        list(&mut out, "names", pats(&self.names));
        if let Some(e) = &self.exec {
            list(&mut out, "exec.containers", pats(&e.containers));
            list(&mut out, "exec.argv", pats(&e.argv));
            if e.containers.is_empty() && e.argv.is_empty() {
                out.push("exec: any".into());
            }
        }
        if !self.labels.is_empty() {
            let l: Vec<String> = self
                .labels
                .iter()
                .map(|(k, p)| format!("{k}={}", p.as_written()))
                .collect();
            list(&mut out, "labels", l);
        }
        list(&mut out, "stdin", pats(&self.stdin));
        if !self.time.is_empty() {
            out.push(format!(
                "time: {} window(s), now inside one",
                self.time.len()
            ));
        }
        out
    }
}

impl Rule {
    fn decision(&self, index: usize) -> Decision {
        let message = match (&self.message, self.action) {
            (Some(m), Action::RequireApproval) => format!("approval required: {m}"),
            (None, Action::RequireApproval) => {
                format!("approval required by gatehouse policy rule {:?}", self.name)
            }
            (Some(m), _) => m.clone(),
            (None, _) => format!("denied by gatehouse policy rule {:?}", self.name),
        };
        let mask = (self.action == Action::Mask)
            .then(|| self.mask.clone().unwrap_or_else(|| DEFAULT_MASK.clone()));
        Decision {
            action: self.action,
            rule: Some((index, self.name.clone())),
            message,
            record_payload: self.record_payload,
            mask,
            role: None,
        }
    }
}

impl Policy {
    /// Decides one request: the first matching rule, else the default. Uses the rule index, so
    /// only rules no exact-valued condition rules out are checked; the result is the same as
    /// `explain`'s, which walks every rule.
    pub fn evaluate(&self, r: &Request) -> Decision {
        let index = self.index();
        for (role, idx) in self.roles.iter().zip(&index.roles) {
            if !r.roles.contains(&role.name) {
                continue;
            }
            if let Some(i) = idx.first_match(&role.rules, r)
                && let Some(rule) = role.rules.get(i)
            {
                let mut d = rule.decision(i);
                d.role = Some(role.name.clone());
                return d;
            }
        }
        match index
            .rules
            .first_match(&self.rules, r)
            .and_then(|i| self.rules.get(i).map(|rule| rule.decision(i)))
        {
            Some(d) => d,
            None => self.default_decision(),
        }
    }

    /// The rule indexes, built on first use.
    pub(crate) fn index(&self) -> &PolicyIndex {
        self.index.get_or_init(|| PolicyIndex {
            rules: RuleIndex::new(&self.rules),
            roles: self
                .roles
                .iter()
                .map(|ro| RuleIndex::new(&ro.rules))
                .collect(),
        })
    }

    /// Like `evaluate`, also reporting each rule passed over and why.
    pub fn explain<'p>(&'p self, r: &Request, mut skipped: impl FnMut(Skipped<'p>)) -> Decision {
        // A granted role's rules come first: the grant is the exception to the standing policy.
        for role in self.roles.iter().filter(|ro| r.roles.contains(&ro.name)) {
            for (i, rule) in role.rules.iter().enumerate() {
                if rule.matches.stdin.is_empty() && rule.matches.first_miss(r).is_none() {
                    let mut d = rule.decision(i);
                    d.role = Some(role.name.clone());
                    return d;
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches.stdin.is_empty() {
                skipped(Skipped {
                    index: i,
                    name: &rule.name,
                    failed: "stdin (checked per typed line)",
                });
                continue;
            }
            match rule.matches.first_miss(r) {
                None => return rule.decision(i),
                Some(failed) => skipped(Skipped {
                    index: i,
                    name: &rule.name,
                    failed,
                }),
            }
        }
        self.default_decision()
    }

    fn default_decision(&self) -> Decision {
        Decision {
            action: self.default.action,
            rule: None,
            message: match (&self.default.message, self.default.action) {
                (Some(m), Action::RequireApproval) => format!("approval required: {m}"),
                (Some(m), _) => m.clone(),
                (None, Action::RequireApproval) => {
                    "approval required by the gatehouse policy default".to_string()
                }
                (None, _) => "denied by the gatehouse policy default".to_string(),
            },
            record_payload: true,
            mask: None,
            role: None,
        }
    }

    /// Whether a role of this name exists (grants name one).
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.name == name)
    }

    /// Whether any `stdin` rule could apply to this request (so its stdin is worth assembling).
    pub fn watches_stdin(&self, r: &Request) -> bool {
        self.rules
            .iter()
            .any(|rule| !rule.matches.stdin.is_empty() && rule.matches.first_miss(r).is_none())
    }

    /// The first `stdin` rule that refuses `line` typed in the session of `r`: its deny
    /// decision. Lines no deny rule matches pass.
    pub fn check_line(&self, r: &Request, line: &str) -> Option<Decision> {
        self.rules.iter().enumerate().find_map(|(i, rule)| {
            (rule.action == Action::Deny
                && rule.matches.stdin.iter().any(|p| p.matches(line))
                && rule.matches.first_miss(r).is_none())
            .then(|| rule.decision(i))
        })
    }
}
