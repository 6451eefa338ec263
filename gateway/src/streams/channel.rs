//! What a Kubernetes stream carries: the request's target (exec argv, container, tty, ports),
//! the channel numbers and SPDY stream types, and the meaning of resize and error messages.
use gatehouse_proto::v1::{StreamChannel, TerminalSize};

/// The subresource asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Attach => "attach",
            Kind::PortForward => "portforward",
        }
    }
}

/// The stream's target, from the request path and query.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: Kind,
    pub namespace: String,
    pub pod: String,
    pub command: Vec<String>,
    pub container: String,
    pub tty: bool,
    pub stdin: bool,
    pub ports: Vec<u32>,
}

impl Target {
    /// `/api/v1/namespaces/{ns}/pods/{pod}/{exec|attach|portforward}`; `None` otherwise.
    pub fn parse(path: &str, query: Option<&str>) -> Option<Target> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (namespace, pod, sub) = match segs.as_slice() {
            ["api", "v1", "namespaces", ns, "pods", pod, sub] => (*ns, *pod, *sub),
            _ => return None,
        };
        let kind = match sub {
            "exec" => Kind::Exec,
            "attach" => Kind::Attach,
            "portforward" => Kind::PortForward,
            _ => return None,
        };
        let mut t = Target {
            kind,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            command: Vec::new(),
            container: String::new(),
            tty: false,
            stdin: false,
            ports: Vec::new(),
        };
        let flag = |v: &str| matches!(v, "1" | "true" | "True");
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "command" => t.command.push(v.into_owned()),
                "container" => t.container = v.into_owned(),
                "tty" => t.tty = flag(&v),
                "stdin" => t.stdin = flag(&v),
                "ports" => t
                    .ports
                    .extend(v.split(',').filter_map(|p| p.trim().parse::<u32>().ok())),
                _ => {}
            }
        }
        Some(t)
    }

    /// `kubectl cp` is an exec of tar: which way, and the container path.
    pub fn file_copy(&self) -> Option<(&'static str, String)> {
        if self.kind != Kind::Exec || self.command.first().map(String::as_str) != Some("tar") {
            return None;
        }
        let args = &self.command[1..];
        let flags = args.iter().find(|a| !a.starts_with("--"))?;
        let flags = flags.trim_start_matches('-');
        if flags.contains('x') {
            let dir = args
                .iter()
                .position(|a| a == "-C")
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default();
            Some(("to_container", dir))
        } else if flags.contains('c') {
            Some(("from_container", args.last().cloned().unwrap_or_default()))
        } else {
            None
        }
    }
}

/// The remote command channel of a WebSocket channel byte (v1–v5).
pub fn ws_channel(byte: u8) -> Option<StreamChannel> {
    Some(match byte {
        0 => StreamChannel::Stdin,
        1 => StreamChannel::Stdout,
        2 => StreamChannel::Stderr,
        3 => StreamChannel::Error,
        4 => StreamChannel::Resize,
        255 => StreamChannel::Close,
        _ => return None,
    })
}

/// The channel of a SPDY stream from its `streamType` header.
pub fn spdy_channel(stream_type: &str) -> Option<StreamChannel> {
    Some(match stream_type {
        "stdin" => StreamChannel::Stdin,
        "stdout" => StreamChannel::Stdout,
        "stderr" => StreamChannel::Stderr,
        "error" => StreamChannel::Error,
        "resize" => StreamChannel::Resize,
        "data" => StreamChannel::PortData,
        _ => return None,
    })
}

/// The WebSocket channel byte of a remote command channel (for replay and the test server).
pub fn channel_byte(ch: StreamChannel) -> Option<u8> {
    Some(match ch {
        StreamChannel::Stdin => 0,
        StreamChannel::Stdout => 1,
        StreamChannel::Stderr => 2,
        StreamChannel::Error => 3,
        StreamChannel::Resize => 4,
        StreamChannel::Close => 255,
        _ => return None,
    })
}

/// A resize message: `{"Width":80,"Height":24}`. Several may arrive in one frame.
pub fn parse_resize(data: &[u8]) -> Option<TerminalSize> {
    let mut last = None;
    for v in serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>() {
        let v = v.ok()?;
        let dim = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        last = Some(TerminalSize {
            width: u32::try_from(dim("Width")?).ok()?,
            height: u32::try_from(dim("Height")?).ok()?,
        });
    }
    last
}

/// The exit code and message of an error-channel `metav1.Status`: 0 for Success, the
/// `ExitCode` cause for `NonZeroExitCode`; `None` for a failure without an exit code.
pub fn parse_status(data: &[u8]) -> (Option<i32>, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return (None, String::from_utf8_lossy(data).into_owned());
    };
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    if v.get("status").and_then(|s| s.as_str()) == Some("Success") {
        return (Some(0), message);
    }
    let code = v
        .pointer("/details/causes")
        .and_then(|c| c.as_array())
        .and_then(|causes| {
            causes.iter().find_map(|c| {
                (c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
                    .then(|| c.get("message")?.as_str()?.parse::<i32>().ok())
                    .flatten()
            })
        });
    (code, message)
}

/// A `metav1.Status` failure for the error channel, so kubectl prints the gateway's reason.
pub fn failure_status(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_parse_from_path_and_query() {
        let t = Target::parse(
            "/api/v1/namespaces/payments/pods/checkout-7b9/exec",
            Some("command=sh&command=-c&command=echo+hi&container=app&stdin=true&stdout=true&tty=true"),
        )
        .unwrap();
        assert_eq!(t.kind, Kind::Exec);
        assert_eq!(t.command, ["sh", "-c", "echo hi"]);
        assert_eq!(t.container, "app");
        assert!(t.tty && t.stdin);
        let t = Target::parse(
            "/api/v1/namespaces/a/pods/b/portforward",
            Some("ports=80,443"),
        )
        .unwrap();
        assert_eq!(t.ports, [80, 443]);
        assert!(Target::parse("/api/v1/namespaces/a/pods/b/log", None).is_none());
    }

    #[test]
    fn kubectl_cp_is_recognised_both_ways() {
        let t = |q| Target::parse("/api/v1/namespaces/a/pods/b/exec", Some(q)).unwrap();
        assert_eq!(
            t("command=tar&command=cf&command=-&command=data/f").file_copy(),
            Some(("from_container", "data/f".into()))
        );
        assert_eq!(
            t("command=tar&command=--no-same-permissions&command=--no-same-owner&command=-xmf&command=-&command=-C&command=data").file_copy(),
            Some(("to_container", "data".into()))
        );
        assert_eq!(t("command=ls").file_copy(), None);
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        let failed = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(parse_status(failed).0, Some(3));
        assert_eq!(
            parse_status(br#"{"metadata":{},"status":"Success"}"#).0,
            Some(0)
        );
        assert_eq!(parse_status(b"not json").0, None);
    }

    #[test]
    fn resize_takes_the_last_size() {
        let s = parse_resize(br#"{"Width":80,"Height":24}{"Width":120,"Height":40}"#).unwrap();
        assert_eq!((s.width, s.height), (120, 40));
        assert!(parse_resize(b"{").is_none());
    }
}
