//! Journal records → ClickHouse rows, validating each event on the way. Every row keeps the event
//! byte for byte (`payload`), so transcripts read back are exactly what the producer journaled.
use gatehouse_proto::v1::{AuthMethod, BypassAlert, Endpoint, Event, Verdict, event::Payload};
use prost::Message;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub session_id: String,
    pub seq: u64,
    pub time: i64,
    pub kind: &'static str,
    pub producer: String,
    pub instance: String,
    pub actor: String,
    pub groups: Vec<String>,
    pub auth_method: &'static str,
    pub source_ip: String,
    pub user_agent: String,
    pub command_id: String,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub command: String,
    pub status_code: u16,
    pub failed: u8,
    #[serde(with = "raw_bytes")]
    pub payload: bytes::Bytes,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct AlertRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub time: i64,
    pub instance: String,
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub original_destination: String,
    pub final_destination: String,
    pub action: &'static str,
    pub reasons: Vec<String>,
    pub matched_by: String,
    pub host_process: u8,
    pub exe: String,
    pub cmdline: String,
    pub pod_uid: String,
    pub container_id: String,
    pub service_account: String,
    /// `Kind/name` of the pod's controller (migration 3).
    pub workload: String,
    pub host_network: u8,
    pub count: u64,
    #[serde(with = "raw_bytes")]
    pub payload: bytes::Bytes,
}

/// One `payload` column read back.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct PayloadRow {
    #[serde(with = "raw_bytes")]
    pub payload: bytes::Bytes,
}

/// A record that cannot be stored, naming the field for `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidRecord {
    pub field: String,
    pub reason: String,
}

/// What one journal record becomes.
#[derive(Debug, Clone)]
pub enum Row {
    Event(EventRow),
    Alert(AlertRow),
}

