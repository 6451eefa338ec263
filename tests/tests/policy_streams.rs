#![allow(clippy::unwrap_used)]
//! Policy inside interactive streams, with real kubectl v1.35 (WebSocket and SPDY) through the
//! real `gateway`: a TTY line refused by a `stdin` rule never runs, the user is told, the shell
//! goes on and the refusal is on record naming the rule; the detectors of a `mask` rule run over
//! exec output, a key split across two frames included (recording masked and the count on
//! `StreamEnded`; live too in DLP).
use gatehouse_proto::v1::{Event, StreamChannel, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::GatewayEnv;
use gatehouse_tests::kubectl::Kubectl;
use gatehouse_tests::pty::Pty;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;

const SPDY: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

const POLICY: &str = r#"version: 1
default:
  action: allow
rules:
  - name: no-boom
    match:
      stdin: ["echo boom*"]
    action: deny
    message: "boom is not allowed here"
  - name: mask-dlp-exec
    match:
      subresources: [exec]
      exec:
        argv: ["*dlp*"]
    action: mask
    mask:
      dlp: true
  - name: mask-exec
    match:
      subresources: [exec]
      exec:
        argv: ["*masked*"]
    action: mask
"#;

async fn env() -> (GatewayEnv, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let opts = ApiServerOptions {
        objects: vec![json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "checkout-7b9", "namespace": "payments"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "stdin": true}]},
        })],
        ..Default::default()
    };
    let args = [
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", path.display()),
    ];
    (GatewayEnv::start(opts, &args).await.unwrap(), dir)
}

fn command(k: &Kubectl, env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&k.bin);
    cmd.args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, v) in env {
        cmd.env(key, v);
    }
    cmd
}

