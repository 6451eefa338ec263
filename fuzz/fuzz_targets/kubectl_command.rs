//! The kubectl command reconstructor (`gateway/src/transcript/command.rs`) behind the request
//! parser (`request_info.rs`) the gateway runs first: any method, path, query and body give a
//! command that starts with `kubectl` and splits back into words as a POSIX shell would, so a
//! transcript line can never smuggle unquoted shell syntax.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse_gateway::transcript::{command, request_info};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: u8,
    path: &'a str,
    query: Option<&'a str>,
    json: bool,
    body: &'a [u8],
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT",
];

fuzz_target!(|input: Input<'_>| {
    let method: http::Method = METHODS[usize::from(input.method) % METHODS.len()]
        .parse()
        .expect("method");
    let req = request_info::parse(&method, input.path, input.query);
    let content_type = if input.json {
        "application/json"
    } else {
        "application/merge-patch+json"
    };
    let line = command::reconstruct(&req, content_type, input.body);
    let words = shell_words(&line).unwrap_or_else(|| panic!("not a well-quoted command: {line:?}"));
    assert_eq!(
        words.first().map(String::as_str),
        Some("kubectl"),
        "{line:?}"
    );
});

/// Splits `line` as `sh` would, accepting only what the reconstructor may produce: bare words of
/// shell-safe characters and single-quoted strings (with `'\''` for a quote).
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            match c {
                ' ' => break,
                '\'' => {
                    chars.next();
                    quoted = true;
                    loop {
                        match chars.next()? {
                            '\'' => break,
                            c => word.push(c),
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    if chars.next()? != '\'' {
                        return None;
                    }
                    word.push('\'');
                    quoted = true;
                }
                c if c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c) => {
                    chars.next();
                    word.push(c);
                }
                _ => return None,
            }
        }
        if word.is_empty() && !quoted {
            return None;
        }
        words.push(word);
        if chars.next().is_some() && chars.peek().is_none() {
            return None;
        }
    }
    Some(words)
}
