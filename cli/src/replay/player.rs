//! Plays a timeline: waits between cues (scaled by the speed, idle gaps capped), or one
//! output frame per step; writes the recorded output unchanged and says what it cannot show.
use super::timeline::{Timeline, What};
use std::io::{self, Write};
use std::time::Duration;

/// What the viewer wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Go,
    Quit,
}

/// The source of time and of the viewer's keys (a fake one in tests).
pub trait Pacer {
    /// Lets `d` pass, honouring pause; `Quit` when the viewer quit meanwhile.
    fn wait(&mut self, d: Duration) -> Control;
    /// Blocks until the viewer asks for the next frame.
    fn next_step(&mut self) -> Control;
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Playback speed factor (2.0 plays twice as fast).
    pub speed: f64,
    /// One output frame per step instead of the original timing.
    pub step: bool,
    /// Longest pause replayed; longer recorded idle gaps are shortened to it.
    pub idle_limit: Option<Duration>,
    /// Ask the terminal to take each recorded size (xterm's `CSI 8 ; rows ; cols t`). Only
    /// sensible when the output is a terminal: a file would get the escapes in its bytes.
    pub resize_escapes: bool,
    /// The local terminal's size (columns, rows), when known.
    pub local_size: Option<(u32, u32)>,
}

/// What was played.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Played {
    pub output_bytes: u64,
    pub quit: bool,
}

