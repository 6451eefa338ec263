//! Just enough of the Kubernetes protobuf encoding to read request bodies that kubectl's typed
//! clients send (`application/vnd.kubernetes.protobuf`): the `k8s\0` + `runtime.Unknown`
//! envelope and the review kinds' fields. Responses are always JSON, which is legal.

use serde_json::{Value, json};

use super::status::{ApiError, ApiResult};

/// The 4-byte magic prefix of a protobuf-encoded Kubernetes object.
const MAGIC: &[u8] = b"k8s\0";

/// A decoded protobuf field value.
#[derive(Debug, Clone)]
enum Field<'a> {
    /// Varint and fixed-width scalars are skipped; the review kinds need only strings.
    Scalar,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> ApiResult<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| ApiError::bad_request("truncated protobuf varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ApiError::bad_request("protobuf varint too long"))
}

/// All `(field number, value)` pairs of one message, in order.
fn fields(buf: &[u8]) -> ApiResult<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => {
                varint(buf, &mut pos)?;
                Field::Scalar
            }
            1 => {
                pos += 8;
                Field::Scalar
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| ApiError::bad_request("truncated protobuf field"))?;
                let b = &buf[pos..end];
                pos = end;
                Field::Bytes(b)
            }
            5 => {
                pos += 4;
                Field::Scalar
            }
            w => {
                return Err(ApiError::bad_request(format!(
                    "unsupported protobuf wire type {w}"
                )));
            }
        };
        out.push((num, f));
    }
    Ok(out)
}

fn bytes_of<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Option<&'a [u8]> {
    fs.iter().rev().find_map(|(k, f)| match (k, f) {
        (k, Field::Bytes(b)) if *k == n => Some(*b),
        _ => None,
    })
}

