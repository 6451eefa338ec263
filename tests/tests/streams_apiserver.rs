//! Real kubectl v1.35 straight to the test API server's exec, attach and port-forward, on each
//! protocol path, so the gateway tests (`streams_gateway.rs`) start from a proven server.
#![allow(clippy::unwrap_used)]

use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions, TestApiServer};
use gatehouse_tests::kubectl::Kubectl;
use serde_json::json;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Forces kubectl's SPDY path (it tries WebSocket first otherwise).
pub const SPDY: &[(&str, &str)] = &[
    ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
    ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
];
pub const WEBSOCKET: &[(&str, &str)] = &[];

fn opts() -> ApiServerOptions {
    ApiServerOptions {
        objects: vec![json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "shell", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "stdin": true}]}
        })],
        ..Default::default()
    }
}

async fn run(
    k: &Kubectl,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (Option<i32>, Vec<u8>, String) {
    let mut c = tokio::process::Command::new(&k.bin);
    c.args(args)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, v) in env {
        c.env(key, v);
    }
    let mut child = c.spawn().unwrap();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl timed out")
        .unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_codes_and_stdin_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApiServer::start(opts()).await.unwrap();
    let k = Kubectl::new(dir.path(), &api.kubeconfig(ADMIN_TOKEN)).unwrap();
    for (name, env) in [("websocket", WEBSOCKET), ("spdy", SPDY)] {
        let (code, out, err) = run(
            &k,
            env,
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; pwd",
            ],
            None,
        )
        .await;
        assert_eq!(code, Some(0), "{name}: {err}");
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("out\n"), "{name}: {out}");
        assert!(
            out.trim_end().ends_with("/default/shell"),
            "{name}: runs in the pod dir: {out}"
        );
        assert!(err.contains("err"), "{name}: stderr: {err}");

        let (code, _, err) = run(
            &k,
            env,
            &["exec", "shell", "--", "sh", "-c", "exit 7"],
            None,
        )
        .await;
        assert_eq!(code, Some(7), "{name}: {err}");

        let (code, out, err) = run(
            &k,
            env,
            &["exec", "-i", "shell", "--", "cat"],
            Some(b"hi there\n"),
        )
        .await;
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(out, b"hi there\n", "{name}");
    }
    let reqs = api.requests();
    let execs: Vec<_> = reqs.iter().filter(|r| r.path.ends_with("/exec")).collect();
    assert!(
        execs
            .iter()
            .any(|r| r.header("upgrade") == Some("websocket"))
    );
    assert!(
        execs
            .iter()
            .any(|r| r.header("upgrade") == Some("SPDY/3.1"))
    );
}

/// The TLS relay the stream benchmarks compare the gateway with carries kubectl's exec on both
/// protocols and its ordinary requests (ALPN passed through), byte for byte, also when it writes
/// and hashes what it carries; the files it wrote are gone once the connections are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_tls_relay_carries_exec_and_requests() {
    use gatehouse_tests::tls_relay::{Keep, TlsRelay};
    let dir = tempfile::tempdir().unwrap();
    let api = TestApiServer::start(opts()).await.unwrap();
    let files = dir.path().join("kept");
    std::fs::create_dir_all(&files).unwrap();
    let keeping =
        TlsRelay::start_keeping(api.addr(), api.ca_pem(), Keep::WriteSha256(files.clone()))
            .unwrap();
    let kept = Kubectl::new(
        &dir.path().join("kept-home"),
        &keeping.kubeconfig(ADMIN_TOKEN),
    )
    .unwrap();
    let (code, out, err) = run(
        &kept,
        SPDY,
        &["exec", "-i", "shell", "--", "sh", "-c", "cat; exit 3"],
        Some(b"kept on the way\n"),
    )
    .await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(out, b"kept on the way\n", "{err}");
    let left = || std::fs::read_dir(&files).unwrap().count();
    for _ in 0..50 {
        if left() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        left(),
        0,
        "the relay removes its files when a connection ends"
    );

    let relay = TlsRelay::start(api.addr(), api.ca_pem()).unwrap();
    let k = Kubectl::new(dir.path(), &relay.kubeconfig(ADMIN_TOKEN)).unwrap();
    for (name, env) in [("websocket", WEBSOCKET), ("spdy", SPDY)] {
        let (code, out, err) = run(
            &k,
            env,
            &["exec", "-i", "shell", "--", "sh", "-c", "cat; exit 3"],
            Some(b"through the relay\n"),
        )
        .await;
        assert_eq!(code, Some(3), "{name}: {err}");
        assert_eq!(out, b"through the relay\n", "{name}: {err}");
    }
    let (code, out, err) = run(&k, WEBSOCKET, &["get", "pod", "shell", "-o", "name"], None).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"pod/shell\n");
    // Everything reached the server; nothing was answered by the relay itself.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path == "/api/v1/namespaces/default/pods/shell"),
        "{:?}",
        api.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

/// The reference reverse proxy `bench gateway` measures (Debian's nginx) carries kubectl's
/// requests to the test API server, errors included, over verified TLS both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_nginx_proxy_carries_kubectl_requests() {
    use gatehouse_tests::nginx_proxy::NginxProxy;
    let dir = tempfile::tempdir().unwrap();
    let api = TestApiServer::start(opts()).await.unwrap();
    let nginx = NginxProxy::start(api.addr(), api.ca_pem(), 1).unwrap();
    assert_eq!(nginx.pids().len(), 2, "the master and its one worker");
    let k = Kubectl::new(dir.path(), &nginx.kubeconfig(ADMIN_TOKEN)).unwrap();
    let (code, out, err) = run(&k, WEBSOCKET, &["get", "pod", "shell", "-o", "name"], None).await;
    assert_eq!(code, Some(0), "{err}\nnginx: {}", nginx.error_log());
    assert_eq!(out, b"pod/shell\n");
    let (code, _, err) = run(&k, WEBSOCKET, &["get", "pod", "missing"], None).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(r#"Error from server (NotFound): pods "missing" not found"#),
        "{err}"
    );
    let seen: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces/default/pods/"))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // nginx speaks HTTP/1.1 upstream, with kept-alive connections.
    assert!(seen.iter().all(|r| r.version == "HTTP/1.1"), "{seen:?}");
}
