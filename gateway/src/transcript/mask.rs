//! Streaming masking, one pass whatever the chunking, never holding a whole response: Secret
//! `data`/`stringData` values and `last-applied-configuration` annotations (built in), plus a
//! `mask` rule's field rules, env names and detectors over JSON string values and text lines.
use bytes::BufMut;
use gatehouse_policy::mask::{FieldPath, MaskHasher, MaskSpec, PEM_END_MARK, find_sub, masked};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The annotation `kubectl apply` stores the whole applied object in (Secret values included).
const LAST_APPLIED: &[u8] = b"kubectl.kubernetes.io/last-applied-configuration";
/// Longest key remembered; longer keys are never ones we mask under.
const KEY_MAX: usize = 64;
/// Longest JSON string scanned by detectors; a longer one is masked whole (fail closed).
const STRING_MAX: usize = 1 << 20;
/// Longest text line held back waiting for its end; beyond it the text is scanned as it is.
const LINE_MAX: usize = 64 << 10;

/// What to mask in one exchange.
#[derive(Clone, Default)]
pub struct MaskPlan {
    /// Built-in Secret masking (the request is for core `secrets`).
    pub secrets: bool,
    /// The deciding `mask` rule's spec.
    pub spec: Option<Arc<MaskSpec>>,
}

impl MaskPlan {
    pub fn new(kube: &gatehouse_proto::v1::KubeRequest, spec: Option<Arc<MaskSpec>>) -> Self {
        Self {
            secrets: applies_to(kube),
            spec,
        }
    }

    /// Whether anything is masked at all.
    pub fn active(&self) -> bool {
        self.secrets || self.spec.is_some()
    }

    /// DLP: the caller's response is masked too.
    pub fn dlp(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| s.dlp)
    }

    /// A masker for a body of this type, or `None` when it cannot be read (protobuf,
    /// compressed, or text under built-in Secret masking) and so must not be stored.
    pub fn masker(&self, content_type: &str, content_encoding: &str) -> Option<Masker> {
        if !content_encoding.is_empty() && !content_encoding.eq_ignore_ascii_case("identity") {
            return None;
        }
        if is_json(content_type) {
            return Some(Masker::json(self.secrets, self.spec.clone()));
        }
        match &self.spec {
            Some(spec) if !self.secrets && is_text(content_type) => {
                Some(Masker::text(spec.clone()))
            }
            _ => None,
        }
    }
}

/// Rewrites the request so the response comes back in a form the masker reads: protobuf is
/// dropped from `Accept` (the API server then answers JSON, which every client accepts) and
/// compression is not offered.
pub fn prefer_json(headers: &mut http::HeaderMap) {
    headers.remove(http::header::ACCEPT_ENCODING);
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if !accept.contains("protobuf") {
        return;
    }
    let kept: Vec<&str> = accept
        .split(',')
        .map(str::trim)
        .filter(|t| !t.starts_with("application/vnd.kubernetes.protobuf"))
        .collect();
    let value = if kept.is_empty() {
        "application/json".to_string()
    } else {
        kept.join(",")
    };
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        headers.insert(http::header::ACCEPT, v);
    }
}

/// An incremental masker. Feed it a body in order, then `finish`; what it writes is the body
/// with masked values replaced. Malformed input is passed on (masking what it can); it never
/// fails.
pub struct Masker {
    kind: Kind,
    masked: u32,
}

enum Kind {
    Json(Box<JsonMasker>),
    Text(TextMasker),
    /// The body was masked before it got here (DLP): pass it on, report that masking's count.
    Premasked(Arc<AtomicU32>),
}

impl Default for Masker {
    fn default() -> Self {
        Self::new()
    }
}

impl Masker {
    /// Built-in Secret masking of JSON.
    pub fn new() -> Self {
        Self::json(true, None)
    }

