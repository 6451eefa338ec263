//! The API-server endpoint set: parsing `KIND=ADDR:PORT` specs, resolving DNS names, and the
//! resolved entries the kernel maps hold.
use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use gatehouse_agent_common::MatchedBy;

/// One configured endpoint, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub kind: MatchedBy,
    pub target: Target,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Net(IpAddr, u8),
    Host(String),
}

/// One entry of the kernel endpoint maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub addr: IpAddr,
    pub prefix: u8,
    pub port: u16,
    pub matched_by: u8,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = MatchedBy::from_u8(self.matched_by).map_or("?", MatchedBy::as_str);
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}:{} {tag}", self.prefix, self.port),
            IpAddr::V6(a) => write!(f, "[{a}/{}]:{} {tag}", self.prefix, self.port),
        }
    }
}

fn kind_from_str(s: &str) -> Option<MatchedBy> {
    Some(match s {
        "service_vip" => MatchedBy::ServiceVip,
        "endpoint_ip" => MatchedBy::EndpointIp,
        "node_ip" => MatchedBy::NodeIp,
        "external" => MatchedBy::External,
        "dns" => MatchedBy::Dns,
        _ => return None,
    })
}

impl FromStr for EndpointSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, rest) = s.split_once('=').ok_or_else(|| {
            format!("endpoint {s:?} must be KIND=ADDR:PORT, for example service_vip=10.96.0.1:443")
        })?;
        let kind = kind_from_str(kind).ok_or_else(|| {
            format!(
                "endpoint kind {kind:?} is not one of service_vip, endpoint_ip, node_ip, external, dns"
            )
        })?;
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, p) = inner
                .split_once("]:")
                .ok_or_else(|| format!("endpoint {s:?}: IPv6 needs the form [ADDR]:PORT"))?;
            (h, p)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| format!("endpoint {s:?} has no :PORT"))?
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("endpoint {s:?}: port {port:?} is not 1-65535"))?;
        let target = if kind == MatchedBy::Dns {
            if host.is_empty() || host.parse::<IpAddr>().is_ok() {
                return Err(format!("endpoint {s:?}: dns= takes a host name"));
            }
            Target::Host(host.to_string())
        } else {
            let (addr, prefix) = match host.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (host, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("endpoint {s:?}: {addr:?} is not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("endpoint {s:?}: prefix {p:?} is not 0-{max}"))?,
                None => max,
            };
            Target::Net(mask(addr, prefix), prefix)
        };
        Ok(Self { kind, target, port })
    }
}

/// Zeroes the host bits, so `10.0.0.7/24` and `10.0.0.0/24` are one entry.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Parses an endpoints file: one spec per line, blank lines and `#` comments ignored.
pub fn parse_file(text: &str) -> Result<Vec<EndpointSpec>, String> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| l.parse().map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Resolves specs to entries; a name that does not resolve now is skipped with a warning and
/// retried at the next refresh.
pub async fn resolve(specs: &[EndpointSpec]) -> BTreeSet<Entry> {
    let mut out = BTreeSet::new();
    for spec in specs {
        match &spec.target {
            Target::Net(addr, prefix) => {
                out.insert(Entry {
                    addr: *addr,
                    prefix: *prefix,
                    port: spec.port,
                    matched_by: spec.kind as u8,
                });
            }
            Target::Host(host) => match tokio::net::lookup_host((host.as_str(), spec.port)).await {
                Ok(addrs) => {
                    for a in addrs {
                        let ip = match a.ip() {
                            IpAddr::V6(v6) => {
                                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                            }
                            v4 => v4,
                        };
                        let prefix = if ip.is_ipv4() { 32 } else { 128 };
                        out.insert(Entry {
                            addr: ip,
                            prefix,
                            port: spec.port,
                            matched_by: spec.kind as u8,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(%host, error = %e, "cannot resolve API-server name; will retry")
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_each_form() {
        let e: EndpointSpec = "service_vip=10.96.0.1:443".parse().unwrap();
        assert_eq!(e.target, Target::Net("10.96.0.1".parse().unwrap(), 32));
        assert_eq!(e.port, 443);
        let e: EndpointSpec = "external=10.0.0.7/24:6443".parse().unwrap();
        assert_eq!(e.target, Target::Net("10.0.0.0".parse().unwrap(), 24));
        let e: EndpointSpec = "node_ip=[fd00::1/64]:6443".parse().unwrap();
        assert_eq!(e.target, Target::Net("fd00::".parse().unwrap(), 64));
        let e: EndpointSpec = "dns=api.example.com:443".parse().unwrap();
        assert_eq!(e.target, Target::Host("api.example.com".into()));
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for (bad, why) in [
            ("10.0.0.1:443", "KIND=ADDR:PORT"),
            ("vip=10.0.0.1:443", "not one of"),
            ("service_vip=10.0.0.1", "no :PORT"),
            ("service_vip=10.0.0.1:0", "not 1-65535"),
            ("service_vip=10.0.0.1/33:1", "not 0-32"),
            ("dns=10.0.0.1:443", "host name"),
            ("external=nope:443", "not an IP"),
        ] {
            let err = bad.parse::<EndpointSpec>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn file_reports_the_bad_line() {
        let err = parse_file("# c\nservice_vip=10.0.0.1:443\n\nbogus\n").unwrap_err();
        assert!(err.starts_with("line 4:"), "{err}");
        assert_eq!(parse_file("node_ip=1.2.3.4:6443 # cp\n").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn resolves_names_and_nets() {
        let specs = parse_file("dns=localhost:6443\nexternal=10.0.0.0/8:443\n").unwrap();
        let set = resolve(&specs).await;
        assert!(
            set.iter()
                .any(|e| e.addr == IpAddr::from([127, 0, 0, 1]) && e.port == 6443)
        );
        assert!(
            set.iter()
                .any(|e| e.prefix == 8 && e.matched_by == MatchedBy::External as u8)
        );
    }
}