/// Plays `t`: recorded output to `out` as is; stream banners and notices to `notes`.
pub fn play(
    t: &Timeline,
    opts: &Options,
    pacer: &mut dyn Pacer,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> io::Result<Played> {
    let mut played = Played::default();
    let mut prev = 0u64;
    let mut warned_small = false;
    for cue in &t.cues {
        // Input is not shown (a terminal's echo is already in the output), so its gap folds
        // into the next cue's.
        if matches!(cue.what, What::Input(_)) {
            continue;
        }
        let gap = cue.at.saturating_sub(prev);
        prev = cue.at;
        let control = match (&cue.what, opts.step) {
            (What::Output(_), true) => pacer.next_step(),
            (_, true) => Control::Go,
            (_, false) => pacer.wait(scaled(gap, opts)),
        };
        if control == Control::Quit {
            played.quit = true;
            break;
        }
        match &cue.what {
            What::Start { command, tty } => {
                let mode = if *tty { "terminal" } else { "no terminal" };
                writeln!(notes, "gatehouse replay: {command}  ({mode})")?;
            }
            What::Output(data) => {
                out.write_all(data)?;
                out.flush()?;
                played.output_bytes += data.len() as u64;
            }
            What::Resize { width, height } => {
                if opts.resize_escapes {
                    write!(out, "\x1b[8;{height};{width}t")?;
                    out.flush()?;
                }
                // A smaller terminal wraps the recorded lines; the bytes are replayed as they
                // were, never rewritten, so the viewer is told once rather than shown a mangle.
                if let Some((cols, rows)) = opts.local_size
                    && (*width > cols || *height > rows)
                    && !warned_small
                {
                    warned_small = true;
                    writeln!(
                        notes,
                        "gatehouse replay: the recording is {width}x{height} but this terminal is {cols}x{rows}: enlarge it, or full-screen programs will look mangled"
                    )?;
                }
            }
            What::End { exit_code, aborted } => match (exit_code, aborted) {
                (Some(c), _) => writeln!(notes, "gatehouse replay: exit code {c}")?,
                (None, true) => writeln!(notes, "gatehouse replay: aborted (no exit status)")?,
                (None, false) => writeln!(notes, "gatehouse replay: ended")?,
            },
            What::Input(_) => {}
        }
    }
    Ok(played)
}

fn scaled(gap_nanos: u64, opts: &Options) -> Duration {
    let mut d = Duration::from_nanos(gap_nanos);
    if let Some(limit) = opts.idle_limit {
        d = d.min(limit);
    }
    d.div_f64(opts.speed)
}

#[cfg(test)]
mod tests {
    use super::super::timeline::Cue;
    use super::*;

    /// Records the waits; answers steps from a script.
    #[derive(Default)]
    struct Fake {
        waits: Vec<Duration>,
        steps: Vec<Control>,
        steps_taken: usize,
    }

    impl Pacer for Fake {
        fn wait(&mut self, d: Duration) -> Control {
            self.waits.push(d);
            Control::Go
        }
        fn next_step(&mut self) -> Control {
            self.steps_taken += 1;
            self.steps
                .get(self.steps_taken - 1)
                .copied()
                .unwrap_or(Control::Quit)
        }
    }

    const S: u64 = 1_000_000_000;

    fn timeline() -> Timeline {
        let cue = |at, what| Cue { at, what };
        Timeline {
            cues: vec![
                cue(
                    0,
                    What::Start {
                        command: "kubectl exec -it p -- sh".into(),
                        tty: true,
                    },
                ),
                cue(
                    S / 10,
                    What::Resize {
                        width: 120,
                        height: 40,
                    },
                ),
                cue(S, What::Output(b"$ ".to_vec())),
                cue(2 * S, What::Input(b"l".to_vec())),
                cue(3 * S, What::Output(b"ls\r\n".to_vec())),
                cue(
                    3 * S,
                    What::Resize {
                        width: 100,
                        height: 30,
                    },
                ),
                cue(63 * S, What::Output(b"a b\r\n".to_vec())),
                cue(
                    64 * S,
                    What::End {
                        exit_code: Some(0),
                        aborted: false,
                    },
                ),
            ],
            start_unix_nanos: 0,
            first_size: Some((120, 40)),
        }
    }

    fn opts() -> Options {
        Options {
            speed: 1.0,
            step: false,
            idle_limit: None,
            resize_escapes: false,
            local_size: None,
        }
    }

    fn run(o: &Options, pacer: &mut Fake) -> (Played, Vec<u8>, String) {
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        let p = play(&timeline(), o, pacer, &mut out, &mut notes).unwrap();
        (p, out, String::from_utf8(notes).unwrap())
    }

    #[test]
    fn original_timing_is_kept_and_output_is_unchanged() {
        let mut f = Fake::default();
        let (p, out, notes) = run(&opts(), &mut f);
        assert_eq!(out, b"$ ls\r\na b\r\n");
        assert_eq!(p.output_bytes, 11);
        // The input cue is skipped, so its gap folds into the next wait.
        let secs: Vec<f64> = f.waits.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, vec![0.0, 0.1, 0.9, 2.0, 0.0, 60.0, 1.0]);
        assert!(notes.contains("kubectl exec -it p -- sh"), "{notes}");
        assert!(notes.contains("exit code 0"), "{notes}");
        assert!(!notes.contains("enlarge"), "size unknown: no notice");
    }

    #[test]
    fn speed_divides_and_idle_limit_caps_the_gaps() {
        let mut f = Fake::default();
        let o = Options {
            speed: 4.0,
            idle_limit: Some(Duration::from_secs(2)),
            ..opts()
        };
        run(&o, &mut f);
        let secs: Vec<f64> = f.waits.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, vec![0.0, 0.025, 0.225, 0.5, 0.0, 0.5, 0.25]);
    }

    #[test]
    fn step_plays_one_output_frame_per_step_and_stops_on_quit() {
        let mut f = Fake {
            steps: vec![Control::Go, Control::Go, Control::Quit],
            ..Default::default()
        };
        let o = Options {
            step: true,
            ..opts()
        };
        let (p, out, _) = run(&o, &mut f);
        assert_eq!(out, b"$ ls\r\n");
        assert!(p.quit);
        assert_eq!(f.steps_taken, 3);
        assert!(f.waits.is_empty(), "no timed waits in step mode");
    }

    #[test]
    fn resize_is_emitted_and_a_smaller_terminal_is_told_once() {
        let mut f = Fake::default();
        let o = Options {
            resize_escapes: true,
            local_size: Some((80, 24)),
            ..opts()
        };
        let (_, out, notes) = run(&o, &mut f);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("\x1b[8;40;120t$ "), "{out:?}");
        assert!(out.contains("\x1b[8;30;100t"), "{out:?}");
        assert_eq!(notes.matches("enlarge it").count(), 1, "{notes}");
        assert!(
            notes.contains("120x40 but this terminal is 80x24"),
            "{notes}"
        );
        // A big enough terminal gets no notice.
        let o = Options {
            local_size: Some((200, 50)),
            ..opts()
        };
        let (_, _, notes) = run(&o, &mut Fake::default());
        assert!(!notes.contains("enlarge"), "{notes}");
    }
}
