//! Detectors over exec/attach output: each output channel is masked as a stream, so a secret
//! split across frames is still found. An unfinished word (the bytes after the last whitespace,
//! at most [`TAIL_MAX`]) is held back until the next frame shows whether it is a secret.
use gatehouse_policy::mask::{MaskSpec, PEM_END_MARK, find_sub, masked};
use std::sync::Arc;

/// Longest unfinished word held back; a longer run is passed on except its last `TAIL_MAX`
/// bytes (detector matches are far shorter, bar JWTs of more than 4 KiB).
pub const TAIL_MAX: usize = 4096;
/// Bytes already passed on that the next scan still sees, so a match that began in them (a
/// `Bearer` word, a PEM header split at a space) is masked in the rest.
const CONTEXT: usize = 256;

/// The masker of one output channel.
pub struct OutputMasker {
    spec: Arc<MaskSpec>,
    held: Vec<u8>,
    context: Vec<u8>,
    /// Inside a private key whose footer has not come yet: everything is masked.
    in_key: bool,
    /// Values masked so far.
    pub masked: u32,
}

impl OutputMasker {
    pub fn new(spec: Arc<MaskSpec>) -> Self {
        OutputMasker {
            spec,
            held: Vec::new(),
            context: Vec::new(),
            in_key: false,
            masked: 0,
        }
    }

    /// Masks `data`, returning what can be passed on now; `flush` passes on everything held
    /// (the channel ends, or the command's status came).
    pub fn feed(&mut self, data: &[u8], flush: bool) -> Vec<u8> {
        let mut text = std::mem::take(&mut self.held);
        text.extend_from_slice(data);
        let cut = if flush {
            text.len()
        } else {
            let word = text
                .iter()
                .rposition(|b| b.is_ascii_whitespace())
                .map_or(0, |p| p + 1);
            word.max(text.len().saturating_sub(TAIL_MAX))
        };
        self.held = text.split_off(cut);
        let mut out = Vec::with_capacity(text.len());
        self.scan(&text, &mut out);
        // The context is the original text: detectors must see what the program printed.
        self.context.extend_from_slice(&text);
        if self.context.len() > CONTEXT {
            self.context.drain(..self.context.len() - CONTEXT);
        }
        out
    }

    /// Whether bytes are held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn scan(&mut self, mut text: &[u8], out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        if self.in_key {
            match find_sub(text, PEM_END_MARK) {
                Some(end) => {
                    let line_end = text[end..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(text.len(), |p| end + p);
                    self.put_masked(&text[..line_end], out);
                    text = &text[line_end..];
                    self.in_key = false;
                    // The key's header is in the context: it must not be found again.
                    self.context.clear();
                }
                None => {
                    self.put_masked(text, out);
                    return;
                }
            }
        }
        let Some(scanner) = self.spec.scanner() else {
            out.extend_from_slice(text);
            return;
        };
        let ctx = self.context.len();
        let mut all = Vec::with_capacity(ctx + text.len());
        all.extend_from_slice(&self.context);
        all.extend_from_slice(text);
        let mut at = ctx;
        let mut found = Vec::new();
        let open = scanner.find(&all, |r| {
            // Matches wholly in the context were dealt with when it was passed on.
            if r.end > ctx {
                found.push(r.start.max(ctx)..r.end);
            }
        });
        for r in found {
            out.extend_from_slice(&all[at..r.start]);
            self.put_masked(&all[r.clone()], out);
            at = r.end;
        }
        out.extend_from_slice(&all[at..]);
        self.in_key = open;
    }

    /// The masked form of `value`, one token per line so the output keeps its lines.
    fn put_masked(&mut self, value: &[u8], out: &mut Vec<u8>) {
        for (i, line) in value.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            // A CR before the LF (terminal output) stays, so lines still end as they did.
            let (body, cr) = match line.strip_suffix(b"\r") {
                Some(b) => (b, true),
                None => (line, false),
            };
            if !body.is_empty() {
                out.extend_from_slice(masked(body).as_bytes());
                self.masked += 1;
            }
            if cr {
                out.push(b'\r');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, u32) {
        let mut m = OutputMasker::new(Arc::new(MaskSpec::default()));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.feed(c, false));
        }
        out.extend(m.feed(b"", true));
        (out, m.masked)
    }

    #[test]
    fn a_key_in_one_frame_is_masked_and_the_rest_kept() {
        let (out, n) = run(&[format!("key={KEY} ok\r\n").as_bytes()]);
        let want = format!("key={} ok\r\n", masked(KEY.as_bytes()));
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(n, 1);
    }

    #[test]
    fn a_key_split_over_two_frames_is_still_masked() {
        let (a, b) = KEY.split_at(9);
        let mut m = OutputMasker::new(Arc::new(MaskSpec::default()));
        let first = m.feed(format!("id {a}").as_bytes(), false);
        // The unfinished word waits; the finished one goes on at once.
        assert_eq!(first, b"id ");
        assert!(m.holding());
        let second = m.feed(format!("{b}\n$ ").as_bytes(), false);
        let want = format!("{}\n$ ", masked(KEY.as_bytes()));
        assert_eq!(String::from_utf8(second).unwrap(), want);
        assert!(!m.holding(), "a prompt ending in a space is not held");
    }

    #[test]
    fn a_bearer_token_after_a_frame_boundary_is_masked_through_the_context() {
        let (out, n) = run(&[b"Authorization: Bearer ", b"abcdefghijklmnop\n"]);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
        assert!(out.starts_with("Authorization: Bearer ***"), "{out}");
        assert_eq!(n, 1);
    }

    #[test]
    fn a_private_key_over_many_frames_is_masked_to_its_footer() {
        let (out, _) = run(&[
            b"-----BEGIN RSA ",
            b"PRIVATE KEY-----\nMIIEow",
            b"IBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nafter\n",
        ]);
        let out = String::from_utf8(out).unwrap();
        assert!(
            !out.contains("MIIEow") && !out.contains("IBAAKCAQEA"),
            "{out}"
        );
        assert!(!out.contains("abc\n"), "{out}");
        assert!(out.ends_with("after\n"), "{out}");
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut m = OutputMasker::new(Arc::new(MaskSpec::default()));
        let out = m.feed(&vec![b'x'; TAIL_MAX * 3], false);
        assert_eq!(out.len(), TAIL_MAX * 2);
        assert!(m.holding());
        assert_eq!(m.feed(b"", true).len(), TAIL_MAX);
    }
}
