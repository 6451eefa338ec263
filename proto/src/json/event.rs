//! An event as JSON: what `gatehouse export` writes (one object per NDJSON line) and the
//! collector's `GET /v1/sessions/{id}/events` streams. Bodies and frames are text when UTF-8.
use super::{hex_lower, rfc3339};
use crate::v1::{self as pb, Event, event::Payload};
use base64::Engine;
use prost::Message;
use serde_json::{Value, json};

pub fn event_json(e: &Event) -> Value {
    let identity = e.identity.as_ref().map(|i| {
        json!({
            "username": i.username, "groups": i.groups, "uid": i.uid,
            "method": pb::AuthMethod::try_from(i.method).map(|m| m.as_str_name()).unwrap_or("AUTH_METHOD_UNSPECIFIED"),
            "issuer": i.issuer, "extra": i.extra,
        })
    });
    let client = e.client.as_ref().map(|c| {
        json!({
            "source_ip": c.source_ip, "source_port": c.source_port, "user_agent": c.user_agent,
            "kubectl_command": c.kubectl_command, "kubectl_session": c.kubectl_session,
        })
    });
    let (kind, payload) = match &e.payload {
        Some(Payload::Request(r)) => (
            "request",
            json!({
                "request": request_json(&r.request), "body": body_json(&r.body), "command": r.command,
                "upstream_as": r.upstream_as.as_ref().map(|u| json!({"user": u.user, "groups": u.groups, "uid": u.uid, "extra": u.extra})),
            }),
        ),
        Some(Payload::Response(r)) => (
            "response",
            json!({
                "request_event_id": r.request_event_id, "status_code": r.status_code,
                "latency_nanos": r.latency_nanos, "duration_nanos": r.duration_nanos,
                "request_bytes": r.request_bytes, "body": body_json(&r.body), "error": r.error,
            }),
        ),
        Some(Payload::Denied(d)) => (
            "denied",
            json!({
                "status_code": d.status_code, "reason": d.reason, "message": d.message,
                "request": request_json(&d.request), "command": d.command,
            }),
        ),
        Some(Payload::Alert(a)) => (
            "alert",
            json!({
                "node": a.node, "pod": a.pod_name, "namespace": a.pod_namespace, "comm": a.comm,
                "count": a.count, "workload": a.workload, "host_network": a.host_network,
            }),
        ),
        Some(Payload::StreamOpened(o)) => (
            "stream_opened",
            json!({
                "request_event_id": o.request_event_id, "kind": o.kind, "transport": o.transport,
                "protocol": o.protocol, "command": o.command, "container": o.container,
                "tty": o.tty, "stdin": o.stdin, "namespace": o.namespace, "pod": o.pod,
                "ports": o.ports, "port_payload_capture": o.port_payload_capture,
            }),
        ),
        Some(Payload::StreamFrame(f)) => ("stream_frame", stream_frame_json(f)),
        Some(Payload::StreamEnded(x)) => (
            "stream_ended",
            json!({
                "request_event_id": x.request_event_id, "offset_nanos": x.offset_nanos,
                "exit_code": x.exit_code, "status_message": x.status_message,
                "aborted": x.aborted, "error": x.error,
                "bytes_to_container": x.bytes_to_container,
                "bytes_from_container": x.bytes_from_container, "frames": x.frames,
                "masked_values": x.masked_values,
                "connections": x.connections.iter().map(|c| json!({
                    "connection_id": c.connection_id, "port": c.port,
                    "bytes_to_container": c.bytes_to_container,
                    "bytes_from_container": c.bytes_from_container,
                    "start_offset_nanos": c.start_offset_nanos,
                    "end_offset_nanos": c.end_offset_nanos, "error": c.error,
                })).collect::<Vec<_>>(),
                "copy": x.copy.as_ref().map(|c| json!({
                    "direction": c.direction, "path": c.path, "tar_bytes": c.tar_bytes,
                    "tar_sha256": hex_lower(&c.tar_sha256),
                })),
            }),
        ),
        Some(Payload::Digest(d)) => (
            "digest",
            json!({
                "session_id": d.session_id, "last_seq": d.last_seq,
                "last_hash": hex_lower(&d.last_hash), "event_count": d.event_count,
                "time_unix_nano": d.time_unix_nano, "closed": d.closed, "key_id": d.key_id,
                "signature": hex_lower(&d.signature),
            }),
        ),
        None => ("unknown", Value::Null),
    };
    json!({
        "event_id": e.event_id,
        "session_id": e.session_id,
        "seq": e.seq,
        "time": rfc3339(e.time_unix_nano),
        "time_unix_nano": e.time_unix_nano,
        "producer": e.producer.as_ref().map(|p| json!({"component": p.component, "instance": p.instance, "version": p.version})),
        "identity": identity,
        "client": client,
        "command_id": e.command_id,
        "prev_hash": hex_lower(&e.prev_hash),
        "kind": kind,
        kind: payload,
        // The event as recorded: `gatehouse verify --file` checks the hash chain over it and
        // that every field above says the same.
        "proto": base64::engine::general_purpose::STANDARD.encode(e.encode_to_vec()),
    })
}

/// A stream frame; the bytes are text when they are UTF-8, else base64 (like bodies).
fn stream_frame_json(f: &pb::StreamFrame) -> Value {
    let mut v = json!({
        "request_event_id": f.request_event_id, "offset_nanos": f.offset_nanos,
        "direction": pb::StreamDirection::try_from(f.direction).map(|d| d.as_str_name()).unwrap_or("STREAM_DIRECTION_UNSPECIFIED"),
        "channel": pb::StreamChannel::try_from(f.channel).map(|c| c.as_str_name()).unwrap_or("STREAM_CHANNEL_UNSPECIFIED"),
        "size": f.size, "data_omitted": f.data_omitted,
        "resize": f.resize.map(|r| json!({"width": r.width, "height": r.height})),
        "port": f.port, "connection_id": f.connection_id,
    });
    match std::str::from_utf8(&f.data) {
        Ok(text) => v["text"] = json!(text),
        Err(_) => v["base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&f.data)),
    }
    v
}

fn body_json(b: &Option<pb::Body>) -> Value {
    let Some(b) = b else { return Value::Null };
    let mut v = json!({
        "total_bytes": b.total_bytes,
        "truncated": b.truncated,
        "content_type": b.content_type,
        "content_encoding": b.content_encoding,
    });
    match std::str::from_utf8(&b.data) {
        Ok(text) if b.content_encoding.is_empty() => v["text"] = json!(text),
        _ => v["base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&b.data)),
    }
    v
}

fn request_json(k: &Option<pb::KubeRequest>) -> Value {
    let Some(k) = k else { return Value::Null };
    json!({
        "method": k.method, "path": k.path, "query": k.query, "verb": k.verb,
        "api_group": k.api_group, "api_version": k.api_version, "resource": k.resource,
        "subresource": k.subresource, "namespace": k.namespace, "name": k.name,
        "non_resource": k.non_resource,
    })
}
