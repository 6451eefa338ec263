//! The pod's main process for `kubectl attach`: started on first attach from the container's
//! `command`/`args` (default `sh`), kept running across attaches; its output goes to whoever
//! is attached, and when it exits every attached client gets its status.
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::process::{self, In, Out, Spec};
use crate::apiserver::State;

pub(crate) struct Main {
    input: mpsc::Sender<In>,
    output: broadcast::Sender<Arc<Out>>,
}

pub(super) fn main_spec(pod: &Value, container: &str, dir: PathBuf) -> Spec {
    let c = super::container_spec(pod, container);
    let strings = |k: &str| -> Vec<String> {
        c.and_then(|c| c.get(k))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut command = strings("command");
    command.extend(strings("args"));
    if command.is_empty() {
        command = vec!["sh".into()];
    }
    let flag = |k: &str, default: bool| {
        c.and_then(|c| c.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(default)
    };
    Spec {
        command,
        dir,
        tty: flag("tty", false),
        stdin: flag("stdin", true),
    }
}

/// The exit code in the process's final `metav1.Status`.
fn exit_code(status: &[u8]) -> i64 {
    let Ok(v) = serde_json::from_slice::<Value>(status) else {
        return 1;
    };
    if v["status"] == "Success" {
        return 0;
    }
    v.pointer("/details/causes/0/message")
        .and_then(Value::as_str)
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
}

/// `ephemeral` names an ephemeral container (namespace, pod, container): its end is
/// reported in the pod's status, and it is not started again.
pub(super) fn main(
    state: &Arc<State>,
    key: &str,
    spec: Spec,
    ephemeral: Option<(String, String, String)>,
) -> Arc<Main> {
    let mut mains = state.streams.mains.lock();
    if let Some(m) = mains.get(key) {
        return m.clone();
    }
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let (bcast, _) = broadcast::channel(1024);
    tokio::spawn(process::run(spec, in_rx, out_tx));
    let m = Arc::new(Main {
        input: in_tx,
        output: bcast.clone(),
    });
    mains.insert(key.to_string(), m.clone());
    let state = state.clone();
    let key = key.to_string();
    tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let last = matches!(o, Out::Status(_));
            if let Out::Status(st) = &o
                && let Some((ns, pod, container)) = &ephemeral
            {
                // Before the attached clients hear of the exit, so they see it in the status.
                crate::apiserver::ephemeral::exited(&state, ns, pod, container, exit_code(st));
            }
            if last {
                // The next attach starts the container's process again (a restart); an
                // ephemeral container's Terminated status refuses that attach instead.
                state.streams.mains.lock().remove(&key);
            }
            let _ = bcast.send(Arc::new(o));
            if last {
                return;
            }
        }
    });
    m
}

impl Main {
    /// A client's view: its input goes to the process (a detach is not a kill), and it sees
    /// output from now on.
    pub(super) fn attach(&self) -> (mpsc::Sender<In>, mpsc::Receiver<Out>) {
        let (in_tx, mut in_rx) = mpsc::channel::<In>(64);
        let (out_tx, out_rx) = mpsc::channel::<Out>(64);
        let input = self.input.clone();
        tokio::spawn(async move {
            while let Some(m) = in_rx.recv().await {
                if matches!(m, In::Gone) {
                    return;
                }
                if input.send(m).await.is_err() {
                    return;
                }
            }
        });
        let mut sub = self.output.subscribe();
        tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(o) => {
                        let o = match &*o {
                            Out::Stdout(d) => Out::Stdout(d.clone()),
                            Out::Stderr(d) => Out::Stderr(d.clone()),
                            Out::Status(s) => Out::Status(s.clone()),
                        };
                        let last = matches!(o, Out::Status(_));
                        if out_tx.send(o).await.is_err() || last {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        (in_tx, out_rx)
    }
}
