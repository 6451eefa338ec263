//! TTY stdin line rules: the keys typed into an interactive exec/attach are assembled into lines
//! the way a terminal's line editor would (best effort, see [`LineAssembler`]), and each line is
//! checked against the policy's `stdin` rules before its Enter goes on to the container.
use crate::policy::LivePolicy;
use gatehouse_policy::{Decision, Request};
use std::sync::Arc;

/// Longest line kept; keys past it are dropped from the checked line (the rule still sees the
/// first 4 KiB, which is where a command's name and flags are).
pub const LINE_MAX: usize = 4096;

/// What replaces the Enter of a refused line: Ctrl-E (readline: end of line) and Ctrl-U
/// (readline and the kernel's canonical mode: erase the line), then the Enter itself, so the
/// shell receives an empty line and prints a fresh prompt. In canonical mode Ctrl-E is an
/// ordinary character that Ctrl-U erases with the rest.
pub const CANCEL: &[u8] = b"\x05\x15";

/// The stdin rules of one stream: the policy (read at each line, so a reload applies) and the
/// request that opened the stream.
pub struct StdinRules {
    pub policy: Arc<LivePolicy>,
    pub request: Request,
}

impl std::fmt::Debug for StdinRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinRules")
            .field("user", &self.request.user)
            .finish_non_exhaustive()
    }
}

impl StdinRules {
    /// The deny decision for `line`, if a stdin rule refuses it.
    pub fn check(&self, line: &str) -> Option<Decision> {
        self.policy.current().check_line(&self.request, line)
    }
}

/// Escape sequence state: keys like arrows arrive as `ESC [ … final` or `ESC O x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Esc {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` parameters, until a final byte 0x40..=0x7E.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

/// Assembles typed bytes into lines as a line editor would. Modelled: printable text (UTF-8),
/// Backspace/DEL (one character), Ctrl-U (the line), Ctrl-W (the last word), Ctrl-C (abandons the
/// line), Enter as CR, LF or CR LF. Approximated, because only the shell knows the result:
/// cursor movement and history recall (escape sequences are dropped, so the checked line is the
/// keys typed, not what an edited or recalled line became), Tab completion (ignored) and other
/// control keys (ignored).
#[derive(Debug, Default)]
pub struct LineAssembler {
    line: Vec<u8>,
    esc: Esc,
    /// The last byte was CR: a LF right after it belongs to the same Enter.
    after_cr: bool,
}

impl LineAssembler {
    /// Feeds typed bytes; returns each line completed in them with the index of its Enter.
    pub fn feed(&mut self, data: &[u8]) -> Vec<(usize, String)> {
        let mut done = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match self.esc {
                Esc::Start => {
                    self.esc = match b {
                        b'[' => Esc::Csi,
                        b'O' => Esc::Ss3,
                        _ => Esc::None,
                    };
                    continue;
                }
                Esc::Csi => {
                    if (0x40..=0x7E).contains(&b) {
                        self.esc = Esc::None;
                    }
                    continue;
                }
                Esc::Ss3 => {
                    self.esc = Esc::None;
                    continue;
                }
                Esc::None => {}
            }
            match b {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = String::from_utf8_lossy(&self.line).into_owned();
                    self.line.clear();
                    done.push((i, line));
                }
                0x1B => self.esc = Esc::Start,
                0x7F | 0x08 => {
                    // One character: UTF-8 continuation bytes go with their lead byte.
                    while let Some(c) = self.line.pop() {
                        if c & 0xC0 != 0x80 {
                            break;
                        }
                    }
                }
                0x15 | 0x03 => self.line.clear(),
                0x17 => {
                    while self.line.last() == Some(&b' ') {
                        self.line.pop();
                    }
                    while self.line.last().is_some_and(|c| *c != b' ') {
                        self.line.pop();
                    }
                }
                b if b < 0x20 => {}
                b => {
                    if self.line.len() < LINE_MAX {
                        self.line.push(b);
                    }
                }
            }
        }
        done
    }
}

/// `data` with [`CANCEL`] put before each Enter at `enters` (ascending indexes).
pub fn cancel_lines(data: &[u8], enters: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + enters.len() * CANCEL.len());
    let mut at = 0;
    for &i in enters {
        out.extend_from_slice(&data[at..i]);
        out.extend_from_slice(CANCEL);
        at = i;
    }
    out.extend_from_slice(&data[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut a = LineAssembler::default();
        chunks
            .iter()
            .flat_map(|c| a.feed(c))
            .map(|(_, l)| l)
            .collect()
    }

    #[test]
    fn keys_typed_one_by_one_make_a_line_at_enter() {
        let keys: Vec<&[u8]> = vec![b"r", b"m", b" ", b"-", b"r", b"f", b" ", b"/", b"\r"];
        assert_eq!(lines(&keys), ["rm -rf /"]);
        let mut a = LineAssembler::default();
        assert_eq!(
            a.feed(b"ls\rcat x\r\n"),
            [(2, "ls".to_string()), (8, "cat x".to_string())]
        );
        // The LF of that CR LF is not a second, empty line.
        assert!(a.feed(b"").is_empty());
        assert_eq!(lines(&[b"a\n\nb\n"]), ["a", "", "b"]);
    }

    #[test]
    fn editing_keys_change_the_line_as_a_shell_would() {
        assert_eq!(lines(&[b"rm -rX\x7ff /\r"]), ["rm -rf /"]);
        assert_eq!(lines(&[b"rm -rX\x08f /\r"]), ["rm -rf /"]);
        assert_eq!(lines(&[b"echo hi\x15rm -rf /\r"]), ["rm -rf /"]);
        assert_eq!(lines(&[b"echo hi  \x17rm\r"]), ["echo rm"]);
        assert_eq!(lines(&[b"rm -rf /\x03ls\r"]), ["ls"]);
        // One Backspace removes one character, however many bytes it is.
        assert_eq!(lines(&["caf\u{e9}\x7fe\r".as_bytes()]), ["cafe"]);
        // Backspace on an empty line is harmless.
        assert_eq!(lines(&[b"\x7f\x7fls\r"]), ["ls"]);
    }

    #[test]
    fn escape_sequences_are_dropped_even_split_across_frames() {
        // Left arrow (CSI D), an SS3 arrow and a bracketed-paste marker around the text.
        assert_eq!(
            lines(&[b"ls\x1b[D\x1bOA", b"\x1b[200~ -l\x1b[2", b"01~\r"]),
            ["ls -l"]
        );
    }

    #[test]
    fn a_line_is_bounded() {
        let long = vec![b'a'; LINE_MAX * 2];
        let got = lines(&[&long, b"\r"]);
        assert_eq!(got[0].len(), LINE_MAX);
    }

    #[test]
    fn a_cancelled_line_gets_ctrl_e_ctrl_u_before_its_enter() {
        assert_eq!(
            cancel_lines(b"ls\rrm -rf /\rpwd", &[11]),
            b"ls\rrm -rf /\x05\x15\rpwd"
        );
        assert_eq!(cancel_lines(b"x\ry\r", &[1, 3]), b"x\x05\x15\ry\x05\x15\r");
    }
}