    pub fn json(secrets: bool, spec: Option<Arc<MaskSpec>>) -> Self {
        Masker {
            kind: Kind::Json(Box::new(JsonMasker::new(secrets, spec))),
            masked: 0,
        }
    }

    /// Detectors over text lines (`kubectl logs`, exec stdout).
    pub fn text(spec: Arc<MaskSpec>) -> Self {
        Masker {
            kind: Kind::Text(TextMasker {
                spec,
                pending: Vec::new(),
                in_key: false,
            }),
            masked: 0,
        }
    }

    /// For a body already masked upstream of the capture; `count` is that masking's tally.
    pub fn premasked(count: Arc<AtomicU32>) -> Self {
        Masker {
            kind: Kind::Premasked(count),
            masked: 0,
        }
    }

    /// Values masked so far.
    pub fn masked(&self) -> u32 {
        match &self.kind {
            Kind::Premasked(c) => c.load(Ordering::Relaxed),
            _ => self.masked,
        }
    }

    /// Masks `input` onto `out`. Text may be held back until its line ends.
    pub fn feed(&mut self, input: &[u8], out: &mut impl BufMut) {
        match &mut self.kind {
            Kind::Json(j) => j.feed(input, out, &mut self.masked),
            Kind::Text(t) => t.feed(input, out, &mut self.masked, false),
            Kind::Premasked(_) => out.put_slice(input),
        }
    }

    /// Writes out what was held back (an unfinished line, an unfinished string).
    pub fn finish(&mut self, out: &mut impl BufMut) {
        match &mut self.kind {
            Kind::Json(j) => j.finish(out, &mut self.masked),
            Kind::Text(t) => t.feed(&[], out, &mut self.masked, true),
            Kind::Premasked(_) => {}
        }
    }
}

/// Writes the masked form of `value`, one masked token per line so line structure survives.
fn put_masked(value: &[u8], out: &mut impl BufMut, count: &mut u32) {
    let mut first = true;
    for line in value.split(|&b| b == b'\n') {
        if !first {
            out.put_u8(b'\n');
        }
        first = false;
        if !line.is_empty() {
            out.put_slice(masked(line).as_bytes());
            *count += 1;
        }
    }
}

/// Runs the detectors over `text`, writing it with every finding masked. Returns whether a
/// private key was left open at the end.
fn scan_onto(spec: &MaskSpec, text: &[u8], out: &mut impl BufMut, count: &mut u32) -> bool {
    let Some(scanner) = spec.scanner() else {
        out.put_slice(text);
        return false;
    };
    let mut at = 0;
    let open = scanner.find(text, |r| {
        out.put_slice(&text[at..r.start]);
        put_masked(&text[r.clone()], out, count);
        at = r.end;
    });
    out.put_slice(&text[at..]);
    open
}

struct TextMasker {
    spec: Arc<MaskSpec>,
    /// The unfinished last line.
    pending: Vec<u8>,
    /// Inside a private key whose footer has not come yet: every line is masked.
    in_key: bool,
}

impl TextMasker {
    fn feed(&mut self, input: &[u8], out: &mut impl BufMut, count: &mut u32, eof: bool) {
        // Whole lines go straight from `input` when nothing is pending (no copy).
        let (region, rest): (&[u8], &[u8]) = if self.pending.is_empty() {
            match memrchr(input) {
                Some(nl) if !eof => (&input[..=nl], &input[nl + 1..]),
                _ if eof || input.len() > LINE_MAX => (input, &[]),
                _ => (&[], input),
            }
        } else {
            self.pending.extend_from_slice(input);
            let pending = std::mem::take(&mut self.pending);
            let cut = if eof || pending.len() > LINE_MAX {
                Some(pending.len())
            } else {
                memrchr(&pending).map(|nl| nl + 1)
            };
            match cut {
                Some(c) => {
                    self.scan(&pending[..c], out, count);
                    self.pending = pending[c..].to_vec();
                }
                None => self.pending = pending,
            }
            return;
        };
        self.scan(region, out, count);
        self.pending.extend_from_slice(rest);
    }

