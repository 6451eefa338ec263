//! The "container" side of exec and attach: a real local process in the pod's directory, on
//! pipes or (for `-t`) on a real pseudo-terminal, driven by protocol-neutral messages.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

/// From the client towards the process.
#[derive(Debug)]
pub enum In {
    Stdin(Bytes),
    StdinClosed,
    Resize {
        width: u16,
        height: u16,
    },
    /// The client went away: stop.
    Gone,
}

/// From the process towards the client.
#[derive(Debug)]
pub enum Out {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The final `metav1.Status` (JSON) for the error channel; nothing follows.
    Status(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub command: Vec<String>,
    pub dir: PathBuf,
    pub tty: bool,
    pub stdin: bool,
}

/// Runs the process until it exits (then sends `Out::Status`) or the client is gone (then
/// kills it and sends nothing).
pub async fn run(spec: Spec, mut input: mpsc::Receiver<In>, out: mpsc::Sender<Out>) {
    let started = if spec.tty {
        start_tty(&spec)
    } else {
        start_pipes(&spec)
    };
    let mut p = match started {
        Ok(p) => p,
        Err(e) => {
            let _ = out
                .send(Out::Status(failure(
                    500,
                    "InternalError",
                    &format!(
                        "failed to exec in container: starting {:?}: {e}",
                        spec.command
                    ),
                    None,
                )))
                .await;
            return;
        }
    };
    let mut readers = tokio::task::JoinSet::new();
    if let Some(r) = p.stdout.take() {
        readers.spawn(pump(r, out.clone(), false));
    }
    if let Some(r) = p.stderr.take() {
        readers.spawn(pump(r, out.clone(), true));
    }
    let mut stdin = p.stdin.take();
    let status = loop {
        tokio::select! {
            msg = input.recv() => match msg {
                Some(In::Stdin(data)) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some(In::StdinClosed) => {
                    // On a terminal, closing stdin means the user's EOF key.
                    if p.tty_path.is_some() {
                        if let Some(w) = stdin.as_mut() {
                            let _ = w.write_all(&[4]).await;
                        }
                    } else {
                        stdin = None;
                    }
                }
                Some(In::Resize { width, height }) => {
                    if let Some(path) = &p.tty_path {
                        resize(path, width, height).await;
                    }
                }
                Some(In::Gone) | None => {
                    let _ = p.child.start_kill();
                    let _ = p.child.wait().await;
                    readers.abort_all();
                    return;
                }
            },
            status = p.child.wait() => break status,
        }
    };
    drop(stdin);
    // Let the readers drain what the process wrote before it exited.
    while readers.join_next().await.is_some() {}
    let body = match status {
        Ok(s) if s.success() => {
            serde_json::to_vec(&json!({"metadata": {}, "status": "Success"})).unwrap_or_default()
        }
        Ok(s) => {
            let code = s.code().unwrap_or(128 + 9);
            failure(
                500,
                "NonZeroExitCode",
                &format!(
                    "command terminated with non-zero exit code: error executing command {:?}, exit code {code}",
                    spec.command
                ),
                Some(code),
            )
        }
        Err(e) => failure(
            500,
            "InternalError",
            &format!("waiting for the process: {e}"),
            None,
        ),
    };
    let _ = out.send(Out::Status(body)).await;
}

fn failure(code: u16, reason: &str, message: &str, exit: Option<i32>) -> Vec<u8> {
    let mut v = json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(exit) = exit {
        v["details"] = json!({"causes": [{"reason": "ExitCode", "message": exit.to_string()}]});
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

struct Started {
    child: tokio::process::Child,
    stdin: Option<Writer>,
    stdout: Option<Reader>,
    stderr: Option<Reader>,
    tty_path: Option<PathBuf>,
}

fn base_command(spec: &Spec, program: &str, args: &[String]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(&spec.dir)
        .env("HOME", &spec.dir)
        .env("TERM", "xterm")
        .kill_on_drop(true);
    c
}

fn start_pipes(spec: &Spec) -> std::io::Result<Started> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command"))?;
    let mut c = base_command(spec, program, args);
    c.stdin(if spec.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn()?;
    Ok(Started {
        stdin: child.stdin.take().map(|w| Box::new(w) as Writer),
        stdout: child.stdout.take().map(|r| Box::new(r) as Reader),
        stderr: child.stderr.take().map(|r| Box::new(r) as Reader),
        child,
        tty_path: None,
    })
}

fn start_tty(spec: &Spec) -> std::io::Result<Started> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    let tty_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))?;
    // `setsid --ctty` makes the terminal the child's controlling terminal without unsafe
    // pre-exec code, so job control and SIGWINCH work as in a real container.
    let mut args = vec!["--ctty".to_string()];
    args.extend(spec.command.iter().cloned());
    let mut c = base_command(spec, "setsid", &args);
    c.stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave));
    let child = c.spawn()?;
    let master: OwnedFd = pty.master;
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master));
    Ok(Started {
        child,
        stdin: Some(Box::new(writer)),
        stdout: Some(Box::new(reader)),
        stderr: None,
        tty_path: Some(tty_path),
    })
}

async fn resize(tty: &Path, width: u16, height: u16) {
    let r = Command::new("stty")
        .arg("-F")
        .arg(tty)
        .args(["rows", &height.to_string(), "cols", &width.to_string()])
        .status()
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "resizing the test terminal failed");
    }
}

async fn pump(mut r: Reader, out: mpsc::Sender<Out>, stderr: bool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            // A pty master reads EIO once the last slave holder exits: that is its EOF.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let msg = if stderr {
                    Out::Stderr(data)
                } else {
                    Out::Stdout(data)
                };
                if out.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }
}
