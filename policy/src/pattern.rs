//! Value patterns of a rule: exact strings, globs (`*`, `?`) and anchored regexes (`/…/`), and
//! source patterns that also accept CIDR blocks.
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::net::IpAddr;

/// One string pattern. `*` matches any run of characters and `?` one character; a value
/// written between slashes (`/rm( -[a-z]+)* -rf/`) is a regex that must match the whole value.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Glob(String),
    Regex(regex::Regex),
}

impl Pattern {
    /// Compiles a pattern as written in the policy file.
    pub fn new(s: &str) -> Result<Self, String> {
        if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') {
            let body = &s[1..s.len() - 1];
            return regex::Regex::new(&format!("^(?:{body})$"))
                .map(Pattern::Regex)
                .map_err(|e| format!("invalid regex {s}: {e}"));
        }
        if s.contains(['*', '?']) {
            Ok(Pattern::Glob(s.to_string()))
        } else {
            Ok(Pattern::Exact(s.to_string()))
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == value,
            Pattern::Glob(p) => glob(p.as_bytes(), value.as_bytes()),
            Pattern::Regex(r) => r.is_match(value),
        }
    }

    /// The pattern as written (for explanations).
    pub fn as_written(&self) -> String {
        match self {
            Pattern::Exact(p) | Pattern::Glob(p) => p.clone(),
            Pattern::Regex(r) => {
                let s = r.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                format!("/{inner}/")
            }
        }
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(de::Error::custom)
    }
}

/// Glob match without allocation: `*` any run (including none), `?` exactly one byte.
fn glob(p: &[u8], v: &[u8]) -> bool {
    let (mut pi, mut vi) = (0, 0);
    // Where the last `*` was, and the value position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == v[vi] => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A source pattern: a CIDR block (`10.0.0.0/8`, `fd00::/8`) or a string pattern over the
/// caller's IP address.
#[derive(Debug, Clone)]
pub enum Source {
    Cidr { net: IpAddr, prefix: u8 },
    Pattern(Pattern),
}

impl Source {
    pub fn new(s: &str) -> Result<Self, String> {
        if let Some((addr, prefix)) = s.split_once('/')
            && let Ok(net) = addr.parse::<IpAddr>()
        {
            let max = if net.is_ipv4() { 32 } else { 128 };
            return match prefix.parse::<u8>() {
                Ok(p) if p <= max => Ok(Source::Cidr { net, prefix: p }),
                _ => Err(format!(
                    "invalid CIDR block {s}: the prefix length must be 0 to {max}"
                )),
            };
        }
        Pattern::new(s).map(Source::Pattern)
    }

    pub fn matches(&self, ip: &str) -> bool {
        match self {
            Source::Pattern(p) => p.matches(ip),
            Source::Cidr { net, prefix } => {
                let Ok(ip) = ip.parse::<IpAddr>() else {
                    return false;
                };
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                match (net, ip) {
                    (IpAddr::V4(n), IpAddr::V4(a)) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                        u32::from(*n) & mask == u32::from(a) & mask
                    }
                    (IpAddr::V6(n), IpAddr::V6(a)) => {
                        let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                        u128::from(*n) & mask == u128::from(a) & mask
                    }
                    _ => false,
                }
            }
        }
    }

    pub fn as_written(&self) -> String {
        match self {
            Source::Cidr { net, prefix } => format!("{net}/{prefix}"),
            Source::Pattern(p) => p.as_written(),
        }
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Source::new(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, v: &str) -> bool {
        Pattern::new(p).map(|p| p.matches(v)).unwrap_or(false)
    }

    #[test]
    fn exact_glob_regex() {
        assert!(m("payments", "payments"));
        assert!(!m("payments", "payments-dev"));
        assert!(m("payments*", "payments-dev"));
        assert!(m("*-dev", "payments-dev"));
        assert!(m("p?y*s", "payments"));
        assert!(!m("p?y*s", "pyments"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYbZc"));
        assert!(!m("a*b*c", "aXXbYYbZ"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("/rm( -[a-zA-Z]+)* -rf? .*/", "rm -v -rf /"));
        assert!(!m("/rm -rf/", "xrm -rf"), "regexes are anchored");
        assert!(Pattern::new("/(/").is_err());
    }

    #[test]
    fn sources() {
        let s = |p: &str, ip: &str| Source::new(p).map(|s| s.matches(ip)).unwrap_or(false);
        assert!(s("10.0.0.0/8", "10.20.30.40"));
        assert!(!s("10.0.0.0/8", "11.0.0.1"));
        assert!(s("0.0.0.0/0", "192.168.1.1"));
        assert!(s("127.0.0.1/32", "::ffff:127.0.0.1"));
        assert!(s("fd00::/8", "fd12::1"));
        assert!(!s("fd00::/8", "10.0.0.1"));
        assert!(s("192.168.*", "192.168.3.4"));
        assert!(!s("10.0.0.0/8", "not-an-ip"));
        assert!(Source::new("10.0.0.0/33").is_err());
    }
}