    fn scan(&mut self, mut text: &[u8], out: &mut impl BufMut, count: &mut u32) {
        if text.is_empty() {
            return;
        }
        if self.in_key {
            // The key material runs to its footer line; mask through the footer.
            match find_sub(text, PEM_END_MARK) {
                Some(end) => {
                    let line_end = text[end..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(text.len(), |p| end + p);
                    put_masked(&text[..line_end], out, count);
                    text = &text[line_end..];
                    self.in_key = false;
                }
                None => {
                    put_masked(text, out, count);
                    return;
                }
            }
        }
        self.in_key = scan_onto(&self.spec, text, out, count);
    }
}

fn memrchr(b: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', b)
}

enum Frame {
    Object {
        expecting_key: bool,
        key: Vec<u8>,
        /// For an item of an `env` list: its `name`, once seen.
        env_name: Option<Vec<u8>>,
        env_item: bool,
    },
    Array {
        /// The list is the value of an `env` key.
        env: bool,
    },
}

/// What happens to the string being read.
#[derive(PartialEq, Eq)]
enum StringMode {
    Copy,
    /// Masked whole: its bytes feed `hasher`, the masked form is written at its end.
    Mask,
    /// Held in `buf` and scanned by the detectors at its end.
    Scan,
}

struct JsonMasker {
    secrets: bool,
    spec: Option<Arc<MaskSpec>>,
    stack: Vec<Frame>,
    /// Depth at which the masked container (`data: {…}`, a field rule's object) was opened.
    mask_depth: Option<usize>,
    in_string: bool,
    escape: bool,
    string_is_key: bool,
    mode: StringMode,
    /// The string value being scanned.
    buf: Vec<u8>,
    /// The string value being masked, hashed as it is read.
    hasher: MaskHasher,
    /// The `name` string value being read in an env item (remembered for its `value`).
    reading_env_name: bool,
    key: Vec<u8>,
}

impl JsonMasker {
    fn new(secrets: bool, spec: Option<Arc<MaskSpec>>) -> Self {
        Self {
            secrets,
            spec,
            stack: Vec::new(),
            mask_depth: None,
            in_string: false,
            escape: false,
            string_is_key: false,
            mode: StringMode::Copy,
            buf: Vec::new(),
            hasher: MaskHasher::default(),
            reading_env_name: false,
            key: Vec::new(),
        }
    }

