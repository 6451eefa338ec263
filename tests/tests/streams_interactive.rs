//! Interactive streams through the real gateway with real kubectl, v1.35 (WebSocket first,
//! tunnelled port-forward) and v1.29 (SPDY only): `kubectl cp` both ways with the bytes and
//! the recorded tar hash verified, `exec -it` in a real pseudo-terminal with a resize,
//! `attach`, and legacy WebSocket port-forward from a raw WebSocket client. The recordings are
//! then read back with the real `gatehouse show`, `replay` and `export --format asciicast`.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use gatehouse_gateway::streams::ws::{self, Assembler, Message, Sender};
use gatehouse_proto::v1::{StreamChannel, StreamEnded, StreamOpened, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use gatehouse_tests::kubectl::{Kubectl, kubectl_v129_path};
use gatehouse_tests::port_forward;
use gatehouse_tests::pty::Pty;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SPDY: &[(&str, &str)] = &[
    ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
    ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
];

/// One kubectl to test with: its name, binary and forced-protocol environment.
#[derive(Clone)]
struct Client {
    name: &'static str,
    bin: PathBuf,
    env: &'static [(&'static str, &'static str)],
    /// The transport the gateway should see for exec.
    transport: &'static str,
}

fn clients(k: &Kubectl) -> Vec<Client> {
    vec![
        Client {
            name: "v1.35-websocket",
            bin: k.bin.clone(),
            env: &[],
            transport: "websocket",
        },
        Client {
            name: "v1.35-spdy",
            bin: k.bin.clone(),
            env: SPDY,
            transport: "spdy",
        },
        Client {
            name: "v1.29",
            bin: kubectl_v129_path().unwrap(),
            env: &[],
            transport: "spdy",
        },
    ]
}

async fn env() -> GatewayEnv {
    let pod = |name: &str, spec: Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "payments"},
            "spec": spec,
        })
    };
    let opts = ApiServerOptions {
        objects: vec![
            pod(
                "checkout-7b9",
                json!({"containers": [{"name": "app", "image": "busybox", "stdin": true}]}),
            ),
            // attach joins the main process: a shell reading its stdin.
            pod(
                "worker",
                json!({"containers": [{"name": "app", "image": "busybox", "command": ["sh"], "stdin": true}]}),
            ),
        ],
        ..Default::default()
    };
    GatewayEnv::start(opts, &[]).await.unwrap()
}

fn command(k: &Kubectl, c: &Client, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&c.bin);
    cmd.args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, v) in c.env {
        cmd.env(key, v);
    }
    cmd
}

