//! Streaming masking of Secret values in JSON bodies before they are stored: every string under
//! a `data` or `stringData` object, and `last-applied-configuration` annotations, become
//! `"***<sha256 prefix>"`. One pass, byte by byte, whatever the chunking; nothing is buffered.
use bytes::BufMut;
use sha2::{Digest, Sha256};

/// The annotation `kubectl apply` stores the whole applied object in (Secret values included).
const LAST_APPLIED: &[u8] = b"kubectl.kubernetes.io/last-applied-configuration";
/// Longest key remembered; longer keys are never ones we mask under.
const KEY_MAX: usize = 64;

enum Frame {
    Object { expecting_key: bool, key: Vec<u8> },
    Array,
}

/// An incremental JSON masker. Feed it the body in order; what it writes is the same JSON with
/// the masked strings replaced. Invalid or truncated JSON is passed on as it is (masking what
/// it can), so it never fails.
#[derive(Default)]
pub struct Masker {
    stack: Vec<Frame>,
    /// Depth at which the masked object (`data: {…}`) was opened.
    mask_depth: Option<usize>,
    in_string: bool,
    escape: bool,
    string_is_key: bool,
    /// Inside a string being masked: its bytes feed the hash instead of the output.
    hashing: Option<Sha256>,
    key: Vec<u8>,
    masked: u32,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values masked so far.
    pub fn masked(&self) -> u32 {
        self.masked
    }

    /// The key the next value belongs to, if the innermost container is an object.
    fn current_key(&self) -> Option<&[u8]> {
        match self.stack.last() {
            Some(Frame::Object { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// Masks `input` onto `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut impl BufMut) {
        for &b in input {
            if self.in_string {
                self.string_byte(b, out);
                continue;
            }
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
                    if self.string_is_key {
                        self.key.clear();
                    } else if self.mask_depth.is_some() || self.current_key() == Some(LAST_APPLIED)
                    {
                        self.hashing = Some(Sha256::new());
                    }
                    out.put_u8(b);
                }
                b'{' => {
                    if self.mask_depth.is_none()
                        && matches!(self.current_key(), Some(b"data" | b"stringData"))
                    {
                        self.mask_depth = Some(self.stack.len() + 1);
                    }
                    self.stack.push(Frame::Object {
                        expecting_key: true,
                        key: Vec::new(),
                    });
                    out.put_u8(b);
                }
                b'[' => {
                    self.stack.push(Frame::Array);
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
                    if let Some(Frame::Object { expecting_key, key }) = self.stack.last_mut() {
                        *expecting_key = true;
                        key.clear();
                    }
                    out.put_u8(b);
                }
                _ => out.put_u8(b),
            }
        }
    }

    fn string_byte(&mut self, b: u8, out: &mut impl BufMut) {
        let closing = !self.escape && b == b'"';
        self.escape = !self.escape && b == b'\\';
        if closing {
            self.in_string = false;
            if let Some(h) = self.hashing.take() {
                let digest = h.finalize();
                out.put_slice(b"***");
                out.put_slice(hex::encode(&digest[..4]).as_bytes());
                self.masked += 1;
            } else if self.string_is_key
                && let Some(Frame::Object { key, .. }) = self.stack.last_mut()
            {
                std::mem::swap(key, &mut self.key);
            }
            out.put_u8(b);
            return;
        }
        match &mut self.hashing {
            Some(h) => h.update([b]),
            None => {
                if self.string_is_key && self.key.len() <= KEY_MAX {
                    self.key.push(b);
                }
                out.put_u8(b);
            }
        }
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
}

/// Whether bodies of this request may carry Secret values and must be masked when stored.
pub fn applies_to(kube: &gatehouse_proto::v1::KubeRequest) -> bool {
    kube.resource == "secrets" && kube.api_group.is_empty()
}

/// Masks a whole captured body record (already capped). A body the masker cannot read
/// (protobuf, YAML) is not stored at all, and marked truncated.
pub fn record(mut body: gatehouse_proto::v1::Body) -> gatehouse_proto::v1::Body {
    if is_json(&body.content_type) && body.content_encoding.is_empty() {
        let mut m = Masker::new();
        let mut out = Vec::with_capacity(body.data.len());
        m.feed(&body.data, &mut out);
        body.data = out.into();
        body.masked_values = m.masked();
    } else if !body.data.is_empty() {
        body.data = bytes::Bytes::new();
        body.truncated = true;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(input: &[u8], chunk: usize) -> (String, u32) {
        let mut m = Masker::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            m.feed(c, &mut out);
        }
        (String::from_utf8_lossy(&out).into_owned(), m.masked())
    }

    fn h(value: &str) -> String {
        format!("***{}", hex::encode(&Sha256::digest(value.as_bytes())[..4]))
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