    /// The key the next value belongs to, if the innermost container is an object.
    fn current_key(&self) -> Option<&[u8]> {
        match self.stack.last() {
            Some(Frame::Object { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// Whether the value starting now is masked whole by a field rule or an env name.
    fn value_masked_by_rule(&self) -> bool {
        let Some(spec) = &self.spec else {
            return false;
        };
        if !spec.env_names.is_empty()
            && let Some(Frame::Object {
                key,
                env_name: Some(name),
                env_item: true,
                ..
            }) = self.stack.last()
            && key.as_slice() == b"value"
            && let Ok(name) = std::str::from_utf8(name)
            && spec.env_names.iter().any(|p| p.matches(name))
        {
            return true;
        }
        !spec.fields.is_empty() && self.field_matches(&spec.fields)
    }

    fn field_matches(&self, fields: &[FieldPath]) -> bool {
        let path: Vec<Option<&[u8]>> = self
            .stack
            .iter()
            .map(|f| match f {
                Frame::Object { key, .. } => Some(key.as_slice()),
                Frame::Array { .. } => None,
            })
            .collect();
        fields.iter().any(|f| f.matches(&path))
    }

    fn feed(&mut self, input: &[u8], out: &mut impl BufMut, count: &mut u32) {
        let mut i = 0;
        while i < input.len() {
            if self.in_string {
                // Runs of plain string bytes (up to a quote or a backslash) are taken at once:
                // nearly every byte of a Secret list is one. An env `name` is rare and goes
                // byte by byte.
                if !self.escape && !self.reading_env_name {
                    let rest = &input[i..];
                    let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                    self.string_run(&rest[..run], out);
                    i += run;
                    if i == input.len() {
                        break;
                    }
                }
                self.string_byte(input[i], out, count);
                i += 1;
                continue;
            }
            let b = input[i];
            i += 1;
            match b {
                b'"' => {
                    self.in_string = true;
                    self.string_is_key = matches!(
                        self.stack.last(),
                        Some(Frame::Object {
                            expecting_key: true,
                            ..
                        })
                    );
                    self.mode = StringMode::Copy;
                    if self.string_is_key {
                        self.key.clear();
                    } else if self.mask_depth.is_some()
                        || (self.secrets && self.current_key() == Some(LAST_APPLIED))
                        || self.value_masked_by_rule()
                    {
                        self.mode = StringMode::Mask;
                    } else if self.spec.as_ref().is_some_and(|s| s.scanner().is_some()) {
                        self.mode = StringMode::Scan;
                    }
                    self.reading_env_name = !self.string_is_key
                        && matches!(
                            self.stack.last(),
                            Some(Frame::Object { env_item: true, key, .. }) if key.as_slice() == b"name"
                        );
                    self.buf.clear();
                    out.put_u8(b);
                }
                b'{' | b'[' => {
                    if self.mask_depth.is_none()
                        && ((self.secrets
                            && b == b'{'
                            && matches!(self.current_key(), Some(b"data" | b"stringData")))
                            || self.value_masked_by_rule())
                    {
                        self.mask_depth = Some(self.stack.len() + 1);
                    }
                    let env_item = matches!(self.stack.last(), Some(Frame::Array { env: true }));
                    let env = self.current_key() == Some(b"env");
                    self.stack.push(if b == b'{' {
                        Frame::Object {
                            expecting_key: true,
                            key: Vec::new(),
                            env_name: None,
                            env_item,
                        }
                    } else {
                        Frame::Array { env }
                    });
                    out.put_u8(b);
                }
                b'}' | b']' => {
                    if self.mask_depth == Some(self.stack.len()) {
                        self.mask_depth = None;
                    }
                    self.stack.pop();
                    out.put_u8(b);
                }
                b':' => {
                    if let Some(Frame::Object { expecting_key, .. }) = self.stack.last_mut() {
                        *expecting_key = false;
                    }
                    out.put_u8(b);
                }
                b',' => {
                    if let Some(Frame::Object {
                        expecting_key, key, ..
                    }) = self.stack.last_mut()
                    {
                        *expecting_key = true;
                        key.clear();
                    }
                    out.put_u8(b);
                }
                _ => out.put_u8(b),
            }
        }
    }

    /// Plain bytes inside a string (no quote, no backslash, not after a backslash).
    fn string_run(&mut self, run: &[u8], out: &mut impl BufMut) {
        if self.string_is_key {
            let room = (KEY_MAX + 1).saturating_sub(self.key.len());
            self.key.extend_from_slice(&run[..run.len().min(room)]);
            out.put_slice(run);
            return;
        }
        match self.mode {
            StringMode::Copy => out.put_slice(run),
            StringMode::Mask => self.hasher.update(run),
            StringMode::Scan => {
                self.buf.extend_from_slice(run);
                self.scan_limit();
            }
        }
    }

    /// A string too long to scan is masked whole (fail closed).
    fn scan_limit(&mut self) {
        if self.buf.len() > STRING_MAX {
            self.hasher.update(&self.buf);
            self.buf.clear();
            self.mode = StringMode::Mask;
        }
    }

    fn string_byte(&mut self, b: u8, out: &mut impl BufMut, count: &mut u32) {
        let closing = !self.escape && b == b'"';
        self.escape = !self.escape && b == b'\\';
        if closing {
            self.in_string = false;
            self.end_string(out, count);
            out.put_u8(b);
            return;
        }
        if self.string_is_key {
            if self.key.len() <= KEY_MAX {
                self.key.push(b);
            }
            out.put_u8(b);
            return;
        }
        if self.reading_env_name && self.buf.len() <= KEY_MAX && self.mode != StringMode::Mask {
            // Remembered alongside whatever the mode does with it.
            if let Some(Frame::Object { env_name, .. }) = self.stack.last_mut() {
                env_name.get_or_insert_with(Vec::new).push(b);
            }
        }
        match self.mode {
            StringMode::Copy => out.put_u8(b),
            StringMode::Mask => self.hasher.update(&[b]),
            StringMode::Scan => {
                self.buf.push(b);
                self.scan_limit();
            }
        }
    }

    fn end_string(&mut self, out: &mut impl BufMut, count: &mut u32) {
        if self.string_is_key {
            if let Some(Frame::Object { key, .. }) = self.stack.last_mut() {
                std::mem::swap(key, &mut self.key);
            }
            return;
        }
        self.reading_env_name = false;
        match self.mode {
            StringMode::Copy => {}
            StringMode::Mask => {
                out.put_slice(self.hasher.finish().as_bytes());
                *count += 1;
            }
            StringMode::Scan => {
                if let Some(spec) = &self.spec {
                    scan_onto(spec, &self.buf, out, count);
                }
            }
        }
        self.buf.clear();
        self.mode = StringMode::Copy;
    }

    /// A body cut inside a string: a masked value is dropped (never written in part), a scanned
    /// one is scanned as far as it goes.
    fn finish(&mut self, out: &mut impl BufMut, count: &mut u32) {
        if self.in_string
            && self.mode == StringMode::Scan
            && let Some(spec) = &self.spec
        {
            scan_onto(spec, &self.buf, out, count);
        }
        self.buf.clear();
        self.hasher = MaskHasher::default();
        self.mode = StringMode::Copy;
    }
}

/// True for content types the masker understands (JSON objects, Tables, watch streams, JSON
/// patches).
pub fn is_json(content_type: &str) -> bool {
    let ct = content_type.trim().to_ascii_lowercase();
    ct.starts_with("application/json")
        || ct.starts_with("application/merge-patch+json")
        || ct.starts_with("application/strategic-merge-patch+json")
        || ct.starts_with("application/json-patch+json")
        || ct.starts_with("application/apply-patch+yaml")
}

/// Text bodies (`kubectl logs` is `text/plain`).
fn is_text(content_type: &str) -> bool {
    content_type
        .trim()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("text/"))
}

/// Whether bodies of this request may carry Secret values and must be masked when stored.
pub fn applies_to(kube: &gatehouse_proto::v1::KubeRequest) -> bool {
    kube.resource == "secrets" && kube.api_group.is_empty()
}

/// Masks a whole captured body record (already capped). A body the plan cannot read
/// (protobuf, YAML) is not stored at all, and marked truncated.
pub fn record(mut body: gatehouse_proto::v1::Body, plan: &MaskPlan) -> gatehouse_proto::v1::Body {
    match plan.masker(&body.content_type, &body.content_encoding) {
        Some(mut m) => {
            let mut out = Vec::with_capacity(body.data.len());
            m.feed(&body.data, &mut out);
            m.finish(&mut out);
            body.data = out.into();
            body.masked_values = m.masked();
        }
        None if !body.data.is_empty() => {
            body.data = bytes::Bytes::new();
            body.truncated = true;
        }
        None => {}
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut m: Masker, input: &[u8], chunk: usize) -> (String, u32) {
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            m.feed(c, &mut out);
        }
        m.finish(&mut out);
        (String::from_utf8_lossy(&out).into_owned(), m.masked())
    }

    fn mask(input: &[u8], chunk: usize) -> (String, u32) {
        run(Masker::new(), input, chunk)
    }

    fn h(value: &str) -> String {
        masked(value.as_bytes())
    }

    const SECRET: &str = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}\n","team":"payments"},"managedFields":[{"fieldsV1":{"f:data":{"f:password":{}}}}]},"data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"stringData":{"token":"s3cr\"et"},"type":"Opaque"}"#;