async fn run(
    k: &Kubectl,
    c: &Client,
    args: &[&str],
    stdin: Option<Vec<u8>>,
) -> (Option<i32>, Vec<u8>, String) {
    let mut cmd = command(k, c, args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("kubectl timed out")
        .unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A recorded stream: its opening, frames and end.
struct Recorded {
    session: String,
    opened: StreamOpened,
    frames: Vec<gatehouse_proto::v1::StreamFrame>,
    ended: StreamEnded,
}

impl Recorded {
    fn bytes(&self, ch: StreamChannel) -> Vec<u8> {
        self.frames
            .iter()
            .filter(|f| f.channel == ch as i32)
            .flat_map(|f| f.data.to_vec())
            .collect()
    }
}

/// The `nth` (0-based) recorded stream whose StreamOpened satisfies `pred`, once its end is
/// on record (the gateway writes it after both sides are done, maybe after kubectl exits).
async fn recorded(e: &GatewayEnv, nth: usize, pred: impl Fn(&StreamOpened) -> bool) -> Recorded {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = e.events().unwrap();
        let found = events
            .iter()
            .filter_map(|ev| match &ev.payload {
                Some(Payload::StreamOpened(o)) if pred(o) => Some((ev, o)),
                _ => None,
            })
            .nth(nth);
        if let Some((ev, o)) = found {
            let id = &o.request_event_id;
            let ended = events.iter().find_map(|x| match &x.payload {
                Some(Payload::StreamEnded(s)) if &s.request_event_id == id => Some(s.clone()),
                _ => None,
            });
            if let Some(ended) = ended {
                let frames = events
                    .iter()
                    .filter_map(|x| match &x.payload {
                        Some(Payload::StreamFrame(f)) if &f.request_event_id == id => {
                            Some(f.clone())
                        }
                        _ => None,
                    })
                    .collect();
                return Recorded {
                    session: ev.session_id.clone(),
                    opened: o.clone(),
                    frames,
                    ended,
                };
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recorded stream #{nth} ended in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the real `gatehouse` CLI on the gateway's journal.
fn gatehouse(e: &GatewayEnv, args: &[&str], envs: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
    gatehouse_with_stdin(e, args, envs, b"")
}

fn gatehouse_with_stdin(
    e: &GatewayEnv,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &[u8],
) -> (i32, Vec<u8>, String) {
    let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
    let mut child = std::process::Command::new(bin)
        .args(args)
        .env("GATEHOUSE_JOURNAL", &e.gw.journal_dir)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

/// Extracts `tar` bytes with the real tar into a fresh dir under `base`.
fn untar(base: &Path, name: &str, tar: &[u8]) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new("tar")
        .args(["-xf", "-", "-C"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "the recorded tar stream extracts"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cp_both_ways_is_byte_exact_and_recorded_with_the_tar_hash() {
    let e = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let pod_dir = e.api.pod_dir("payments", "checkout-7b9");
    for (round, c) in clients(&e.agent).into_iter().enumerate() {
        let name = c.name;
        // 300 KiB that no compression or framing would leave alone by accident.
        let content: Vec<u8> = (0..300 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let file = format!("data-{name}.bin");
        let local = tmp.path().join(&file);
        std::fs::write(&local, &content).unwrap();

        // Up: local → container.
        let remote = format!("payments/checkout-7b9:{file}");
        let (code, _, err) = run(
            &e.agent,
            &c,
            &["cp", local.to_str().unwrap(), &remote, "-c", "app"],
            None,
        )
        .await;
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(
            std::fs::read(pod_dir.join(&file)).unwrap(),
            content,
            "{name}: the container got the file byte for byte"
        );
        let up = recorded(&e, 2 * round, |o| {
            o.command.first().is_some_and(|c| c == "tar")
        })
        .await;
        assert_eq!(up.opened.transport, c.transport, "{name}");
        let copy = up.ended.copy.clone().expect("a FileCopy on the cp stream");
        assert_eq!(copy.direction, "to_container", "{name}");
        assert!(!copy.path.is_empty(), "{name}: {copy:?}");
        let sent = up.bytes(StreamChannel::Stdin);
        assert_eq!(copy.tar_bytes, sent.len() as u64, "{name}");
        assert_eq!(copy.tar_sha256.to_vec(), sha256(&sent), "{name}");
        // The recorded stdin is the real tar stream: it holds the file.
        let x = untar(tmp.path(), &format!("up-{name}"), &sent);
        assert_eq!(std::fs::read(x.join(&file)).unwrap(), content, "{name}");
        assert_eq!(up.ended.exit_code, Some(0), "{name}");

        // Down: container → local, after changing the file in the container.
        let changed: Vec<u8> = content.iter().rev().copied().collect();
        std::fs::write(pod_dir.join(&file), &changed).unwrap();
        let back = tmp.path().join(format!("back-{name}.bin"));
        let (code, _, err) = run(
            &e.agent,
            &c,
            &["cp", &remote, back.to_str().unwrap(), "-c", "app"],
            None,
        )
        .await;
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(
            std::fs::read(&back).unwrap(),
            changed,
            "{name}: byte for byte"
        );
        let down = recorded(&e, 2 * round + 1, |o| {
            o.command.first().is_some_and(|c| c == "tar")
        })
        .await;
        let copy = down
            .ended
            .copy
            .clone()
            .expect("a FileCopy on the cp stream");
        assert_eq!(copy.direction, "from_container", "{name}");
        assert!(copy.path.ends_with(&file), "{name}: {copy:?}");
        let got = down.bytes(StreamChannel::Stdout);
        assert_eq!(copy.tar_bytes, got.len() as u64, "{name}");
        assert_eq!(copy.tar_sha256.to_vec(), sha256(&got), "{name}");
        let x = untar(tmp.path(), &format!("down-{name}"), &got);
        assert_eq!(std::fs::read(x.join(&file)).unwrap(), changed, "{name}");

        // The transcript reads as the copy, with its size and hash.
        let (code, out, err) = gatehouse(&e, &["show", &down.session], &[]);
        assert_eq!(code, 0, "{err}");
        let out = String::from_utf8(out).unwrap();
        let hex: String = copy.tar_sha256.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            out.lines().any(|l| l.starts_with(&format!(
                "> kubectl cp payments/checkout-7b9:{file} <local> -c app   # from container: {} B tar, sha256 {hex}",
                copy.tar_bytes
            ))),
            "{name}:\n{out}"
        );
        assert!(
            out.contains("> kubectl cp <local> payments/checkout-7b9:"),
            "{name}:\n{out}"
        );
    }
}

/// kubectl (with this case's protocol settings) on the client side of a real pseudo-terminal.
fn spawn_pty(k: &Kubectl, c: &Client, args: &[&str]) -> (Pty, tokio::process::Child) {
    Pty::spawn(command(k, c, args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_it_in_a_real_terminal_with_a_resize_on_both_protocols_and_versions() {
    let e = env().await;
    let tmp = tempfile::tempdir().unwrap();
    for (round, c) in clients(&e.agent).into_iter().enumerate() {
        let name = c.name;
        let (mut pty, mut child) = spawn_pty(
            &e.agent,
            &c,
            &[
                "exec",
                "-it",
                "checkout-7b9",
                "-n",
                "payments",
                "-c",
                "app",
                "--",
                "sh",
            ],
        );
        // Arithmetic in the commands, so the echo of what was typed never matches.
        pty.type_line("echo ready-$((40+2))");
        pty.wait_for("ready-42", name).await;
        // The initial size travels with the stream's start: ask until the container has it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !pty.screen().contains("24 80") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no initial size"
            );
            pty.type_line("stty size");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The local terminal grows; kubectl learns it from SIGWINCH and sends the resize.
        let st = std::process::Command::new("stty")
            .arg("-F")
            .arg(pty.slave_path())
            .args(["rows", "40", "cols", "120"])
            .status()
            .unwrap();
        assert!(st.success());
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH).unwrap();
        // Resizes are asynchronous: ask until the container's terminal has the new size.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !pty.screen().contains("40 120") {
            assert!(tokio::time::Instant::now() < deadline, "{name}: no resize");
            pty.type_line("stty size");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        pty.type_line("exit 7");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("kubectl exits")
            .unwrap();
        assert_eq!(
            status.code(),
            Some(7),
            "{name}: the exit code reaches kubectl"
        );

        let r = recorded(&e, round, |o| o.tty && o.command == ["sh"]).await;
        assert_eq!(r.opened.transport, c.transport, "{name}");
        assert!(r.opened.stdin && r.opened.tty, "{name}");
        assert_eq!(r.ended.exit_code, Some(7), "{name}: {:?}", r.ended);
        assert!(!r.ended.aborted, "{name}: {:?}", r.ended);
        let sizes: Vec<(u32, u32)> = r
            .frames
            .iter()
            .filter(|f| f.channel == StreamChannel::Resize as i32)
            .filter_map(|f| f.resize.map(|s| (s.width, s.height)))
            .collect();
        assert_eq!(sizes.first(), Some(&(80, 24)), "{name}: {sizes:?}");
        assert!(sizes.contains(&(120, 40)), "{name}: {sizes:?}");
        let typed = String::from_utf8_lossy(&r.bytes(StreamChannel::Stdin)).into_owned();
        assert!(
            typed.contains("exit 7\r"),
            "{name}: stdin recorded: {typed:?}"
        );
        let shown = String::from_utf8_lossy(&r.bytes(StreamChannel::Stdout)).into_owned();
        assert!(shown.contains("40 120"), "{name}");

        // The transcript line, as typed.
        let (code, out, err) = gatehouse(&e, &["show", &r.session], &[]);
        assert_eq!(code, 0, "{err}");
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(
                "> kubectl exec -it checkout-7b9 -n payments -c app -- sh   # exit code 7"
            ),
            "{name}:\n{out}"
        );

        // Replay: the terminal's output, read-only, from the journal alone; a terminal
        // smaller than the recording is told so once.
        let (code, out, err) = gatehouse(
            &e,
            &["replay", &r.session, "--speed", "50", "--idle-limit", "0.2"],
            &[("COLUMNS", "100"), ("LINES", "30")],
        );
        assert_eq!(code, 0, "{name}: {err}");
        // Not a terminal: the bytes exactly as recorded, no resize escapes added. The session
        // holds the earlier rounds' streams too, in order, so this one's output comes last.
        let recorded_out = r.bytes(StreamChannel::Stdout);
        if round == 0 {
            assert_eq!(
                out, recorded_out,
                "{name}: replay prints the recorded output"
            );
        } else {
            assert!(
                out.ends_with(&recorded_out),
                "{name}: replay prints the recorded output"
            );
        }
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("ready-42") && text.contains("40 120"),
            "{name}"
        );
        assert!(
            err.contains("kubectl exec -it checkout-7b9"),
            "{name}: {err}"
        );
        assert!(err.contains("exit code 7"), "{name}: {err}");
        assert_eq!(
            err.matches("the recording is 120x40 but this terminal is 100x30")
                .count(),
            1,
            "{name}: {err}"
        );

        // --step: one output frame per line of (piped) stdin; its end stops the replay.
        if round == 0 {
            let (code, out, err) =
                gatehouse_with_stdin(&e, &["replay", &r.session, "--step"], &[], b"\n\n");
            assert_eq!(code, 0, "{name}: {err}");
            let first_two: Vec<u8> = r
                .frames
                .iter()
                .filter(|f| f.channel == StreamChannel::Stdout as i32)
                .take(2)
                .flat_map(|f| f.data.to_vec())
                .collect();
            assert_eq!(out, first_two, "{name}: two steps, two frames");
        }

        // asciicast v2, checked against the format's spec.
        let (code, out, err) = gatehouse(&e, &["export", &r.session, "--format", "asciicast"], &[]);
        assert_eq!(code, 0, "{name}: {err}");
        let cast = String::from_utf8(out).unwrap();
        std::fs::write(tmp.path().join(format!("{name}.cast")), &cast).unwrap();
        check_asciicast_v2(&cast, name, &r, round == 0);
    }
}

/// The asciicast v2 rules (docs.asciinema.org/manual/asciicast/v2): newline-delimited JSON;
/// the first line a header object with `version` 2, integer `width` and `height`, optional
/// integer `timestamp` and string-map `env`; then `[time, code, data]` arrays with float
/// seconds that never decrease, code one of o/i/m/r, data a string, "r" data `COLSxROWS`.
fn check_asciicast_v2(cast: &str, name: &str, r: &Recorded, only_stream: bool) {
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{name}");
    assert_eq!(header["width"].as_u64(), Some(80), "{name}: {header}");
    assert_eq!(header["height"].as_u64(), Some(24), "{name}: {header}");
    assert!(header["timestamp"].is_u64(), "{name}: {header}");
    assert!(
        header["env"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string),
        "{name}"
    );
    let mut last = 0.0f64;
    let mut output = String::new();
    let mut input = String::new();
    let mut resizes = Vec::new();
    for line in lines {
        let ev: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        let a = ev.as_array().unwrap();
        assert_eq!(a.len(), 3, "{name}: {line}");
        let t = a[0].as_f64().unwrap();
        assert!(t >= last, "{name}: time goes back at {line}");
        last = t;
        let data = a[2].as_str().unwrap();
        match a[1].as_str().unwrap() {
            "o" => output.push_str(data),
            "i" => input.push_str(data),
            "r" => {
                let (w, h) = data.split_once('x').unwrap();
                resizes.push((w.parse::<u32>().unwrap(), h.parse::<u32>().unwrap()));
            }
            other => panic!("{name}: unexpected code {other}"),
        }
    }
    let recorded = r.bytes(StreamChannel::Stdout);
    if only_stream {
        assert_eq!(output.as_bytes(), recorded, "{name}: every output byte");
    } else {
        assert!(
            output.as_bytes().ends_with(&recorded),
            "{name}: every output byte"
        );
    }
    assert!(input.contains("exit 7\r"), "{name}");
    assert!(resizes.contains(&(120, 40)), "{name}: {resizes:?}");
    // The session lasted at least as long as the typing above took.
    assert!(last > 0.1, "{name}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_the_main_process_and_is_recorded() {
    let e = env().await;
    let c = &clients(&e.agent)[..2];
    // The first attach feeds the shell a line, then ends its stdin: the shell exits 5.
    for (i, c) in c.iter().enumerate() {
        let name = c.name;
        let pod = "worker";
        let input = if i + 1 == 2 {
            "echo attached-$((20+3))\nexit 5\n".to_string()
        } else {
            "echo attached-$((10+1))\n".to_string()
        };
        let mut cmd = command(
            &e.agent,
            c,
            &["attach", "-i", pod, "-n", "payments", "-c", "app"],
        );
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let want = if i + 1 == 2 {
            "attached-23"
        } else {
            "attached-11"
        };
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(Duration::from_secs(30), async {
            while !String::from_utf8_lossy(&seen).contains(want) {
                let n = stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "{name}: attach ended early");
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: no output through attach"));
        if i + 1 == 2 {
            drop(stdin);
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                status.code(),
                Some(5),
                "{name}: the main process's exit code"
            );
        } else {
            // Detach by killing kubectl; the main process lives on for the next attach.
            child.kill().await.unwrap();
        }
        let r = recorded(&e, i, |o| o.kind == "attach").await;
        assert_eq!(r.opened.transport, c.transport, "{name}");
        assert_eq!(r.opened.pod, "worker");
        assert!(
            String::from_utf8_lossy(&r.bytes(StreamChannel::Stdin))
                .contains(want.split('-').next().unwrap()),
            "{name}: stdin recorded"
        );
        assert!(
            String::from_utf8_lossy(&r.bytes(StreamChannel::Stdout)).contains(want),
            "{name}: stdout recorded"
        );
        if i + 1 == 2 {
            assert_eq!(r.ended.exit_code, Some(5), "{name}: {:?}", r.ended);
        } else {
            assert!(r.ended.aborted, "{name}: {:?}", r.ended);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_v1_29_exec_and_port_forward_go_over_spdy() {
    let e = env().await;
    let c = clients(&e.agent).pop().unwrap();
    // Non-zero exit, stdout and stderr.
    let (code, out, err) = run(
        &e.agent,
        &c,
        &[
            "exec",
            "checkout-7b9",
            "-n",
            "payments",
            "--",
            "sh",
            "-c",
            "echo old-$((1+2)); echo oops >&2; exit 4",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(4), "{err}");
    assert_eq!(out, b"old-3\n");
    assert!(err.contains("oops"), "{err}");
    let r = recorded(&e, 0, |o| o.command.first().is_some_and(|c| c == "sh")).await;
    assert_eq!(r.opened.transport, "spdy");
    assert_eq!(r.ended.exit_code, Some(4));
    assert_eq!(r.bytes(StreamChannel::Stderr), b"oops\n");
    // Piped stdin.
    let (code, out, err) = run(
        &e.agent,
        &c,
        &["exec", "-i", "checkout-7b9", "-n", "payments", "--", "cat"],
        Some(b"piped through v1.29\n".to_vec()),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"piped through v1.29\n");
    let r = recorded(&e, 0, |o| o.command == ["cat"]).await;
    assert_eq!(r.bytes(StreamChannel::Stdin), b"piped through v1.29\n");

    // Port-forward to a real TCP echo.
    let echo_port = port_forward::echo_server().await.unwrap();
    let local = port_forward::free_port().unwrap();
    let mapping = format!("{local}:{echo_port}");
    let mut child = port_forward::start(command(
        &e.agent,
        &c,
        &port_forward::args("pod/checkout-7b9", "payments", &mapping),
    ))
    .await
    .unwrap();
    let payload: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let got = port_forward::echo(local, &payload).await.unwrap();
    assert_eq!(got, payload);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    let r = recorded(&e, 0, |o| o.kind == "portforward").await;
    assert_eq!(
        r.opened.transport, "spdy",
        "v1.29 has no tunnelled port-forward"
    );
    let conn = &r.ended.connections[0];
    assert_eq!(conn.port, u32::from(echo_port));
    assert_eq!(conn.bytes_to_container, payload.len() as u64);
    assert_eq!(conn.bytes_from_container, payload.len() as u64);
    // The API server saw v1.29 upgrade with SPDY only.
    let reqs = e.api.requests();
    let v129: Vec<_> = reqs
        .iter()
        .filter(|q| q.header("user-agent").is_some_and(|u| u.contains("v1.29")))
        .filter(|q| q.path.ends_with("/exec") || q.path.ends_with("/portforward"))
        .collect();
    assert!(v129.len() >= 3);
    assert!(v129.iter().all(|q| q.header("upgrade") == Some("SPDY/3.1")));
}

/// A raw WebSocket client, as a non-Go client does legacy port-forward: masked frames,
/// `v4.channel.k8s.io`, channel 0 data and 1 errors for the first port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_port_forward_from_a_raw_client_is_relayed_and_recorded() {
    use rustls_pki_types::pem::PemObject;
    let e = env().await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(e.gw.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = e.gw.url.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let token = e.issuer.token("agent-ops", &["agents"], AUDIENCE).unwrap();
    let req = format!(
        "GET /api/v1/namespaces/payments/pods/checkout-7b9/portforward?ports={echo_port} HTTP/1.1\r\n\
         Host: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v4.channel.k8s.io\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the gateway closed before answering");
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    let _ = buf.split_to(head_end);

    let mut asm = Assembler::new(16 << 20);
    // Reads messages until `want` data bytes arrived on channel 0 (after the port prefix).
    let mut prefixes = 0;
    let mut data = Vec::new();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let mut out = BytesMut::new();
    for chunk in payload.chunks(16 * 1024) {
        let mut m = vec![0u8];
        m.extend_from_slice(chunk);
        ws::encode(&mut out, true, ws::OP_BINARY, &m, Some([7, 1, 9, 3]));
    }
    tls.write_all(&out).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            while let Some((frame, n)) = ws::decode(&buf, Sender::Server, 16 << 20).unwrap() {
                let _ = buf.split_to(n);
                if let Some(Message::Binary(b)) = asm.push(frame).unwrap() {
                    let (ch, rest) = b.split_first().unwrap();
                    // The server's first message on each channel is the port, little-endian.
                    if rest.len() == 2 && rest == echo_port.to_le_bytes() && prefixes < 2 {
                        prefixes += 1;
                        continue;
                    }
                    assert_eq!(*ch, 0, "no error-channel text expected");
                    data.extend_from_slice(rest);
                }
            }
            if data.len() >= payload.len() {
                break;
            }
            let n = tls.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended early");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the echo did not come back through the gateway: {} of {} bytes, {prefixes} port prefixes; gateway log:\n{}",
            data.len(),
            payload.len(),
            e.gw.log.lock().join("\n")
        )
    });
    assert_eq!(prefixes, 2, "port prefixes on the data and error channels");
    assert_eq!(data, payload);
    let mut close = BytesMut::new();
    ws::encode(
        &mut close,
        true,
        ws::OP_CLOSE,
        &ws::close_payload(ws::CLOSE_NORMAL, ""),
        Some([1, 2, 3, 4]),
    );
    tls.write_all(&close).await.unwrap();
    let r = recorded(&e, 0, |o| o.kind == "portforward").await;
    assert_eq!(r.opened.transport, "websocket");
    assert_eq!(r.opened.protocol, "v4.channel.k8s.io");
    assert_eq!(r.opened.ports, [u32::from(echo_port)]);
    let conn = &r.ended.connections[0];
    assert_eq!(conn.port, u32::from(echo_port));
    assert_eq!(conn.bytes_to_container, payload.len() as u64);
    assert_eq!(conn.bytes_from_container, payload.len() as u64);
    // Payloads stay out of the journal by default; sizes are kept.
    assert!(
        r.frames
            .iter()
            .filter(|f| f.channel == StreamChannel::PortData as i32)
            .all(|f| f.data.is_empty() && f.data_omitted)
    );
}
