//! A rule index built once per policy: per request field, which rules could match a value (by
//! exact value, literal prefix of a glob or regex, or one pass of a set of the other regexes),
//! as bitsets in rule order; only rules left get the full check, walked in order (first match).
use crate::model::{Rule, Verb};
use crate::pattern::Pattern;
use crate::request::Request;
use std::collections::HashMap;

/// One bit per rule, rule 0 in the lowest bit of word 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(rules: usize) -> Self {
        Bits(vec![0; rules.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn word(&self, w: usize) -> u64 {
        self.0.get(w).copied().unwrap_or(0)
    }
}

/// What a rule's condition on one field needs of the value.
enum Need {
    /// No condition, or one the index cannot narrow (a glob without a literal prefix).
    Any,
    /// One of these: an exact value, or a literal prefix.
    OneOf(Vec<Key>),
}

enum Key {
    Exact(String),
    Prefix(String),
    /// A regex without a literal prefix, as compiled (anchored).
    Regex(String),
}

/// Rules that could match each value of one request field. A rule whose condition on the field
/// is absent, or has a glob without a literal prefix, is in `wild` (the full check decides);
/// the others are in the set of each exact value, literal prefix or prefix-less regex they list.
#[derive(Debug, Clone, Default)]
struct Field {
    /// Per exact value: the rules listing it, together with all `wild` rules.
    exact: HashMap<String, Bits>,
    /// Per literal prefix of a glob or regex: the rules with it.
    prefixes: HashMap<String, Bits>,
    /// The lengths (bytes) of the prefixes, so a value is looked up only at those.
    prefix_lens: Vec<usize>,
    /// Regexes without a literal prefix, all run in one pass, and per regex the rules with it.
    regexes: Option<(regex::RegexSet, Vec<Bits>)>,
    wild: Bits,
}

impl Field {
    fn build(rules: usize, needs: impl Iterator<Item = Need>) -> Self {
        let mut wild = Bits::new(rules);
        let mut exact: HashMap<String, Bits> = HashMap::new();
        let mut prefixes: HashMap<String, Bits> = HashMap::new();
        let mut regexes: HashMap<String, Bits> = HashMap::new();
        let needs: Vec<Need> = needs.collect();
        for (i, need) in needs.into_iter().enumerate() {
            match need {
                Need::Any => wild.set(i),
                Need::OneOf(keys) => {
                    for key in keys {
                        let (map, k) = match key {
                            Key::Exact(k) => (&mut exact, k),
                            Key::Prefix(k) => (&mut prefixes, k),
                            Key::Regex(k) => (&mut regexes, k),
                        };
                        map.entry(k).or_insert_with(|| Bits::new(rules)).set(i);
                    }
                }
            }
        }
        let (sources, sets): (Vec<String>, Vec<Bits>) = regexes.into_iter().unzip();
        let regexes = match regex::RegexSet::new(&sources) {
            Ok(set) if !sources.is_empty() => Some((set, sets)),
            Ok(_) => None,
            // Each compiled alone; together they may pass the size limit: then those rules
            // are candidates for every value.
            Err(_) => {
                for bits in &sets {
                    for (w, b) in wild.0.iter_mut().zip(&bits.0) {
                        *w |= b;
                    }
                }
                None
            }
        };
        // Each value's set includes the wild rules, so one lookup gives those candidates.
        for bits in exact.values_mut() {
            for (b, w) in bits.0.iter_mut().zip(&wild.0) {
                *b |= w;
            }
        }
        let mut prefix_lens: Vec<usize> = prefixes.keys().map(String::len).collect();
        prefix_lens.sort_unstable();
        prefix_lens.dedup();
        Field {
            exact,
            prefixes,
            prefix_lens,
            regexes,
            wild,
        }
    }

    /// Adds the sets of the rules that could match `value` to `out` (their union is the
    /// candidates).
    fn lookup<'a>(&'a self, value: &str, out: &mut Vec<&'a Bits>) {
        out.push(self.exact.get(value).unwrap_or(&self.wild));
        for &len in &self.prefix_lens {
            // `None` when the value is shorter, or `len` is inside one of its characters (then
            // no prefix of that length equals the value's start either).
            if let Some(bits) = value.get(..len).and_then(|head| self.prefixes.get(head)) {
                out.push(bits);
            }
        }
        if let Some((set, bits)) = &self.regexes {
            out.extend(set.matches(value).iter().filter_map(|m| bits.get(m)));
        }
    }
}

/// What a pattern list needs: any value when it is empty or has a glob with no literal prefix,
/// else its exact values, prefixes and regexes.
fn needs(patterns: &[Pattern]) -> Need {
    if patterns.is_empty() {
        return Need::Any;
    }
    let keys: Option<Vec<Key>> = patterns
        .iter()
        .map(|p| match p {
            Pattern::Exact(s) => Some(Key::Exact(s.clone())),
            Pattern::Glob(g) => {
                let head = &g[..g.find(['*', '?']).unwrap_or(g.len())];
                (!head.is_empty()).then(|| Key::Prefix(head.to_string()))
            }
            Pattern::Regex(r) => Some(
                regex_prefix(&p.as_written())
                    .map_or_else(|| Key::Regex(r.as_str().to_string()), Key::Prefix),
            ),
        })
        .collect();
    keys.map_or(Need::Any, Need::OneOf)
}

