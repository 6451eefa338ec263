#![allow(clippy::unwrap_used)]
//! The published JSON Schema (`policy/policy.schema.json`) and the model agree: the example and
//! a document using every field pass both, and each bad document fails both.
use serde_json::Value;

/// Validates `v` against the subset of JSON Schema the policy schema uses: `type`,
/// `properties`, `required`, `additionalProperties: false`, `enum`, `items`, `pattern`, `$ref`.
fn validate(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .ok_or(format!("unsupported $ref {r}"))?;
        return validate(root, &root["$defs"][name], v, at);
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            other => return Err(format!("unsupported type {other}")),
        };
        if !ok {
            return Err(format!("{at}: not a {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str())
        && !regex::Regex::new(p).unwrap().is_match(s)
    {
        return Err(format!("{at}: {s:?} does not match {p}"));
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = req.as_str().unwrap();
            if !obj.contains_key(k) {
                return Err(format!("{at}: missing {k}"));
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(root, s, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: unknown property {k}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(root, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn schema() -> Value {
    serde_json::from_str(include_str!("../policy.schema.json")).unwrap()
}

/// (schema verdict, model verdict) for one YAML document.
fn both(yaml: &str) -> (Result<(), String>, Result<(), String>) {
    let s = schema();
    let doc: Value = serde_yaml::from_str(yaml).unwrap();
    (
        validate(&s, &s, &doc, "$"),
        gatehouse_policy::parse(yaml, "t")
            .map(|_| ())
            .map_err(|e| e.to_string()),
    )
}

const FULL: &str = r#"
version: 1
default: {action: deny, message: no}
rules:
  - name: everything
    match:
      users: [alice, "bob*"]
      groups: [admins]
      sources: ["10.0.0.0/8", "127.0.0.1"]
      verbs: [get, list, watch, create, update, patch, delete, deletecollection, "*"]
      api_groups: ["", apps]
      resources: [pods]
      subresources: [exec]
      namespaces: [payments]
      names: ["/checkout-.*/"]
      exec: {containers: [app], argv: ["rm -rf *"]}
      time: [{days: [mon, tue, wed, thu, fri, sat, sun], start: "09:00", end: "24:00"}]
      labels: {app: web}
      stdin: ["rm -rf *", "/shutdown( .*)?/"]
    action: require_approval
    message: hold it
    record_payload: false
    mask: {dlp: false}
  - {name: m, action: mask}
  - name: m2
    match: {labels: {app: "payments-*"}}
    action: mask
    mask:
      detectors: [aws_access_key, bearer_token, private_key, jwt]
      patterns: [{name: ticket, regex: "TKT-[0-9]+"}]
      fields: ["spec.containers[*].env[*].value", "metadata.annotations[\"a.b/c\"]"]
      env_names: ["*PASSWORD*"]
      dlp: true
  - {name: a, action: allow}
approvals:
  reviewers: [sre]
  timeout: 5m
  max_grant: 8h
  webhook: {url: "https://hooks.example/x", format: slack}
roles:
  - name: payments-writer
    rules: [{name: w, match: {namespaces: [payments]}, action: allow}]
"#;

#[test]
fn example_and_full_documents_pass_schema_and_model() {
    let (s, m) = both(include_str!("../example.yaml"));
    assert_eq!((s, m), (Ok(()), Ok(())));
    let (s, m) = both(FULL);
    assert_eq!((s, m), (Ok(()), Ok(())));
}

#[test]
fn bad_documents_fail_schema_and_model() {
    let bad = [
        "default: {action: allow}\n",
        "version: 2\ndefault: {action: allow}\n",
        "version: 1\ndefault: {action: permit}\n",
        "version: 1\ndefault: {action: allow}\nextra: 1\n",
        "version: 1\ndefault: {action: allow}\nrules: [{action: deny}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: mask, mask: {detectors: [ssn]}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: mask, mask: {dpl: true}}]\n",
        "version: 1\ndefault: {action: allow}\napprovals: {reviewer: [sre]}\n",
        "version: 1\ndefault: {action: allow}\nroles: [{name: r}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, mesage: x}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, match: {verb: [get]}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, match: {verbs: [gett]}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, match: {exec: {args: [x]}}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, match: {time: [{days: [funday]}]}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, match: {time: [{start: '9:00'}]}}]\n",
        "version: 1\ndefault: {action: allow}\nrules: [{name: a, action: deny, record_payload: nope}]\n",
    ];
    for doc in bad {
        let (s, m) = both(doc);
        assert!(s.is_err(), "schema accepted {doc}");
        assert!(m.is_err(), "model accepted {doc}");
    }
}

#[test]
fn every_schema_property_is_known_to_the_model() {
    // The full document must use every property the schema lists for a rule and a match.
    let s = schema();
    let full: Value = serde_yaml::from_str(FULL).unwrap();
    let rule = &full["rules"][0];
    for (def, obj) in [("rule", rule), ("match", &rule["match"])] {
        for key in s["$defs"][def]["properties"].as_object().unwrap().keys() {
            assert!(obj.get(key).is_some(), "FULL does not exercise {def}.{key}");
        }
    }
}
