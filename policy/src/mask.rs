//! What a `mask` rule masks beyond the built-in Secret values: regex detectors (AWS keys,
//! bearer tokens, private keys, JWTs, custom), JSONPath-like field rules, env var name patterns,
//! and whether the live response is masked too (DLP mode).
use crate::pattern::Pattern;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// `mask:` of a rule whose action is `mask`.
#[derive(Debug, Deserialize)]
#[serde(from = "RawMaskSpec")]
pub struct MaskSpec {
    /// Built-in detectors run over JSON string values, log lines and exec stdout (default: all).
    pub detectors: Vec<Detector>,
    /// Further detectors: `{name, regex}` (unanchored; the whole match is masked).
    pub patterns: Vec<CustomDetector>,
    /// Field rules (`spec.containers[*].env[*].value`, `data.*`, `metadata.annotations["a.b/c"]`),
    /// relative to the object (also inside lists and watch events). Every string at or under a
    /// matching field is masked.
    pub fields: Vec<FieldPath>,
    /// Env var names (`*PASSWORD*`) whose `value` is masked in any `env` list (Pod, Deployment…).
    pub env_names: Vec<Pattern>,
    /// Also mask the response the caller sees, not only the transcript.
    pub dlp: bool,
    /// The detectors compiled into one regex.
    scanner: Option<Scanner>,
}

/// `MaskSpec` as written, before its detectors are compiled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaskSpec {
    #[serde(default = "all_detectors")]
    detectors: Vec<Detector>,
    #[serde(default)]
    patterns: Vec<CustomDetector>,
    #[serde(default)]
    fields: Vec<FieldPath>,
    #[serde(default)]
    env_names: Vec<Pattern>,
    #[serde(default)]
    dlp: bool,
}

impl From<RawMaskSpec> for MaskSpec {
    fn from(r: RawMaskSpec) -> Self {
        let mut s = MaskSpec {
            detectors: r.detectors,
            patterns: r.patterns,
            fields: r.fields,
            env_names: r.env_names,
            dlp: r.dlp,
            scanner: None,
        };
        s.compile();
        s
    }
}

impl PartialEq for MaskSpec {
    /// Specs are compared by identity: a decision carries the rule's own spec.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for MaskSpec {}

impl Default for MaskSpec {
    fn default() -> Self {
        let mut s = MaskSpec {
            detectors: all_detectors(),
            patterns: Vec::new(),
            fields: Vec::new(),
            env_names: Vec::new(),
            dlp: false,
            scanner: None,
        };
        s.compile();
        s
    }
}

fn all_detectors() -> Vec<Detector> {
    vec![
        Detector::AwsAccessKey,
        Detector::BearerToken,
        Detector::PrivateKey,
        Detector::Jwt,
    ]
}

impl MaskSpec {
    /// Builds the scanner; called once after deserializing.
    pub(crate) fn compile(&mut self) {
        let mut alts: Vec<String> = self
            .detectors
            .iter()
            .map(|d| d.regex().to_string())
            .collect();
        alts.extend(self.patterns.iter().map(|p| p.regex.as_str().to_string()));
        self.scanner = if alts.is_empty() {
            None
        } else {
            let joined = alts
                .iter()
                .map(|a| format!("(?:{a})"))
                .collect::<Vec<_>>()
                .join("|");
            // Each part compiled on its own already (built-ins are constants, custom ones were
            // checked while parsing), so the alternation compiles too.
            regex::bytes::Regex::new(&joined)
                .ok()
                .map(|re| Scanner { re })
        };
    }

    /// The detectors, if any.
    pub fn scanner(&self) -> Option<&Scanner> {
        self.scanner.as_ref()
    }
}

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// `AKIA…`/`ASIA…` access key ids.
    AwsAccessKey,
    /// `Bearer <token>` (the token is masked, the word kept).
    BearerToken,
    /// PEM private keys, header to footer (in text streams the lines between are masked too).
    PrivateKey,
    /// Three base64url parts, the first two JSON objects (`eyJ…`).
    Jwt,
}

impl Detector {
    fn regex(self) -> &'static str {
        match self {
            Detector::AwsAccessKey => r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
            Detector::BearerToken => r"\b[Bb]earer[ \t]+[A-Za-z0-9\-._~+/]{8,}=*",
            Detector::PrivateKey => {
                r"(?s)-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----.*?(?:-----END[A-Z ]{0,20} PRIVATE KEY-----|\z)"
            }
            Detector::Jwt => r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+",
        }
    }
}

/// A configured detector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    pub name: String,
    #[serde(deserialize_with = "regex_de")]
    pub regex: regex::bytes::Regex,
}

