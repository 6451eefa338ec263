//! Pod logs (`/pods/{name}/log`): configured text or generated lines, `tailLines`,
//! `timestamps`, `limitBytes`, `container`, and `follow=true` as a chunked text stream that
//! keeps going. Generated logs of any size are produced chunk by chunk, never held whole.

use bytes::{BufMut, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::handler::{Ctx, Target, load};
use super::status::{ApiError, ApiResult};
use super::{Body, ChannelBody, LOG_BYTES_ANNOTATION, LOG_CONTENT_ANNOTATION};

/// Length of a generated line, newline included.
pub const GENERATED_LINE_LEN: u64 = 100;
const CHUNK: usize = 64 * 1024;

/// Where a pod's log text comes from.
enum Source {
    Text(Vec<String>),
    Generated(u64),
}

fn timestamp(i: u64) -> String {
    // Deterministic timestamps, one second apart, so tests can match them.
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    (base + chrono::Duration::seconds(i as i64))
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// The `i`-th generated line (0-based), exactly [`GENERATED_LINE_LEN`] bytes with newline.
pub fn generated_line(pod: &str, i: u64) -> String {
    let mut s = format!("{i:010} {pod} synthetic log line ");
    let width = GENERATED_LINE_LEN as usize - 1;
    if s.len() > width {
        s.truncate(width);
    }
    while s.len() < width {
        s.push('x');
    }
    s.push('\n');
    s
}

/// The default text of a pod's container log.
pub fn default_line(pod: &str, container: &str, i: u64) -> String {
    format!("{container} line {i}: pod {pod} is running")
}

pub(crate) async fn serve(ctx: &Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let pod_name = t.name.clone().unwrap_or_default();
    let pod = load(ctx, t, &pod_name)?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let container = match ctx.query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.iter().any(|x| x == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )));
            }
            c.to_string()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    if ctx.query.flag("previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
        )));
    }
    let num = |k: &str| -> ApiResult<Option<u64>> {
        match ctx.query.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(|n| Some(n.max(0) as u64))
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v}"))),
        }
    };
    let tail = num("tailLines")?;
    let limit = num("limitBytes")?;
    let follow = ctx.query.flag("follow");
    let timestamps = ctx.query.flag("timestamps");
    let opts = &ctx.state.opts.logs;
    let annotation = |k: &str| {
        pod.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let key_c = format!("{}/{pod_name}/{container}", t.ns);
    let key_p = format!("{}/{pod_name}", t.ns);
    let source = if let Some(text) = opts
        .content
        .get(&key_c)
        .or_else(|| opts.content.get(&key_p))
        .cloned()
        .or_else(|| annotation(LOG_CONTENT_ANNOTATION))
    {
        Source::Text(text.lines().map(str::to_string).collect())
    } else if let Some(n) = opts
        .generated_bytes
        .get(&key_p)
        .copied()
        .or_else(|| annotation(LOG_BYTES_ANNOTATION).and_then(|s| s.parse().ok()))
    {
        Source::Generated(n)
    } else {
        Source::Text(
            (1..=10)
                .map(|i| default_line(&pod_name, &container, i))
                .collect(),
        )
    };
    let interval = opts.follow_interval;
    let (tx, body) = ChannelBody::channel(4);
    tokio::spawn(async move {
        let mut sent: u64 = 0;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let limit = limit.unwrap_or(u64::MAX);
        // Appends a line, respecting limitBytes; false once the limit is reached.
        let push = |buf: &mut BytesMut, sent: &mut u64, line: &str| -> bool {
            let room = limit.saturating_sub(*sent);
            let take = (line.len() as u64).min(room) as usize;
            buf.put_slice(&line.as_bytes()[..take]);
            *sent += take as u64;
            *sent < limit
        };
        let mut next_index: u64;
        match source {
            Source::Text(lines) => {
                let start = tail.map_or(0, |t| lines.len().saturating_sub(t as usize));
                for (i, l) in lines.iter().enumerate().skip(start) {
                    let line = if timestamps {
                        format!("{} {l}\n", timestamp(i as u64))
                    } else {
                        format!("{l}\n")
                    };
                    if !push(&mut buf, &mut sent, &line) {
                        break;
                    }
                }
                next_index = lines.len() as u64;
            }
            Source::Generated(total) => {
                let lines = total.div_ceil(GENERATED_LINE_LEN);
                let start = tail.map_or(0, |t| lines.saturating_sub(t));
                for i in start..lines {
                    let mut line = generated_line(&pod_name, i);
                    // The last line is cut so the whole log is exactly `total` bytes.
                    let end = ((i + 1) * GENERATED_LINE_LEN).min(total) - i * GENERATED_LINE_LEN;
                    line.truncate(end as usize);
                    if timestamps {
                        line = format!("{} {line}", timestamp(i));
                    }
                    let more = push(&mut buf, &mut sent, &line);
                    if buf.len() >= CHUNK && tx.send(buf.split().freeze()).await.is_err() {
                        return;
                    }
                    if !more {
                        break;
                    }
                }
                next_index = lines;
            }
        }
        if !buf.is_empty() && tx.send(buf.split().freeze()).await.is_err() {
            return;
        }
        if !follow || sent >= limit {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return,
            }
            next_index += 1;
            let text = default_line(&pod_name, &container, next_index);
            let line = if timestamps {
                format!("{} {text}\n", timestamp(next_index))
            } else {
                format!("{text}\n")
            };
            let more = push(&mut buf, &mut sent, &line);
            if tx.send(buf.split().freeze()).await.is_err() || !more {
                return;
            }
        }
    });
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}
