//! The viewer's terminal: keys read on a thread (space pauses, Enter steps, q quits), the
//! terminal in non-canonical mode while replaying (restored on drop), and its size. Uses
//! `stty` rather than termios calls so the CLI needs no unsafe code.
use super::player::{Control, Pacer};
use std::io::{IsTerminal, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Space,
    Enter,
    Quit,
    Other,
}

fn key(b: u8) -> Key {
    match b {
        b' ' => Key::Space,
        b'\n' | b'\r' => Key::Enter,
        // q, Ctrl-C and Ctrl-D: the terminal's signals are off while replaying.
        b'q' | b'Q' | 3 | 4 => Key::Quit,
        _ => Key::Other,
    }
}

/// Puts stdin's terminal back as it was.
struct RawGuard {
    saved: String,
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        let _ = Command::new("stty")
            .arg(&self.saved)
            .stdin(Stdio::inherit())
            .status();
    }
}

fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The real pacer: wall-clock waits, and the viewer's keys when stdin can give them.
pub struct Viewer {
    keys: Option<Receiver<Key>>,
    _raw: Option<RawGuard>,
}

impl Viewer {
    /// Reads keys from stdin when it is a terminal (pause and step) or when stepping (one
    /// line per step, so steps can be piped); otherwise stdin is left alone.
    pub fn new(step: bool) -> Viewer {
        let tty = std::io::stdin().is_terminal();
        let raw = if tty {
            stty(&["-g"]).and_then(|saved| {
                stty(&["-icanon", "-echo", "-isig", "min", "1", "time", "0"])
                    .map(|_| RawGuard { saved })
            })
        } else {
            None
        };
        let keys = (tty || step).then(|| {
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut b = [0u8; 1];
                while let Ok(1) = stdin.read(&mut b) {
                    if tx.send(key(b[0])).is_err() {
                        return;
                    }
                }
            });
            rx
        });
        Viewer { keys, _raw: raw }
    }
}

impl Pacer for Viewer {
    fn wait(&mut self, d: Duration) -> Control {
        let mut deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Control::Go;
            }
            let Some(keys) = &self.keys else {
                std::thread::sleep(deadline - now);
                return Control::Go;
            };
            match keys.recv_timeout(deadline - now) {
                Err(RecvTimeoutError::Timeout) => return Control::Go,
                Err(RecvTimeoutError::Disconnected) => self.keys = None,
                Ok(Key::Quit) => return Control::Quit,
                Ok(Key::Space) => {
                    // Paused: the rest of this wait resumes where it stopped.
                    let left = deadline.saturating_duration_since(Instant::now());
                    loop {
                        match keys.recv() {
                            Ok(Key::Space) => break,
                            Ok(Key::Quit) | Err(_) => return Control::Quit,
                            Ok(_) => {}
                        }
                    }
                    deadline = Instant::now() + left;
                }
                Ok(_) => {}
            }
        }
    }

    fn next_step(&mut self) -> Control {
        let Some(keys) = &self.keys else {
            return Control::Quit;
        };
        loop {
            match keys.recv() {
                Ok(Key::Enter | Key::Space) => return Control::Go,
                Ok(Key::Quit) | Err(_) => return Control::Quit,
                Ok(Key::Other) => {}
            }
        }
    }
}

/// The local terminal's size (columns, rows): asked of the terminal when stdout is one,
/// else taken from `COLUMNS` and `LINES` when both are set.
pub fn local_size() -> Option<(u32, u32)> {
    if std::io::stdout().is_terminal()
        && let Ok(tty) = std::fs::File::open("/dev/tty")
        && let Ok(out) = Command::new("stty")
            .arg("size")
            .stdin(tty)
            .stderr(Stdio::null())
            .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(str::parse::<u32>);
        if let (Some(Ok(rows)), Some(Ok(cols))) = (it.next(), it.next()) {
            return Some((cols, rows));
        }
    }
    let env = |k: &str| std::env::var(k).ok()?.trim().parse::<u32>().ok();
    Some((env("COLUMNS")?, env("LINES")?))
}