fn regex_de<'de, D: Deserializer<'de>>(d: D) -> Result<regex::bytes::Regex, D::Error> {
    let s = String::deserialize(d)?;
    regex::bytes::Regex::new(&s).map_err(|e| de::Error::custom(format!("invalid regex {s}: {e}")))
}

/// The compiled detectors.
#[derive(Debug)]
pub struct Scanner {
    re: regex::bytes::Regex,
}

/// The footer of a PEM private key starts with this.
pub const PEM_END_MARK: &[u8] = b"-----END";

impl Scanner {
    /// The byte ranges of `text` to mask, in order and non-overlapping. `open_key` is true when
    /// the last range is a private key whose footer was not found (a text stream continues it).
    pub fn find(&self, text: &[u8], mut each: impl FnMut(Range<usize>)) -> bool {
        let mut open_key = false;
        for m in self.re.find_iter(text) {
            let mut r = m.range();
            let s = m.as_bytes();
            // Keep the word of `Bearer <token>` so the masked text still reads as a header.
            if s.len() > 6 && s[..6].eq_ignore_ascii_case(b"bearer") {
                let skip = 6 + s[6..]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t'))
                    .count();
                r.start += skip;
            }
            open_key = s.starts_with(b"-----BEGIN") && find_sub(s, PEM_END_MARK).is_none();
            if s.starts_with(b"-----BEGIN") {
                // Keep the header line readable; the key material after it is what is masked.
                if let Some(h) = find_sub(s, b"KEY-----") {
                    r.start += h + 8;
                }
            }
            if r.start < r.end {
                each(r);
            }
        }
        open_key
    }
}

/// Position of `needle` in `hay`.
pub fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// The stored form of a masked value: `***` and a SHA-256 prefix (equal secrets stay
/// comparable), sized to the value's length class (the next power of two, 11 to 64 bytes) so a
/// short password and a private key do not look alike. Only ASCII letters and digits follow the
/// stars, so the result is a valid JSON string body and a single log "word".
pub fn masked(value: &[u8]) -> String {
    let mut h = MaskHasher::default();
    h.update(value);
    h.finish()
}

/// [`masked`] fed in pieces, so a value streamed through a masker is hashed where it is read
/// and never gathered into a buffer first.
#[derive(Clone, Default)]
pub struct MaskHasher {
    sha: Sha256,
    len: usize,
}

impl MaskHasher {
    pub fn update(&mut self, piece: &[u8]) {
        self.sha.update(piece);
        self.len += piece.len();
    }

