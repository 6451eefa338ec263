//! The `gatehouse` CLI: lists sessions, prints a session's ordered kubectl transcript and
//! exports sessions as JSON from the gateway's local journal; explains policy decisions.
mod args;
mod asciicast;
mod error;
mod events;
mod export;
mod keys_url;
mod kubectl_line;
mod kubeconfig;
mod kubectl_request;
mod policy;
mod replay;
mod sessions;
mod show;
mod time;
mod token;
mod verify;

pub use args::{Cli, Cmd, ExportFormat, PolicyCmd, Source};
pub use error::CliError;
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
            let events = events::load(&source)?;
            let since = since.as_deref().map(time::parse_instant).transpose()?;
            let until = until.as_deref().map(time::parse_instant).transpose()?;
            let filter = sessions::Filter {
                who,
                since,
                until,
                namespace,
            };
            let list = sessions::summarize(&events, &filter);
            sessions::print(&list, json, out)
        }
        Cmd::Show {
            source,
            session,
            verbose,
        } => {
            let events = events::load(&source)?;
            let id = sessions::resolve(&events, &session)?;
            show::print(&events, &id, verbose, out)
        }
        Cmd::Export {
            source,
            session,
            format,
            output,
        } => {
            let events = events::load(&source)?;
            let id = sessions::resolve(&events, &session)?;
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
            let events = events::load(&source)?;
            let id = sessions::resolve(&events, &session)?;
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
            let events = match file {
                Some(path) => verify::load_export(&path)?,
                None => events::load(&source)?,
            };
            let id = sessions::resolve(&events, &session)?;
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
    }
}
