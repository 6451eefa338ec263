//! `kubectl debug` through the real gateway with real kubectl v1.35: it PATCHes
//! `pods/<name>/ephemeralcontainers`, watches the pod until the new container runs, then
//! attaches to it (a real local shell), over WebSocket and over SPDY, with `-i` on pipes and
//! `-it` in a real pseudo-terminal. The transcript holds the PATCH and the attach stream.
#![allow(clippy::unwrap_used)]

use gatehouse_proto::v1::{Event, StreamChannel, StreamEnded, StreamOpened, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::GatewayEnv;
use gatehouse_tests::kubectl::Kubectl;
use gatehouse_tests::pty::Pty;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const SPDY: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];

async fn env() -> GatewayEnv {
    let opts = ApiServerOptions {
        objects: vec![json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "checkout-7b9", "namespace": "payments"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        })],
        ..Default::default()
    };
    GatewayEnv::start(opts, &[]).await.unwrap()
}

fn command(k: &Kubectl, envs: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&k.bin);
    cmd.args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The pod as the API server has it, read directly (not through the gateway).
async fn pod(e: &GatewayEnv) -> Value {
    let out = e
        .direct
        .run(&["get", "pod", "checkout-7b9", "-n", "payments", "-o", "json"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    serde_json::from_str(&out.stdout).unwrap()
}

/// The ephemeral container's status once it has terminated.
async fn terminated(e: &GatewayEnv, container: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = pod(e).await;
        let st = p["status"]["ephemeralContainerStatuses"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == container).cloned());
        if let Some(st) = st
            && st["state"]["terminated"].is_object()
        {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{container} never terminated: {}",
            p["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The recorded PATCH of the ephemeralcontainers subresource adding `container`, and the
/// attach stream to it (opened, frames, end), once the end is on record.
struct Recorded {
    patch: gatehouse_proto::v1::RequestStarted,
    opened: StreamOpened,
    frames: Vec<gatehouse_proto::v1::StreamFrame>,
    ended: StreamEnded,
    events: Vec<Event>,
}

impl Recorded {
    fn bytes(&self, ch: StreamChannel) -> String {
        let b: Vec<u8> = self
            .frames
            .iter()
            .filter(|f| f.channel == ch as i32)
            .flat_map(|f| f.data.to_vec())
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    }
}

async fn recorded(e: &GatewayEnv, container: &str) -> Recorded {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = e.events().unwrap();
        let patch = events.iter().find_map(|ev| match &ev.payload {
            Some(Payload::Request(r))
                if r.request.as_ref().is_some_and(|k| {
                    k.verb == "patch" && k.subresource == "ephemeralcontainers"
                }) && r
                    .body
                    .as_ref()
                    .is_some_and(|b| String::from_utf8_lossy(&b.data).contains(container)) =>
            {
                Some(r.clone())
            }
            _ => None,
        });
        let opened = events.iter().find_map(|ev| match &ev.payload {
            Some(Payload::StreamOpened(o)) if o.kind == "attach" && o.container == container => {
                Some(o.clone())
            }
            _ => None,
        });
        let ended = opened.as_ref().and_then(|o| {
            events.iter().find_map(|x| match &x.payload {
                Some(Payload::StreamEnded(s)) if s.request_event_id == o.request_event_id => {
                    Some(s.clone())
                }
                _ => None,
            })
        });
        if let (Some(patch), Some(opened), Some(ended)) = (patch, opened, ended) {
            let frames = events
                .iter()
                .filter_map(|x| match &x.payload {
                    Some(Payload::StreamFrame(f))
                        if f.request_event_id == opened.request_event_id =>
                    {
                        Some(f.clone())
                    }
                    _ => None,
                })
                .collect();
            return Recorded {
                patch,
                opened,
                frames,
                ended,
                events,
            };
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recorded PATCH and ended attach for {container}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ephemeral container, its target and the transcript as every case checks them.
async fn check_recorded(e: &GatewayEnv, name: &str, container: &str, transport: &str) -> Recorded {
    let p = pod(e).await;
    let ec = p["spec"]["ephemeralContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == container).cloned())
        .unwrap_or_else(|| panic!("{name}: no ephemeral container {container}: {}", p["spec"]));
    assert_eq!(ec["image"], "busybox", "{name}");
    assert_eq!(ec["targetContainerName"], "app", "{name}");
    let st = terminated(e, container).await;
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{name}: {st}");

    let r = recorded(e, container).await;
    let req = r.patch.request.as_ref().unwrap();
    assert_eq!(req.method, "PATCH", "{name}");
    assert_eq!(
        (req.namespace.as_str(), req.name.as_str()),
        ("payments", "checkout-7b9"),
        "{name}"
    );
    let body = r.patch.body.as_ref().unwrap();
    assert_eq!(
        body.content_type, "application/strategic-merge-patch+json",
        "{name}"
    );
    let patch: Value = serde_json::from_slice(&body.data).unwrap();
    let added = patch["spec"]["ephemeralContainers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == container).cloned())
        .unwrap_or_else(|| panic!("{name}: the recorded patch lacks {container}: {patch}"));
    assert_eq!(added["targetContainerName"], "app", "{name}");
    assert!(
        r.patch.command.contains("ephemeralcontainers"),
        "{name}: {}",
        r.patch.command
    );
    // The PATCH succeeded, and kubectl watched the pod for the container to run.
    let patch_id = r
        .events
        .iter()
        .find(|ev| matches!(&ev.payload, Some(Payload::Request(x)) if *x == r.patch))
        .map(|ev| ev.event_id.clone())
        .unwrap();
    let status = r.events.iter().find_map(|ev| match &ev.payload {
        Some(Payload::Response(x)) if x.request_event_id == patch_id => Some(x.status_code),
        _ => None,
    });
    assert_eq!(status, Some(200), "{name}: the PATCH's response");
    assert!(
        r.events.iter().any(|ev| matches!(&ev.payload,
            Some(Payload::Request(x)) if x.request.as_ref().is_some_and(|k| k.verb == "watch" && k.resource == "pods"))),
        "{name}: kubectl watched the pod"
    );
    assert_eq!(r.opened.transport, transport, "{name}");
    assert_eq!(r.opened.pod, "checkout-7b9", "{name}");
    assert!(r.opened.stdin, "{name}");
    assert_eq!(r.ended.exit_code, Some(0), "{name}: {:?}", r.ended);
    assert!(!r.ended.aborted, "{name}: {:?}", r.ended);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_i_patches_an_ephemeral_container_and_attaches_on_both_protocols() {
    let e = env().await;
    for (name, envs, transport) in [("websocket", &[][..], "websocket"), ("spdy", SPDY, "spdy")] {
        let container = format!("dbg-{name}");
        let mut cmd = command(
            &e.agent,
            envs,
            &[
                "debug",
                "checkout-7b9",
                "-n",
                "payments",
                "--image=busybox",
                "--target=app",
                "-c",
                &container,
                "-i",
                "--",
                "sh",
                "-c",
                "read line; echo got-$line; echo hi-$((40+2)); echo oops >&2",
            ],
        );
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed\n").await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl debug timed out")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}\n{stderr}");
        // kubectl's own note about --target, then the container's output.
        assert_eq!(
            stdout,
            "Targeting container \"app\". If you don't see processes from this container it may be because the container runtime doesn't support this feature.\ngot-typed\nhi-42\n",
            "{name}: {stderr}"
        );
        assert!(stderr.contains("oops"), "{name}: {stderr}");
        assert!(!stderr.contains("couldn't attach"), "{name}: {stderr}");

        let r = check_recorded(&e, name, &container, transport).await;
        assert!(!r.opened.tty, "{name}");
        assert_eq!(r.bytes(StreamChannel::Stdin), "typed\n", "{name}");
        assert_eq!(
            r.bytes(StreamChannel::Stdout),
            "got-typed\nhi-42\n",
            "{name}"
        );
        assert_eq!(r.bytes(StreamChannel::Stderr), "oops\n", "{name}");
    }
    // Existing ephemeral containers are immutable and never restarted.
    let again = e
        .agent
        .run(&[
            "attach",
            "checkout-7b9",
            "-n",
            "payments",
            "-c",
            "dbg-websocket",
        ])
        .await
        .unwrap();
    assert!(!again.success(), "{again}");
    assert!(again.stderr.contains("has terminated"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_it_in_a_real_terminal_on_both_protocols() {
    let e = env().await;
    for (name, envs, transport) in [("websocket", &[][..], "websocket"), ("spdy", SPDY, "spdy")] {
        let container = format!("tty-{name}");
        let cmd = command(
            &e.agent,
            envs,
            &[
                "debug",
                "-it",
                "checkout-7b9",
                "-n",
                "payments",
                "--image=busybox",
                "--target=app",
                "-c",
                &container,
                "--",
                "sh",
            ],
        );
        let (mut pty, mut child) = Pty::spawn(cmd);
        // Arithmetic in the command, so the echo of what was typed never matches. The shell
        // may start before kubectl has attached: type until the answer shows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !pty.screen().contains("debugging-42") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no shell; screen:\n{}",
                pty.screen()
            );
            pty.type_line("echo debugging-$((6*7))");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The container has a terminal of kubectl's size.
        pty.type_line("stty size");
        pty.wait_for("24 80", name).await;
        pty.type_line("exit");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("kubectl debug exits")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{name}: screen:\n{}", pty.screen());
        assert!(
            !pty.screen().contains("couldn't attach"),
            "{name}: {}",
            pty.screen()
        );

        let r = check_recorded(&e, name, &container, transport).await;
        assert!(r.opened.tty, "{name}");
        assert!(
            r.bytes(StreamChannel::Stdin)
                .contains("echo debugging-$((6*7))"),
            "{name}: stdin recorded"
        );
        assert!(
            r.bytes(StreamChannel::Stdout).contains("debugging-42"),
            "{name}: stdout recorded"
        );
        assert!(
            r.frames
                .iter()
                .any(|f| f.channel == StreamChannel::Resize as i32),
            "{name}: the terminal size is recorded"
        );
    }
}