    /// The masked form of everything fed; the hasher starts over.
    pub fn finish(&mut self) -> String {
        let digest = std::mem::take(&mut self.sha).finalize();
        let class = std::mem::take(&mut self.len)
            .next_power_of_two()
            .clamp(11, 64);
        let mut out = String::with_capacity(class);
        out.push_str("***");
        out.push_str(&hex::encode(&digest[..(class - 3).div_ceil(2)])[..class - 3]);
        out
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    /// `*`: any key.
    AnyKey,
    /// `[*]`: any list item.
    AnyItem,
}

/// A JSONPath-like field rule: `spec.containers[*].env[*].value`, `data.*`,
/// `metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]`; a leading `$.`
/// is allowed.
#[derive(Debug, Clone)]
pub struct FieldPath {
    pub steps: Vec<Step>,
    written: String,
}

impl FieldPath {
    pub fn new(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid field path {s:?}: {why}");
        let body = s
            .strip_prefix("$.")
            .or_else(|| s.strip_prefix('$'))
            .unwrap_or(s);
        let mut steps = Vec::new();
        let b = body.as_bytes();
        let mut i = 0;
        let mut key = String::new();
        let flush = |key: &mut String, steps: &mut Vec<Step>| {
            if !key.is_empty() {
                steps.push(if key == "*" {
                    Step::AnyKey
                } else {
                    Step::Key(std::mem::take(key))
                });
                key.clear();
            }
        };
        while i < b.len() {
            match b[i] {
                b'.' => {
                    if key.is_empty() && (i == 0 || b[i - 1] == b'.') {
                        return Err(bad("empty step"));
                    }
                    flush(&mut key, &mut steps);
                    i += 1;
                }
                b'[' => {
                    flush(&mut key, &mut steps);
                    let close = body[i..].find(']').ok_or_else(|| bad("unclosed ["))? + i;
                    let inner = &body[i + 1..close];
                    if inner == "*" || inner.is_empty() {
                        steps.push(Step::AnyItem);
                    } else if inner.len() >= 2
                        && ((inner.starts_with('"') && inner.ends_with('"'))
                            || (inner.starts_with('\'') && inner.ends_with('\'')))
                    {
                        steps.push(Step::Key(inner[1..inner.len() - 1].to_string()));
                    } else {
                        return Err(bad("use [*] for list items or [\"key\"] for a key"));
                    }
                    i = close + 1;
                }
                c => {
                    key.push(c as char);
                    i += 1;
                }
            }
        }
        flush(&mut key, &mut steps);
        if steps.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(FieldPath {
            steps,
            written: s.to_string(),
        })
    }

    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// Whether the value at `path` (keys and `None` for list items, from the document root)
    /// is this field: at the root, or inside `items[*]` (a list), `object` (a watch event) or
    /// both.
    pub fn matches(&self, path: &[Option<&[u8]>]) -> bool {
        let roots: [&[Option<&[u8]>]; 4] = [
            &[],
            &[Some(b"items"), None],
            &[Some(b"object")],
            &[Some(b"object"), Some(b"items"), None],
        ];
        roots.iter().any(|root| {
            path.len() == root.len() + self.steps.len()
                && path[..root.len()] == **root
                && self
                    .steps
                    .iter()
                    .zip(&path[root.len()..])
                    .all(|(s, p)| match (s, p) {
                        (Step::Key(k), Some(p)) => k.as_bytes() == *p,
                        (Step::AnyKey, Some(_)) | (Step::AnyItem, None) => true,
                        _ => false,
                    })
        })
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FieldPath::new(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(text: &str) -> Vec<String> {
        let s = MaskSpec::default();
        let mut out = Vec::new();
        if let Some(sc) = s.scanner() {
            sc.find(text.as_bytes(), |r| out.push(text[r].to_string()));
        }
        out
    }

    #[test]
    fn built_in_detectors() {
        assert_eq!(
            ranges("key=AKIAIOSFODNN7EXAMPLE next"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert!(ranges("AKIAIOSFODNN7EXAMPLEX").is_empty(), "word boundary");
        assert_eq!(
            ranges("Authorization: Bearer abc.DEF-123_xyz=="),
            ["abc.DEF-123_xyz=="]
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(ranges(&format!("token {jwt} end")), [jwt]);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY-----";
        assert_eq!(ranges(pem), ["\\nMIIEow\\n-----END RSA PRIVATE KEY-----"]);
        assert!(ranges("nothing secret here, bearer").is_empty());
    }

    #[test]
    fn an_unfinished_private_key_is_reported_open() {
        let s = MaskSpec::default();
        let sc = s.scanner().unwrap();
        assert!(sc.find(b"-----BEGIN PRIVATE KEY-----\nMIIE\n", |_| {}));
        assert!(!sc.find(
            b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            |_| {}
        ));
    }

    #[test]
    fn masked_values_keep_their_length_class() {
        let a = masked(b"hunter2");
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("***"));
        assert_eq!(a, masked(b"hunter2"), "comparable");
        assert_ne!(a, masked(b"hunter3"));
        assert_eq!(masked(b"AKIAIOSFODNN7EXAMPLE").len(), 32);
        assert_eq!(masked(&[b'x'; 3000]).len(), 64);
        // The stored format: SHA-256("hunter2") begins f52fbd32.
        assert_eq!(a, "***f52fbd32");
    }

    #[test]
    fn a_value_hashed_in_pieces_masks_as_the_whole() {
        let value: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        for cut in [0, 1, 7, 1500, 2999, 3000] {
            let mut h = MaskHasher::default();
            h.update(&value[..cut]);
            h.update(&value[cut..]);
            assert_eq!(h.finish(), masked(&value), "cut at {cut}");
            assert_eq!(h.finish(), masked(b""), "finish starts over");
        }
    }

    #[test]
    fn field_paths() {
        let p = FieldPath::new("spec.containers[*].env[*].value").unwrap();
        let path: Vec<Option<&[u8]>> = vec![
            Some(b"spec"),
            Some(b"containers"),
            None,
            Some(b"env"),
            None,
            Some(b"value"),
        ];
        assert!(p.matches(&path));
        let mut in_list = vec![Some(&b"items"[..]), None];
        in_list.extend(path.iter().copied());
        assert!(p.matches(&in_list));
        assert!(!p.matches(&path[1..]));
        let a = FieldPath::new("$.metadata.annotations[\"a.b/c\"]").unwrap();
        assert_eq!(
            a.steps,
            [
                Step::Key("metadata".into()),
                Step::Key("annotations".into()),
                Step::Key("a.b/c".into())
            ]
        );
        assert!(
            FieldPath::new("data.*")
                .unwrap()
                .matches(&[Some(b"data"), Some(b"k")])
        );
        for bad in ["", "a..b", "a[1]", "a[\"x\""] {
            assert!(FieldPath::new(bad).is_err(), "{bad}");
        }
    }
}