/// Decodes and validates record `index` of a batch.
pub fn convert(index: usize, bytes: &bytes::Bytes) -> Result<Row, InvalidRecord> {
    let field = |name: &str| format!("records[{index}].event{name}");
    let bad = |name: &str, reason: String| InvalidRecord {
        field: field(name),
        reason,
    };
    let e = Event::decode(bytes.as_ref())
        .map_err(|err| bad("", format!("not a gatehouse.v1.Event: {err}")))?;
    let event_id = uuid::Uuid::parse_str(&e.event_id)
        .map_err(|_| bad(".event_id", format!("{:?} is not a UUID", e.event_id)))?;
    let producer = e.producer.clone().unwrap_or_default();
    let payload = e.payload.as_ref().ok_or_else(|| {
        bad(
            ".payload",
            "missing (request, response, denied or alert)".into(),
        )
    })?;
    let session_event = !matches!(payload, Payload::Alert(_));
    if session_event && e.session_id.is_empty() {
        return Err(bad(".session_id", "empty on a session event".into()));
    }
    if session_event && e.seq == 0 {
        return Err(bad(
            ".seq",
            "0 on a session event (sequences start at 1)".into(),
        ));
    }
    let identity = e.identity.clone().unwrap_or_default();
    let client = e.client.clone().unwrap_or_default();
    let mut row = EventRow {
        event_id,
        session_id: e.session_id.clone(),
        seq: e.seq,
        time: e.time_unix_nano,
        kind: "",
        producer: producer.component,
        instance: producer.instance,
        actor: actor(&e),
        groups: identity.groups.clone(),
        auth_method: match identity.method() {
            AuthMethod::Oidc => "oidc",
            AuthMethod::ServiceAccountToken => "serviceaccount-token",
            AuthMethod::ClientCert => "client-cert",
            AuthMethod::Unspecified => "",
        },
        source_ip: client.source_ip,
        user_agent: client.user_agent,
        command_id: e.command_id.clone(),
        verb: String::new(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        command: String::new(),
        status_code: 0,
        failed: 0,
        payload: bytes.clone(),
    };
    let (kube, command) = match payload {
        Payload::Request(r) => {
            row.kind = "request";
            (r.request.clone(), r.command.clone())
        }
        Payload::Denied(d) => {
            row.kind = "denied";
            row.status_code = u16::try_from(d.status_code).unwrap_or(u16::MAX);
            (d.request.clone(), d.command.clone())
        }
        Payload::Response(r) => {
            row.kind = "response";
            row.status_code = u16::try_from(r.status_code).unwrap_or(u16::MAX);
            row.failed = u8::from(r.status_code >= 400 || !r.error.is_empty());
            (None, String::new())
        }
        Payload::StreamOpened(o) => {
            row.kind = "stream_opened";
            row.namespace = o.namespace.clone();
            row.name = o.pod.clone();
            (None, o.command.join(" "))
        }
        Payload::StreamFrame(_) => {
            row.kind = "stream_frame";
            (None, String::new())
        }
        Payload::StreamEnded(end) => {
            row.kind = "stream_ended";
            row.failed = u8::from(end.aborted || end.exit_code.is_some_and(|c| c != 0));
            (None, String::new())
        }
        Payload::Digest(_) => {
            row.kind = "digest";
            (None, String::new())
        }
        Payload::Alert(a) => return Ok(Row::Alert(alert(event_id, &e, a, bytes))),
    };
    if let Some(k) = kube {
        row.verb = k.verb;
        row.api_group = k.api_group;
        row.resource = k.resource;
        row.subresource = k.subresource;
        row.namespace = k.namespace;
        row.name = k.name;
    }
    row.command = command;
    Ok(Row::Event(row))
}

fn alert(event_id: uuid::Uuid, e: &Event, a: &BypassAlert, bytes: &bytes::Bytes) -> AlertRow {
    AlertRow {
        event_id,
        time: e.time_unix_nano,
        instance: e
            .producer
            .as_ref()
            .map(|p| p.instance.clone())
            .unwrap_or_default(),
        node: a.node.clone(),
        namespace: a.pod_namespace.clone(),
        pod: a.pod_name.clone(),
        container: a.container.clone(),
        pid: a.pid,
        tgid: a.tgid,
        uid: a.uid,
        comm: a.comm.clone(),
        cgroup_id: a.cgroup_id,
        original_destination: endpoint(a.original_destination.as_ref()),
        final_destination: endpoint(a.final_destination.as_ref()),
        action: match a.verdict() {
            Verdict::Allowed => "allowed",
            Verdict::Blocked => "blocked",
            Verdict::Unspecified => "unspecified",
        },
        reasons: a.reasons.clone(),
        matched_by: a.matched_by.clone(),
        host_process: u8::from(a.host_process),
        exe: a.exe.clone(),
        cmdline: a.cmdline.clone(),
        pod_uid: a.pod_uid.clone(),
        container_id: a.container_id.clone(),
        service_account: a.service_account.clone(),
        workload: a.workload.clone(),
        host_network: u8::from(a.host_network),
        count: a.count,
        payload: bytes.clone(),
    }
}

/// The actor of an event, as the CLI shows it: the username, or where an unauthenticated caller
/// came from.
pub fn actor(e: &Event) -> String {
    match &e.identity {
        Some(id) if !id.username.is_empty() => id.username.clone(),
        _ => format!(
            "unauthenticated@{}",
            e.client
                .as_ref()
                .map(|c| c.source_ip.as_str())
                .unwrap_or("?")
        ),
    }
}

fn endpoint(e: Option<&Endpoint>) -> String {
    match e {
        Some(e) if e.ip.contains(':') => format!("[{}]:{}", e.ip, e.port),
        Some(e) => format!("{}:{}", e.ip, e.port),
        None => String::new(),
    }
}

/// `String` columns from and to raw bytes (serde would make a `Vec<u8>` an `Array(UInt8)`).
mod raw_bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(b: &bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bytes::Bytes, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = bytes::Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(bytes::Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(bytes::Bytes::from(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(bytes::Bytes::copy_from_slice(v.as_bytes()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(bytes::Bytes::from(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::v1::{KubeRequest, RequestStarted};

    fn request(event_id: &str) -> Event {
        Event {
            event_id: event_id.into(),
            session_id: "0196b0a0-0000-7000-8000-00000000000a".into(),
            seq: 1,
            time_unix_nano: 1_800_000_000_000_000_000,
            payload: Some(Payload::Request(RequestStarted {
                request: Some(KubeRequest {
                    verb: "get".into(),
                    resource: "pods".into(),
                    namespace: "prod".into(),
                    ..Default::default()
                }),
                command: "kubectl get pods -n prod".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn converts_a_request_and_names_bad_fields() {
        let ok =
            bytes::Bytes::from(request("0196b0a0-0000-7000-8000-000000000001").encode_to_vec());
        let Ok(Row::Event(row)) = convert(0, &ok) else {
            panic!("a valid request must convert");
        };
        assert_eq!(
            (row.kind, row.namespace.as_str(), row.verb.as_str()),
            ("request", "prod", "get")
        );
        assert_eq!(row.actor, "unauthenticated@?");
        assert_eq!(row.payload, ok);

        let bad_id = bytes::Bytes::from(request("nope").encode_to_vec());
        let err = convert(3, &bad_id).err();
        assert_eq!(
            err.map(|e| e.field),
            Some("records[3].event.event_id".to_string())
        );

        let mut no_payload = request("0196b0a0-0000-7000-8000-000000000002");
        no_payload.payload = None;
        let err = convert(1, &bytes::Bytes::from(no_payload.encode_to_vec())).err();
        assert_eq!(
            err.map(|e| e.field),
            Some("records[1].event.payload".to_string())
        );

        let garbage = bytes::Bytes::from_static(&[0xff, 0xff, 0xff]);
        assert_eq!(
            convert(2, &garbage).err().map(|e| e.field),
            Some("records[2].event".to_string())
        );
    }
}