    #[test]
    fn secret_values_are_masked_whatever_the_chunking() {
        let want = SECRET
            .replace(
                "aHVudGVyMg==\",\"user",
                &format!("{}\",\"user", h("aHVudGVyMg==")),
            )
            .replace("\"YWRtaW4=\"", &format!("\"{}\"", h("YWRtaW4=")))
            .replace(r#""s3cr\"et""#, &format!("\"{}\"", h(r#"s3cr\"et"#)))
            .replace(
                r#""{\"data\":{\"password\":\"aHVudGVyMg==\"}}\n""#,
                &format!(
                    "\"{}\"",
                    h(r#"{\"data\":{\"password\":\"aHVudGVyMg==\"}}\n"#)
                ),
            );
        for chunk in [1, 2, 3, 7, 64, SECRET.len()] {
            let (out, n) = mask(SECRET.as_bytes(), chunk);
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(n, 4);
            assert!(!out.contains("aHVudGVyMg=="), "{out}");
            assert!(out.contains(r#""team":"payments""#));
            assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
        }
        // Equal secrets stay comparable.
        assert_eq!(h("aHVudGVyMg=="), h("aHVudGVyMg=="));
    }

    #[test]
    fn lists_and_watch_events() {
        let list = r#"{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"djE="}},{"metadata":{"name":"b","labels":{"data":"x"}},"data":{"k":"djI=","l":"djM="}}]}"#;
        let (out, n) = mask(list.as_bytes(), 5);
        assert_eq!(n, 3);
        for v in ["djE=", "djI=", "djM="] {
            assert!(!out.contains(v), "{out}");
        }
        assert!(
            out.contains(r#""labels":{"data":"x"}"#),
            "only data objects: {out}"
        );
        let watch = "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"djE=\"}}}\n{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"djI=\"}}}\n";
        let (out, n) = mask(watch.as_bytes(), 4);
        assert_eq!(n, 2);
        assert_eq!(out.lines().count(), 2);
        assert!(!out.contains("djE=") && !out.contains("djI="), "{out}");
    }

    #[test]
    fn a_truncated_body_leaks_no_partial_value() {
        let cut = &SECRET[..SECRET.find("aHVudGVyMg==\",\"user").unwrap_or(0) + 6];
        let (out, n) = mask(cut.as_bytes(), 3);
        assert_eq!(n, 1, "the last-applied annotation was complete");
        assert!(!out.contains("aHVudG"), "{out}");
        // Not JSON at all: passed through.
        let (out, n) = mask(b"not json", 2);
        assert_eq!((out.as_str(), n), ("not json", 0));
    }
}

#[cfg(test)]
mod configured {
    use super::*;

    fn run(mut m: Masker, input: &str, chunk: usize) -> (String, u32) {
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(chunk.max(1)) {
            m.feed(c, &mut out);
        }
        m.finish(&mut out);
        (String::from_utf8_lossy(&out).into_owned(), m.masked())
    }

    fn spec(yaml: &str) -> Arc<MaskSpec> {
        Arc::new(serde_yaml::from_str(yaml).unwrap())
    }

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn detectors_in_json_string_values() {
        let body = format!(
            r#"{{"kind":"ConfigMap","data":{{"env":"export KEY={AWS} # note","plain":"hello"}},"metadata":{{"name":"{AWS}"}}}}"#
        );
        for chunk in [1, 5, body.len()] {
            let (out, n) = run(Masker::json(false, Some(spec("{}"))), &body, chunk);
            assert!(!out.contains(AWS), "{out}");
            assert_eq!(n, 2, "{out}");
            assert!(out.contains(&format!("export KEY={} # note", masked(AWS.as_bytes()))));
            assert!(out.contains(r#""plain":"hello""#));
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "{out}"
            );
        }
        // Without Secret masking a ConfigMap's `data` is not masked as such.
        let (out, n) = run(Masker::json(false, Some(spec("{detectors: []}"))), &body, 3);
        assert_eq!((out, n), (body.clone(), 0));
    }

    #[test]
    fn field_rules_and_env_names() {
        let s = spec(
            r#"{detectors: [], fields: ["spec.containers[*].args", "metadata.annotations[\"x.io/token\"]"], env_names: ["*PASSWORD*"]}"#,
        );
        let pod = r#"{"items":[{"metadata":{"annotations":{"x.io/token":"t0k","other":"keep"}},"spec":{"containers":[{"name":"app","args":["--pw","hunter2"],"env":[{"name":"DB_PASSWORD","value":"pa55"},{"name":"MODE","value":"fast"}]}]}}]}"#;
        for chunk in [1, 4, pod.len()] {
            let (out, n) = run(Masker::json(false, Some(s.clone())), pod, chunk);
            for gone in ["t0k", "hunter2", "--pw", "pa55"] {
                assert!(!out.contains(gone), "{gone}: {out}");
            }
            for kept in ["keep", "fast", "DB_PASSWORD", "\"name\":\"app\""] {
                assert!(out.contains(kept), "{kept}: {out}");
            }
            assert_eq!(n, 4);
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "{out}"
            );
        }
    }

    #[test]
    fn log_lines_whatever_the_chunking() {
        let log = format!(
            "line one\nexport AWS_ACCESS_KEY_ID={AWS}\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQE\n-----END PRIVATE KEY-----\nafter\nno newline at end {AWS}"
        );
        for chunk in [1, 3, 17, log.len()] {
            let (out, n) = run(Masker::text(spec("{}")), &log, chunk);
            for gone in [AWS, "MIIEvQIBADANBg", "kqhkiG9w0BAQE"] {
                assert!(!out.contains(gone), "{gone} chunk {chunk}: {out}");
            }
            assert_eq!(out.lines().count(), log.lines().count(), "{out}");
            assert!(
                out.starts_with("line one\nexport AWS_ACCESS_KEY_ID=***"),
                "{out}"
            );
            assert!(out.contains("-----BEGIN PRIVATE KEY-----\n"), "{out}");
            assert!(out.contains("\nafter\nno newline at end ***"), "{out}");
            assert_eq!(n, 5, "chunk {chunk}: {out}");
        }
    }

    #[test]
    fn plans_pick_the_masker_by_content_type() {
        let kube = |resource: &str| gatehouse_proto::v1::KubeRequest {
            resource: resource.into(),
            ..Default::default()
        };
        let p = MaskPlan::new(&kube("secrets"), None);
        assert!(p.masker("application/json", "").is_some());
        assert!(
            p.masker("application/vnd.kubernetes.protobuf", "")
                .is_none()
        );
        assert!(p.masker("application/json", "gzip").is_none());
        let p = MaskPlan::new(&kube("pods"), Some(spec("{dlp: true}")));
        assert!(p.dlp() && p.active());
        assert!(p.masker("text/plain", "").is_some());
        assert!(!MaskPlan::new(&kube("pods"), None).active());
    }

    #[test]
    fn accept_drops_protobuf() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf, application/json"),
        );
        h.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        prefer_json(&mut h);
        assert_eq!(h[http::header::ACCEPT], "application/json");
        assert!(h.get(http::header::ACCEPT_ENCODING).is_none());
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch"),
        );
        prefer_json(&mut h);
        assert_eq!(h[http::header::ACCEPT], "application/json");
    }
}