fn string_of(fs: &[(u64, Field<'_>)], n: u64) -> Option<String> {
    bytes_of(fs, n).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn strings_of(fs: &[(u64, Field<'_>)], n: u64) -> Vec<String> {
    fs.iter()
        .filter_map(|(k, f)| match f {
            Field::Bytes(b) if *k == n => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

/// Unwraps the envelope: `(apiVersion, kind, raw object bytes)`.
pub fn envelope(body: &[u8]) -> ApiResult<(String, String, &[u8])> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("protobuf body lacks the k8s magic prefix"))?;
    let fs = fields(rest)?;
    let type_meta = fields(bytes_of(&fs, 1).unwrap_or_default())?;
    let raw = bytes_of(&fs, 2).unwrap_or_default();
    Ok((
        string_of(&type_meta, 1).unwrap_or_default(),
        string_of(&type_meta, 2).unwrap_or_default(),
        raw,
    ))
}

/// Decodes a review kind's protobuf body to its JSON form; other kinds are refused with 415.
pub fn decode_review(body: &[u8]) -> ApiResult<Value> {
    let (api_version, kind, raw) = envelope(body)?;
    let top = fields(raw)?;
    let spec = fields(bytes_of(&top, 2).unwrap_or_default())?;
    let spec_json = match kind.as_str() {
        "SelfSubjectReview" => json!({}),
        "TokenReview" => json!({
            "token": string_of(&spec, 1).unwrap_or_default(),
            "audiences": strings_of(&spec, 2),
        }),
        "SelfSubjectAccessReview" => {
            let mut s = json!({});
            if let Some(ra) = bytes_of(&spec, 1) {
                let ra = fields(ra)?;
                let names = [
                    "namespace",
                    "verb",
                    "group",
                    "version",
                    "resource",
                    "subresource",
                    "name",
                ];
                let mut o = serde_json::Map::new();
                for (i, n) in names.iter().enumerate() {
                    if let Some(v) = string_of(&ra, i as u64 + 1) {
                        o.insert((*n).to_string(), json!(v));
                    }
                }
                s["resourceAttributes"] = Value::Object(o);
            }
            if let Some(nra) = bytes_of(&spec, 2) {
                let nra = fields(nra)?;
                s["nonResourceAttributes"] = json!({
                    "path": string_of(&nra, 1).unwrap_or_default(),
                    "verb": string_of(&nra, 2).unwrap_or_default(),
                });
            }
            s
        }
        other => {
            return Err(ApiError::unsupported_media(&format!(
                "application/vnd.kubernetes.protobuf (kind {other}; this test server decodes protobuf only for review kinds)"
            )));
        }
    };
    Ok(json!({"apiVersion": api_version, "kind": kind, "spec": spec_json}))
}

fn string_map(fs: &[(u64, Field<'_>)], n: u64, base64: bool) -> ApiResult<Value> {
    use base64::Engine as _;
    let mut m = serde_json::Map::new();
    for (k, f) in fs {
        if let (true, Field::Bytes(entry)) = (*k == n, f) {
            let e = fields(entry)?;
            let key = string_of(&e, 1).unwrap_or_default();
            let val = bytes_of(&e, 2).unwrap_or_default();
            let v = if base64 {
                base64::engine::general_purpose::STANDARD.encode(val)
            } else {
                String::from_utf8_lossy(val).into_owned()
            };
            m.insert(key, json!(v));
        }
    }
    Ok(Value::Object(m))
}

fn object_meta(raw: &[u8]) -> ApiResult<Value> {
    let fs = fields(raw)?;
    let mut m = json!({});
    for (n, k) in [(1, "name"), (2, "generateName"), (3, "namespace")] {
        if let Some(v) = string_of(&fs, n).filter(|v| !v.is_empty()) {
            m[k] = json!(v);
        }
    }
    for (n, k) in [(11, "labels"), (12, "annotations")] {
        let v = string_map(&fs, n, false)?;
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            m[k] = v;
        }
    }
    let fin = strings_of(&fs, 14);
    if !fin.is_empty() {
        m["finalizers"] = json!(fin);
    }
    Ok(m)
}

/// Decodes the protobuf body of a kind kubectl's typed `create` commands send
/// (ConfigMap, Secret, Namespace) or a review kind; others are refused with 415.
pub fn decode_object(body: &[u8]) -> ApiResult<Value> {
    let (api_version, kind, raw) = envelope(body)?;
    let top = fields(raw)?;
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    obj["metadata"] = object_meta(bytes_of(&top, 1).unwrap_or_default())?;
    let put = |obj: &mut Value, k: &str, v: Value| {
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            obj[k] = v;
        }
    };
    match kind.as_str() {
        "ConfigMap" => {
            put(&mut obj, "data", string_map(&top, 2, false)?);
            put(&mut obj, "binaryData", string_map(&top, 3, true)?);
        }
        "Secret" => {
            put(&mut obj, "data", string_map(&top, 2, true)?);
            if let Some(t) = string_of(&top, 3).filter(|t| !t.is_empty()) {
                obj["type"] = json!(t);
            }
            put(&mut obj, "stringData", string_map(&top, 4, false)?);
        }
        "Namespace" => {}
        "SelfSubjectReview" | "TokenReview" | "SelfSubjectAccessReview" => {
            return decode_review(body);
        }
        other => {
            return Err(ApiError::unsupported_media(&format!(
                "application/vnd.kubernetes.protobuf (kind {other}; this test server decodes protobuf only for ConfigMap, Secret, Namespace and the review kinds)"
            )));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(n: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_selfsubjectaccessreview() {
        let ra = [ld(1, b"payments"), ld(2, b"delete"), ld(5, b"pods")].concat();
        let spec = ld(1, &ra);
        let obj = [ld(1, b""), ld(2, &spec)].concat();
        let tm = [
            ld(1, b"authorization.k8s.io/v1"),
            ld(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, &obj)].concat();
        let v = decode_review(&body).expect("decodes");
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "payments", "verb": "delete", "resource": "pods"})
        );
    }
}