/// Events of the stream whose `StreamOpened` is the `nth` with `command`, once it ended.
async fn stream_events(e: &GatewayEnv, command: &[&str], nth: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = e.events().unwrap();
        let id = events
            .iter()
            .filter_map(|ev| match &ev.payload {
                Some(Payload::StreamOpened(o)) if o.command == command => {
                    Some(o.request_event_id.clone())
                }
                _ => None,
            })
            .nth(nth);
        if let Some(id) = id {
            let session = events
                .iter()
                .find(|ev| ev.event_id == id)
                .map(|ev| ev.session_id.clone())
                .unwrap();
            let ended = events.iter().any(
                |ev| matches!(&ev.payload, Some(Payload::StreamEnded(s)) if s.request_event_id == id),
            );
            if ended {
                return events
                    .into_iter()
                    .filter(|ev| ev.session_id == session)
                    .filter(|ev| match &ev.payload {
                        Some(Payload::StreamFrame(f)) => f.request_event_id == id,
                        Some(Payload::StreamEnded(s)) => s.request_event_id == id,
                        Some(Payload::Denied(_)) => true,
                        _ => false,
                    })
                    .collect();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream #{nth} of {command:?} not ended in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn channel_bytes(events: &[Event], ch: StreamChannel) -> Vec<u8> {
    events
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(Payload::StreamFrame(f)) if f.channel == ch as i32 => Some(f.data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tty_line_never_runs_and_the_refusal_names_the_rule() {
    let (e, _dir) = env().await;
    for (round, (name, envs)) in [("websocket", &[][..]), ("spdy", SPDY)]
        .into_iter()
        .enumerate()
    {
        let args = [
            "exec",
            "-it",
            "checkout-7b9",
            "-n",
            "payments",
            "-c",
            "app",
            "--",
            "sh",
        ];
        let (mut pty, mut child) = Pty::spawn(command(&e.agent, envs, &args));
        pty.type_keys(b"echo ready-$((40+2))\r");
        pty.wait_for("ready-42", name).await;
        // Typed with a correction: the line the shell would run is `echo boom-$((1+1))`.
        pty.type_keys(b"echo bx\x7foom-$((1+1))\r");
        pty.wait_for("boom is not allowed here (line not run)", name)
            .await;
        // The shell is still there, and what was typed after the refusal runs.
        pty.type_keys(b"echo after-$((2+2))\r");
        pty.wait_for("after-4", name).await;
        assert!(
            !pty.screen().contains("boom-2"),
            "{name}: the refused line ran:\n{}",
            pty.screen()
        );
        pty.type_keys(b"exit 3\r");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("kubectl exits")
            .unwrap();
        assert_eq!(status.code(), Some(3), "{name}: {}", pty.screen());

        let events = stream_events(&e, &["sh"], round).await;
        let refusals: Vec<_> = events
            .iter()
            .filter_map(|ev| match &ev.payload {
                Some(Payload::Denied(d)) => Some(d.clone()),
                _ => None,
            })
            .collect();
        assert!(
            refusals.iter().any(|d| d.status_code == 403
                && d.command == "echo boom-$((1+1))"
                && d.message
                    == "stdin line refused by policy rule \"no-boom\": boom is not allowed here"),
            "{name}: {refusals:?}"
        );
        // The container got the line cancelled: Ctrl-E Ctrl-U before its Enter.
        let typed =
            String::from_utf8_lossy(&channel_bytes(&events, StreamChannel::Stdin)).into_owned();
        assert!(
            typed.contains("\x05\x15\r") && typed.contains("after-$((2+2))\r"),
            "{name}: {typed:?}"
        );
        let ended = events.iter().find_map(|ev| match &ev.payload {
            Some(Payload::StreamEnded(s)) => Some(s.clone()),
            _ => None,
        });
        assert_eq!(ended.unwrap().exit_code, Some(3), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_is_masked_across_frames_in_the_recording_and_live_in_dlp_mode() {
    let (e, _dir) = env().await;
    let (a, b) = KEY.split_at(9);
    // The pause makes the key cross two frames; the quotes keep its halves out of the argv.
    let script = |tag: &str| {
        format!(
            "printf 'key={}''{}'; sleep 0.5; printf '{}''{} done\\n'; : {tag}",
            &a[..4],
            &a[4..],
            &b[..4],
            &b[4..]
        )
    };
    for (round, (name, envs)) in [("websocket", &[][..]), ("spdy", SPDY)]
        .into_iter()
        .enumerate()
    {
        for (tag, dlp) in [("masked", false), ("dlp", true)] {
            let s = script(tag);
            let args = [
                "exec",
                "checkout-7b9",
                "-n",
                "payments",
                "-c",
                "app",
                "--",
                "sh",
                "-c",
                &s,
            ];
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                command(&e.agent, envs, &args).output(),
            )
            .await
            .unwrap()
            .unwrap();
            let shown = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} {tag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let events = stream_events(&e, &["sh", "-c", &s], round).await;
            let recorded = String::from_utf8_lossy(&channel_bytes(&events, StreamChannel::Stdout))
                .into_owned();
            assert!(
                recorded.starts_with("key=***") && recorded.ends_with(" done\n"),
                "{name} {tag}: {recorded:?}"
            );
            assert!(!recorded.contains(&KEY[..4]), "{name} {tag}: {recorded:?}");
            // The one key, split over two frames, is one masked value on the stream's end.
            let masked = events.iter().find_map(|ev| match &ev.payload {
                Some(Payload::StreamEnded(s)) => Some(s.masked_values),
                _ => None,
            });
            assert_eq!(masked, Some(1), "{name} {tag}: StreamEnded.masked_values");
            if dlp {
                assert_eq!(shown, recorded, "{name} {tag}: the caller sees it masked");
            } else {
                assert_eq!(shown, format!("key={KEY} done\n"), "{name} {tag}");
            }
            let raw: Vec<u8> = e
                .events()
                .unwrap()
                .iter()
                .flat_map(prost::Message::encode_to_vec)
                .collect();
            assert!(
                !raw.windows(9).any(|w| w == a.as_bytes()),
                "{name} {tag}: the key's first half reached the journal"
            );
        }
    }
}