/// The literal text every match of `/body/` (anchored at both ends) starts with, if it is sure:
/// the leading run of plain characters, less its last one when a quantifier follows it. Any
/// `|` gives up (an alternative may start otherwise), as does a leading group or class.
fn regex_prefix(written: &str) -> Option<String> {
    let body = written.strip_prefix('/')?.strip_suffix('/')?;
    if body.contains('|') || closes_early(body) {
        return None;
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_:/=,@ ".contains(c);
    let run = body.find(|c: char| !plain(c)).unwrap_or(body.len());
    let mut head = &body[..run];
    if body[run..].starts_with(['?', '*', '{']) {
        head = &head[..head.len().saturating_sub(1)];
    }
    (!head.is_empty()).then(|| head.to_string())
}

/// Whether `body` may close the `(?:` it is wrapped in before its end (`a)?(?:`), which would
/// make the rest optional. Unsure (a `)` with a class about) counts as yes.
fn closes_early(body: &str) -> bool {
    if !body.contains(')') {
        return false;
    }
    if body.contains('[') {
        return true;
    }
    let mut depth = 0i32;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn verb_needs(verbs: &[Verb]) -> Need {
    if verbs.is_empty() || verbs.contains(&Verb::Any) {
        return Need::Any;
    }
    Need::OneOf(
        verbs
            .iter()
            .map(|v| Key::Exact(v.as_str().to_string()))
            .collect(),
    )
}

/// The index of one ordered rule list (the policy's rules, or a role's).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    /// Rules a request can match at all (`stdin` rules are checked per typed line only).
    eligible: Bits,
    users: Field,
    groups: Field,
    verbs: Field,
    api_groups: Field,
    resources: Field,
    subresources: Field,
    namespaces: Field,
    names: Field,
}

impl RuleIndex {
    pub(crate) fn new(rules: &[Rule]) -> Self {
        let n = rules.len();
        let mut eligible = Bits::new(n);
        for (i, r) in rules.iter().enumerate() {
            if r.matches.stdin.is_empty() {
                eligible.set(i);
            }
        }
        let field = |f: fn(&Rule) -> &[Pattern]| Field::build(n, rules.iter().map(|r| needs(f(r))));
        RuleIndex {
            eligible,
            users: field(|r| &r.matches.users),
            groups: field(|r| &r.matches.groups),
            verbs: Field::build(n, rules.iter().map(|r| verb_needs(&r.matches.verbs))),
            api_groups: field(|r| &r.matches.api_groups),
            resources: field(|r| &r.matches.resources),
            subresources: field(|r| &r.matches.subresources),
            namespaces: field(|r| &r.matches.namespaces),
            names: field(|r| &r.matches.names),
        }
    }

    /// The first rule (in order) that fully matches `r`: only rules no field's index rules out
    /// get the full check.
    pub(crate) fn first_match(&self, rules: &[Rule], r: &Request) -> Option<usize> {
        // Per field, the sets whose union is that field's candidates; `ends[k]` closes field k.
        let mut sets: Vec<&Bits> = Vec::with_capacity(16);
        let mut ends = [0usize; 8];
        let single = [
            (&self.users, &r.user),
            (&self.verbs, &r.verb),
            (&self.api_groups, &r.api_group),
            (&self.resources, &r.resource),
            (&self.subresources, &r.subresource),
            (&self.namespaces, &r.namespace),
            (&self.names, &r.name),
        ];
        for (k, (field, value)) in single.iter().enumerate() {
            field.lookup(value, &mut sets);
            ends[k] = sets.len();
        }
        // Groups are many-valued: a rule is a candidate if any of the caller's groups is.
        sets.push(&self.groups.wild);
        for g in &r.groups {
            self.groups.lookup(g, &mut sets);
        }
        ends[7] = sets.len();
        for w in 0..self.eligible.0.len() {
            let mut cand = self.eligible.word(w);
            let mut start = 0;
            for &end in &ends {
                if cand == 0 {
                    break;
                }
                cand &= sets[start..end].iter().fold(0, |u, b| u | b.word(w));
                start = end;
            }
            while cand != 0 {
                let bit = cand.trailing_zeros() as usize;
                cand &= cand - 1;
                let i = w * 64 + bit;
                if rules
                    .get(i)
                    .is_some_and(|rule| rule.matches.first_miss(r).is_none())
                {
                    return Some(i);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::regex_prefix;

    #[test]
    fn regex_prefixes_are_only_what_every_match_starts_with() {
        assert_eq!(regex_prefix("/app-1-[a-z]+/").as_deref(), Some("app-1-"));
        assert_eq!(regex_prefix("/ap+i/").as_deref(), Some("ap"));
        assert_eq!(regex_prefix("/pay(ments)?/").as_deref(), Some("pay"));
        assert_eq!(regex_prefix("/paym?/").as_deref(), Some("pay"));
        assert_eq!(regex_prefix("/ab{0,2}/").as_deref(), Some("a"));
        assert_eq!(regex_prefix("/a.c/").as_deref(), Some("a"));
        assert_eq!(regex_prefix(r"/a\.c/").as_deref(), Some("a"));
        assert_eq!(regex_prefix("/a*b/"), None);
        assert_eq!(regex_prefix("/a|b/"), None);
        assert_eq!(regex_prefix("/x(a|b)/"), None);
        assert_eq!(regex_prefix("/(?i)abc/"), None);
        assert_eq!(regex_prefix("/[a-z]+/"), None);
        // The body closing the anchoring group early would make the rest optional.
        assert_eq!(regex_prefix("/abc)?(?:/"), None);
        assert_eq!(regex_prefix("/ab[)]/"), None);
        assert_eq!(regex_prefix(r"/ab\)c/").as_deref(), Some("ab"));
    }
}
