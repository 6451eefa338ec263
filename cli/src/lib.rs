//! The `gatehouse` CLI: lists sessions, prints a session's ordered kubectl transcript and
//! exports sessions as JSON from the gateway's local journal or a collector (`--collector`);
//! explains policy decisions.
mod alerts;
mod approvals;
mod args;
mod asciicast;
mod collector;
mod error;
mod events;
mod export;
mod grant;
mod http;
mod keys_url;
mod kubeconfig;
mod kubectl_line;
mod kubectl_request;
mod policy;
mod replay;
mod sessions;
mod show;
mod time;
mod token;
mod verify;

pub use args::{AlertAction, Cli, Cmd, ExportFormat, PolicyCmd, Source};
pub use error::CliError;
pub use gatehouse_proto::json::{alert_json, event_json};
pub use sessions::SessionSummary;

use std::io::Write;

/// Runs one CLI command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Sessions {
            source,
            who,
            since,
            until,
            namespace,
            json,
        } => {
            let since = since.as_deref().map(time::parse_instant).transpose()?;
            let until = until.as_deref().map(time::parse_instant).transpose()?;
            let filter = sessions::Filter {
                who,
                since,
                until,
                namespace,
            };
            let list = events::list(&source, &filter)?;
            sessions::print(&list, json, out)
        }
        Cmd::Alerts {
            source,
            node,
            namespace,
            pod,
            action,
            since,
            until,
            limit,
            json,
        } => {
            let since = since.as_deref().map(time::parse_instant).transpose()?;
            let until = until.as_deref().map(time::parse_instant).transpose()?;
            // Alerts are journaled by the agent on each node and gathered only at the collector.
            let url = source
                .collector
                .as_deref()
                .ok_or(CliError::AlertsNeedCollector)?;
            let filter = gatehouse_proto::v1::ListAlertsRequest {
                node: node.unwrap_or_default(),
                namespace: namespace.unwrap_or_default(),
                pod: pod.unwrap_or_default(),
                action: action.map(|a| a.as_str().to_string()).unwrap_or_default(),
                since_unix_nano: since.unwrap_or(0),
                until_unix_nano: until.unwrap_or(0),
                limit,
                ..Default::default()
            };
            let list = collector::Remote::connect(url, &source)?.alerts(filter)?;
            alerts::print(&list, json, out)
        }
        Cmd::Show {
            source,
            session,
            verbose,
        } => {
            let (id, events) = events::session(&source, &session, false)?;
            show::print(&events, &id, verbose, out)
        }
        Cmd::Export {
            source,
            session,
            format,
            output,
        } => {
            let (id, events) = events::session(&source, &session, true)?;
            match output {
                Some(path) => {
                    let mut file = export::create_private(&path)?;
                    export::write(&events, &id, format, &mut file)?;
                    file.flush()?;
                    Ok(())
                }
                None => export::write(&events, &id, format, out),
            }
        }
        Cmd::Replay {
            source,
            session,
            speed,
            step,
            idle_limit,
        } => {
            let (id, events) = events::session(&source, &session, false)?;
            replay::run(&events, &id, speed, step, idle_limit, out)
        }
        Cmd::Verify {
            source,
            session,
            file,
            keys,
            keys_url,
            keys_ca,
        } => {
            let keys = verify::load_keys(&keys, keys_url.as_deref(), keys_ca.as_deref())?;
            let (id, events) = match file {
                Some(path) => {
                    let events = verify::load_export(&path)?;
                    let id = sessions::resolve(&events, &session)?;
                    (id, events)
                }
                None => events::session(&source, &session, false)?,
            };
            verify::report(&id, &events, &keys, out)
        }
        Cmd::Kubeconfig(args) => Ok(kubeconfig::run(&args, out)?),
        Cmd::Token(args) => Ok(token::run(&args, out)?),
        Cmd::Policy {
            cmd:
                PolicyCmd::Test {
                    file,
                    user,
                    groups,
                    source,
                    at,
                    request,
                },
        } => {
            let caller = policy::Caller {
                user: &user,
                groups: &groups,
                source: &source,
                at: at.as_deref(),
            };
            policy::test(&file, &caller, &request, out)
        }
        Cmd::Approvals { cmd } => Ok(approvals::run(cmd, out)?),
        Cmd::Grant(args) => Ok(grant::run(&args, out)?),
    }
}
