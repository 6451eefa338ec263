//! `gatehouse replay`: plays a session's recorded exec/attach output into the terminal with
//! its original timing, read-only and from the recorded events alone (never the cluster).
pub mod player;
mod terminal;
pub mod timeline;

use crate::error::CliError;
use gatehouse_proto::v1::Event;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Replays `session` to `out` (stream banners and notices go to stderr).
pub fn run(
    events: &[Event],
    session: &str,
    speed: f64,
    step: bool,
    idle_limit: Option<f64>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(CliError::Replay(format!(
            "--speed {speed} must be a positive number such as 0.5, 1 or 4"
        )));
    }
    let idle_limit = match idle_limit {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(CliError::Replay(format!(
                "--idle-limit {s} must be a positive number of seconds"
            )));
        }
    };
    let timeline = timeline::build(events, session)
        .ok_or_else(|| CliError::NothingToReplay(session.to_string()))?;
    let opts = player::Options {
        speed,
        step,
        idle_limit,
        resize_escapes: std::io::stdout().is_terminal(),
        local_size: terminal::local_size(),
    };
    let mut viewer = terminal::Viewer::new(step);
    let mut notes = std::io::stderr().lock();
    player::play(&timeline, &opts, &mut viewer, out, &mut notes)?;
    Ok(())
}
