//! kubectl on the client side of a real pseudo-terminal, for the `-it` tests: a thread collects
//! what it prints (the "screen"), keys are written to the master, `stty` can resize the slave.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub struct Pty {
    master: std::fs::File,
    slave_path: PathBuf,
    screen: Arc<parking_lot::Mutex<Vec<u8>>>,
}

impl Pty {
    /// Runs `cmd` with a fresh 24x80 terminal as its stdin, stdout and stderr (`TERM=xterm`).
    pub fn spawn(mut cmd: tokio::process::Command) -> (Pty, tokio::process::Child) {
        use std::os::fd::AsRawFd;
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
            .expect("the pty slave's path");
        let copy = || Stdio::from(pty.slave.try_clone().expect("dup the pty slave"));
        cmd.stdin(copy())
            .stdout(copy())
            .stderr(copy())
            .env("TERM", "xterm");
        let child = cmd.spawn().expect("spawn under the pty");
        // `cmd` and `pty.slave` hold the last copies of the slave: dropping them lets the
        // master see the end once the child is gone.
        drop(cmd);
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the pty master");
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child (the last slave holder) is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().extend_from_slice(&buf[..n]);
            }
        });
        (
            Pty {
                master,
                slave_path,
                screen,
            },
            child,
        )
    }

    /// The slave's `/dev/pts/N`, for `stty -F … rows … cols …` (a resize kubectl sees).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Types `line` and Enter at once.
    pub fn type_line(&mut self, line: &str) {
        self.master
            .write_all(line.as_bytes())
            .expect("write to the pty");
        self.master.write_all(b"\r").expect("write to the pty");
    }

    /// Types `keys` one at a time, as a person would (each in its own read on the far side).
    pub fn type_keys(&mut self, keys: &[u8]) {
        for k in keys {
            self.master.write_all(&[*k]).expect("write to the pty");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything printed so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock()).into_owned()
    }

    /// Waits up to 30 s for `what` to be on the screen; panics with the screen, naming the case.
    pub async fn wait_for(&self, what: &str, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.screen().contains(what) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {what:?} never appeared; screen:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
