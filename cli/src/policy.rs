//! `gatehouse policy test`: evaluates a kubectl command against a policy file the way the
//! gateway would, and explains which rule decided and why the earlier ones did not.
use crate::error::{CliError, chain};
use crate::kubectl_request;
use std::io::Write;
use std::path::Path;

/// Who asks, from where and when, for `gatehouse policy test`.
pub struct Caller<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub source: &'a str,
    pub at: Option<&'a str>,
}

pub fn test(
    file: &Path,
    caller: &Caller<'_>,
    request: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let policy = gatehouse_policy::load_file(file).map_err(|e| CliError::Policy(chain(&e)))?;
    let mut req = kubectl_request::parse(request).map_err(CliError::Request)?;
    req.user = caller.user.to_string();
    req.groups = caller.groups.to_vec();
    req.source = caller.source.to_string();
    req.time = match caller.at {
        Some(t) => chrono::DateTime::from_timestamp_nanos(crate::time::parse_instant(t)?),
        None => chrono::Utc::now(),
    };

    let target = match (req.name.as_str(), req.subresource.as_str()) {
        ("", _) => req.resource.clone(),
        (n, "") => format!("{}/{n}", req.resource),
        (n, s) => format!("{}/{n}/{s}", req.resource),
    };
    let group = if req.api_group.is_empty() {
        String::new()
    } else {
        format!(" (group {})", req.api_group)
    };
    let ns = if req.namespace.is_empty() {
        String::new()
    } else {
        format!(" in namespace {}", req.namespace)
    };
    writeln!(
        out,
        "request: {} {target}{group}{ns} as {} (groups: {}) from {} at {}",
        req.verb,
        req.user,
        if req.groups.is_empty() {
            "none".to_string()
        } else {
            req.groups.join(", ")
        },
        req.source,
        req.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )?;
    if let Some(exec) = &req.exec {
        writeln!(
            out,
            "exec: container {:?}, argv {:?}",
            exec.container,
            exec.argv.join(" ")
        )?;
    }
    let mut skipped = Vec::new();
    let decision = policy.explain(&req, |s| skipped.push(s));
    for s in &skipped {
        writeln!(
            out,
            "skipped rule #{} {:?}: {} did not match",
            s.index + 1,
            s.name,
            s.failed
        )?;
    }
    match &decision.rule {
        Some((i, name)) => {
            let conditions = policy.rules[*i].matches.describe();
            let why = if conditions.is_empty() {
                "no conditions (matches everything)".to_string()
            } else {
                conditions.join("; ")
            };
            writeln!(out, "matched rule #{} {name:?}: {why}", i + 1)?;
        }
        None => writeln!(out, "no rule matched: the default decides")?,
    }
    write!(out, "decision: {}", decision.action.as_str())?;
    if !decision.allowed() {
        write!(out, " (the caller sees: {:?})", decision.message)?;
    }
    writeln!(out)?;
    if !decision.record_payload {
        writeln!(out, "payload: not recorded (record_payload: false)")?;
    }
    Ok(())
}
