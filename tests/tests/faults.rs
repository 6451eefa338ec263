//! Faults, with the real gateway binary and real kubectl v1.35: the gateway SIGKILLed during a
//! burst of requests and during an exec stream, a torn journal tail, the upstream API server
//! dropping connections mid-watch and mid-exec, and a full journal disk. What the client was
//! told happened must be in the journal, once; what kubectl sees must match what it sees
//! directly; a gateway that cannot record refuses, and says why on `/readyz`.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gatehouse_proto::v1::{Event, StreamChannel, event::Payload};
use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::{AUDIENCE, kubectl_via};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::kubectl::Kubectl;
use gatehouse_tests::oidc::TestIssuer;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prost::Message;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP relay that can cut every connection at once, and delay what the server sends: in
/// front of the test API server it is the upstream "dropping connections" at the transport, the
/// same for kubectl direct and for the gateway (TLS is end to end through it; the certificate
/// names 127.0.0.1 either way); in front of ClickHouse it makes inserts slow.
struct FaultProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    /// Milliseconds to hold each chunk the server sends before relaying it.
    delay_ms: Arc<AtomicU64>,
}

impl FaultProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (held, delay) = (conns.clone(), delay_ms.clone());
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let delay = delay.clone();
                let task = tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let to_server = async {
                        let _ = tokio::io::copy(&mut down_r, &mut up_w).await;
                        let _ = up_w.shutdown().await;
                    };
                    let to_client = async {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = match up_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let ms = delay.load(Ordering::Acquire);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if down_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = down_w.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
                held.lock().push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            conns,
            accept,
            delay_ms,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Closes every connection relayed so far, both ways; new connections still work.
    fn drop_connections(&self) -> usize {
        let conns = std::mem::take(&mut *self.conns.lock());
        for c in &conns {
            c.abort();
        }
        conns.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

/// The test API server behind a [`FaultProxy`], an OIDC issuer, and the real gateway.
struct Env {
    api: TestApiServer,
    proxy: FaultProxy,
    _issuer: TestIssuer,
    dir: tempfile::TempDir,
    journal: PathBuf,
    args: Vec<String>,
    gw: Option<GatewayProc>,
    /// kubectl through the proxy straight to the API server, as cluster admin.
    direct: Kubectl,
    token: String,
}

const POD: &str = "checkout-7b9";
const NS: &str = "payments";

impl Env {
    async fn start(journal: Option<PathBuf>, extra: &[String]) -> Self {
        let opts = ApiServerOptions {
            objects: vec![json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": POD, "namespace": NS},
                "spec": {"containers": [{"name": "app", "image": "busybox", "stdin": true}]}
            })],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let api = TestApiServer::start(opts).await.unwrap();
        let proxy = FaultProxy::start(api.addr()).await;
        let upstream = dir.path().join("upstream.kubeconfig");
        std::fs::write(
            &upstream,
            api.kubeconfig(GATEWAY_TOKEN)
                .replace(&api.url(), &proxy.url()),
        )
        .unwrap();
        let issuer = TestIssuer::start().await.unwrap();
        let issuer_ca = dir.path().join("issuer-ca.pem");
        std::fs::write(&issuer_ca, &issuer.ca_pem).unwrap();
        let mut args = vec![
            "--upstream-mode=kubeconfig".to_string(),
            format!("--kubeconfig={}", upstream.display()),
            format!("--oidc-issuer-url={}", issuer.url),
            format!("--oidc-audience={AUDIENCE}"),
            format!("--oidc-ca-file={}", issuer_ca.display()),
            "--oidc-username-prefix=-".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let journal = journal.unwrap_or_else(|| dir.path().join("journal"));
        let direct = Kubectl::new(
            &dir.path().join("direct"),
            &api.kubeconfig(ADMIN_TOKEN)
                .replace(&api.url(), &proxy.url()),
        )
        .unwrap();
        let token = issuer.token("agent-ops", &["agents"], AUDIENCE).unwrap();
        let mut env = Self {
            api,
            proxy,
            _issuer: issuer,
            dir,
            journal,
            args,
            gw: None,
            direct,
            token,
        };
        env.start_gateway().await;
        env
    }

    async fn start_gateway(&mut self) {
        let gw = GatewayProc::start(self.dir.path(), &self.journal, &self.args)
            .await
            .unwrap();
        self.gw = Some(gw);
    }

    fn gw(&self) -> &GatewayProc {
        self.gw.as_ref().unwrap()
    }

    /// kubectl through the (current) gateway as `agent-ops`.
    fn agent(&self) -> Kubectl {
        kubectl_via(self.gw(), &self.dir, "agent", &self.token).unwrap()
    }

    /// SIGKILLs the gateway and waits until it is gone.
    async fn kill_gateway(&mut self) {
        let gw = self.gw.take().unwrap();
        let pid = gw.pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}/stat")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway survived SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(gw);
    }

    /// Every event in the journal, in journal order (read while the gateway may be running).
    fn events(&self) -> Vec<Event> {
        gatehouse_journal::Reader::read_all(&self.journal)
            .unwrap()
            .into_iter()
            .map(|r| Event::decode(r.payload.as_slice()).unwrap())
            .collect()
    }
}

/// An HTTP/2 connection to the gateway, as a client other than kubectl would hold one.
async fn h2(gw: &GatewayProc) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(gw.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = gw.url.trim_start_matches("https://").to_string();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// The burst's request paths name `burst-<i>`, so each one can be found in the journal.
fn burst_path(i: usize) -> String {
    format!("/api/v1/namespaces/default/configmaps/burst-{i}")
}

fn request_paths(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Request(r)) => r.request.as_ref().map(|k| k.path.clone()),
            _ => None,
        })
        .collect()
}

/// Polls until ClickHouse holds every event in `env`'s journal, each once: (rows after FINAL,
/// distinct ids). The journal is re-read each time: the gateway may still be appending.
async fn wait_stored_once(ch: &TestClickHouse, col: &CollectorProc, env: &Env) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut got = String::new();
    let mut want = String::new();
    while tokio::time::Instant::now() < deadline {
        let n = env.events().len();
        want = format!("{n}\t{n}");
        got = ch
            .query_text("SELECT count(), uniqExact(event_id) FROM events FINAL")
            .await
            .unwrap_or_default();
        if got.trim() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "ClickHouse holds (rows, distinct ids) {:?}, want {want:?}; collector log:\n{}",
        got.trim(),
        col.log.lock().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_acknowledged_request_and_ships_each_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(tmp.path()).await.unwrap();
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let mut cargs = ch.collector_args();
    cargs.extend(pki.args());
    cargs.push("--batch-period=100ms".into());
    let col = CollectorProc::start(tmp.path(), 0, &cargs).await.unwrap();
    let mut env = Env::start(
        None,
        &pki.gateway_shipping(tmp.path(), &col.addr).unwrap().args,
    )
    .await;

    // 10k GETs over one HTTP/2 connection, 64 in flight; SIGKILL once 3k are answered.
    const TOTAL: usize = 10_000;
    const KILL_AT: usize = 3_000;
    let send = h2(env.gw()).await;
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let auth = format!("Bearer {}", env.token);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TOTAL {
        let permit = gate.clone().acquire_owned().await.unwrap();
        if answered.load(Ordering::Acquire) >= KILL_AT {
            break;
        }
        let (mut send, acked, answered, auth) =
            (send.clone(), acked.clone(), answered.clone(), auth.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let req = http::Request::get(burst_path(i))
                .header("authorization", auth)
                .body(Empty::new())
                .unwrap();
            let Ok(resp) = send.send_request(req).await else {
                return;
            };
            let status = resp.status();
            if resp.into_body().collect().await.is_ok() && status == http::StatusCode::NOT_FOUND {
                // Answered by the API server through the gateway: acknowledged to the client.
                acked.lock().insert(i);
            }
            answered.fetch_add(1, Ordering::AcqRel);
        });
    }
    env.kill_gateway().await;
    while tasks.join_next().await.is_some() {}
    let acked = acked.lock().clone();
    assert!(acked.len() >= KILL_AT - 64, "only {} answered", acked.len());

    // A torn tail on top of the crash: half a record after the last whole one, as a power loss
    // mid-write leaves it.
    let seg = std::fs::read_dir(&env.journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .unwrap();
    let whole = std::fs::metadata(&seg).unwrap().len();
    let mut torn = 1000u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xAB; 20]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all_sync(&torn);

    env.start_gateway().await;
    let log = env.gw().log.lock().join("\n");
    let recovered = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "journal recovered a torn tail")
        .unwrap_or_else(|| panic!("no torn-tail recovery logged:\n{log}"));
    assert_eq!(
        recovered["fields"]["truncated_bytes"],
        torn.len() as u64,
        "{log}"
    );
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
    let (code, ready) = env.gw().ops_get("/readyz").await.unwrap();
    assert_eq!(code, 200, "{ready}");
    // The restarted gateway records after the recovered tail.
    env.agent()
        .run(&["get", "namespaces"])
        .await
        .unwrap()
        .ok()
        .unwrap();

    let events = env.events();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for p in request_paths(&events) {
        *seen.entry(p).or_default() += 1;
    }
    for i in &acked {
        assert_eq!(
            seen.get(&burst_path(*i)).copied().unwrap_or(0),
            1,
            "acknowledged request {i} is not in the journal exactly once"
        );
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a request was journaled twice"
    );
    assert!(
        seen.contains_key("/api/v1/namespaces"),
        "post-restart request missing"
    );
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "duplicate event ids in the journal"
    );

    // Shipping resumed after the crash delivers the journal to ClickHouse, each event once.
    wait_stored_once(&ch, &col, &env).await;
    let raw = ch
        .query_text("SELECT count() - uniqExact(event_id) FROM events")
        .await
        .unwrap();
    eprintln!(
        "burst: {} acknowledged before SIGKILL, {} events journaled, {} re-inserted rows \
         collapsed by event id",
        acked.len(),
        events.len(),
        raw.trim()
    );
}

trait WriteAllSync {
    fn write_all_sync(self, bytes: &[u8]);
}

impl WriteAllSync for std::fs::File {
    fn write_all_sync(mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self, bytes).unwrap();
        self.sync_all().unwrap();
    }
}

/// `kubectl exec -i … cat` with a pipe on stdin: everything written comes back on stdout.
async fn spawn_cat(k: &Kubectl, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut c = tokio::process::Command::new(&k.bin);
    c.args(["exec", "-i", POD, "-n", NS, "-c", "app", "--", "cat"])
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, v) in env {
        c.env(key, v);
    }
    c.spawn().unwrap()
}

/// Writes `line` to cat's stdin and reads until it has come back.
async fn echo(child: &mut tokio::process::Child, got: &mut Vec<u8>, line: &str) {
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(line.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let out = child.stdout.as_mut().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(got).contains(line) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, out.read(&mut buf))
            .await
            .expect("echo timed out")
            .unwrap();
        assert!(n > 0, "kubectl exec ended early");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Waits for kubectl to exit: (exit code, stderr).
async fn finish(child: tokio::process::Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl did not exit")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn exec_stream(events: &[Event]) -> (String, Vec<&Event>) {
    let req = events
        .iter()
        .rev()
        .find(|e| matches!(&e.payload, Some(Payload::Request(r)) if r.request.as_ref().is_some_and(|k| k.subresource == "exec")))
        .expect("an exec request in the journal");
    let frames = events
        .iter()
        .filter(|e| match &e.payload {
            Some(Payload::StreamOpened(s)) => s.request_event_id == req.event_id,
            Some(Payload::StreamFrame(s)) => s.request_event_id == req.event_id,
            Some(Payload::StreamEnded(s)) => s.request_event_id == req.event_id,
            _ => false,
        })
        .collect();
    (req.event_id.clone(), frames)
}

fn stdout_bytes(stream: &[&Event]) -> Vec<u8> {
    stream
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StreamFrame(f)) if f.channel == StreamChannel::Stdout as i32 => {
                Some(f.data.to_vec())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_exec_keeps_every_byte_the_client_saw() {
    let mut env = Env::start(None, &[]).await;
    let mut child = spawn_cat(&env.agent(), &[]).await;
    let mut got = Vec::new();
    for n in 0..20 {
        echo(&mut child, &mut got, &format!("line-{n}\n")).await;
    }
    env.kill_gateway().await;
    let (code, stderr) = finish(child).await;
    assert_ne!(
        code,
        Some(0),
        "kubectl exec survived its gateway dying: {stderr}"
    );

    env.start_gateway().await;
    let (code, ready) = env.gw().ops_get("/readyz").await.unwrap();
    assert_eq!(code, 200, "{ready}");
    let events = env.events();
    let (_, stream) = exec_stream(&events);
    assert!(
        matches!(
            stream.first().and_then(|e| e.payload.as_ref()),
            Some(Payload::StreamOpened(_))
        ),
        "the exec's StreamOpened is not in the journal"
    );
    let recorded = stdout_bytes(&stream);
    assert!(
        recorded.starts_with(&got),
        "kubectl saw {:?} but the journal holds {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&recorded)
    );
    // The restarted gateway serves exec again and records it after the recovered journal.
    let mut again = spawn_cat(&env.agent(), &[]).await;
    let mut got = Vec::new();
    echo(&mut again, &mut got, "after-restart\n").await;
    drop(again.stdin.take());
    let (code, stderr) = finish(again).await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// Addresses and ports differ between the direct and the gateway path; the rest must not.
fn normalise(stderr: &str, env: &Env) -> String {
    let re = strip_klog_prefix(stderr);
    re.replace(&env.proxy.addr.to_string(), "ADDR")
        .replace(env.gw().url.trim_start_matches("https://"), "ADDR")
}

/// Drops kubectl's per-line timestamps (klog `E1122 02:45:01.123456   1234 file.go:12]`).
fn strip_klog_prefix(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("] ") {
            Some(at)
                if l.starts_with(['E', 'W', 'I'])
                    && l[1..].starts_with(|c: char| c.is_ascii_digit()) =>
            {
                l[at + 2..].to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dropping_a_watch_looks_the_same_through_the_gateway_and_is_recorded() {
    let env = Env::start(None, &[]).await;
    let mut results = Vec::new();
    for k in [env.direct.clone(), env.agent()] {
        let mut c = tokio::process::Command::new(&k.bin);
        c.args(["get", "pods", "-n", NS, "-w", "--request-timeout=0"])
            .env("KUBECONFIG", &k.kubeconfig)
            .env("HOME", &k.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().unwrap();
        let mut out = Vec::new();
        let stdout = child.stdout.as_mut().unwrap();
        while !String::from_utf8_lossy(&out).contains(POD) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buf))
                .await
                .expect("no initial list")
                .unwrap();
            assert!(n > 0, "watch ended before listing");
            out.extend_from_slice(&buf[..n]);
        }
        // The watch is open once the list printed; let it settle on the upstream connection.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(env.proxy.drop_connections() > 0);
        let (code, stderr) = finish(child).await;
        results.push((code, normalise(&stderr, &env)));
    }
    assert_eq!(
        results[1], results[0],
        "kubectl through the gateway (right) differs from direct (left)"
    );
    eprintln!(
        "watch dropped upstream: kubectl exit {:?}, stderr {:?}",
        results[0].0, results[0].1
    );

    let events = env.events();
    let watch = events
        .iter()
        .find(|e| matches!(&e.payload, Some(Payload::Request(r)) if r.request.as_ref().is_some_and(|k| k.verb == "watch")))
        .expect("the watch request is recorded");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = env.events();
        let finished = events.iter().find_map(|e| match &e.payload {
            Some(Payload::Response(r)) if r.request_event_id == watch.event_id => Some(r.clone()),
            _ => None,
        });
        if let Some(r) = finished {
            assert!(
                !r.error.is_empty(),
                "the dropped watch is recorded as complete: {r:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch's end is not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dropping_an_exec_looks_the_same_through_the_gateway_and_is_recorded() {
    let env = Env::start(None, &[]).await;
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    for (name, vars) in [("websocket", &[][..]), ("spdy", &spdy[..])] {
        let mut results = Vec::new();
        for k in [env.direct.clone(), env.agent()] {
            let mut child = spawn_cat(&k, vars).await;
            let mut got = Vec::new();
            echo(&mut child, &mut got, "before-drop\n").await;
            assert!(env.proxy.drop_connections() > 0);
            let (code, stderr) = finish(child).await;
            results.push((code, normalise(&stderr, &env)));
        }
        assert_eq!(
            results[1], results[0],
            "{name}: kubectl through the gateway (right) differs from direct (left)"
        );
        eprintln!(
            "{name} exec dropped upstream: kubectl exit {:?}, stderr {:?}",
            results[0].0, results[0].1
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = env.events();
            let (_, stream) = exec_stream(&events);
            let ended = stream.iter().find_map(|e| match &e.payload {
                Some(Payload::StreamEnded(s)) => Some(s.clone()),
                _ => None,
            });
            if let Some(s) = ended {
                assert!(
                    s.aborted,
                    "{name}: the dropped exec is recorded as orderly: {s:?}"
                );
                assert!(!s.error.is_empty(), "{name}: no error recorded: {s:?}");
                assert_eq!(stdout_bytes(&stream), b"before-drop\n", "{name}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: the exec's end is not recorded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A 2 MiB tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_disk_fails_closed_and_readyz_says_why() {
    let base = tempfile::tempdir().unwrap();
    let mount = base.path().join("journal-fs");
    let fs = match Tmpfs::mount(&mount) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "SKIPPED a_full_journal_disk_fails_closed_and_readyz_says_why: cannot mount a \
                 tmpfs (needs root): {e}"
            );
            return;
        }
    };
    let journal = mount.join("journal");
    let mut env = Env::start(Some(journal.clone()), &[]).await;
    // Fill the disk but for a few KiB, so the next requests' records do not fit.
    let filler = mount.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        let _ = f.sync_all();
    }
    let send = h2(env.gw()).await;
    let auth = format!("Bearer {}", env.token);
    let mut refused = None;
    for i in 0..200 {
        let req = http::Request::get(burst_path(i))
            .header("authorization", &auth)
            .body(Empty::new())
            .unwrap();
        let resp = send.clone().send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if status == http::StatusCode::SERVICE_UNAVAILABLE {
            refused = Some((i, body));
            break;
        }
        assert_eq!(status, http::StatusCode::NOT_FOUND);
    }
    let (i, body) = refused.expect("the gateway kept forwarding on a full disk");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["code"], 503, "{status}");
    // Fail-closed: the refused request never reached the API server.
    assert!(
        !env.api.requests().iter().any(|r| r.path == burst_path(i)),
        "a request that could not be recorded was forwarded"
    );
    let (code, why) = env.gw().ops_get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{why}");
    assert!(
        why.contains("space"),
        "/readyz does not say the disk is full: {why}"
    );

    // Freeing space makes it ready and forwarding again.
    std::fs::remove_file(&filler).unwrap();
    let req = http::Request::get(burst_path(1000))
        .header("authorization", &auth)
        .body(Empty::new())
        .unwrap();
    let resp = send.clone().send_request(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
    let (code, why) = env.gw().ops_get("/readyz").await.unwrap();
    assert_eq!(code, 200, "{why}");
    env.kill_gateway().await;
    drop(fs);
}

/// `gatehouse_collector_<name>` from the collector's ops listener (0 if absent).
async fn collector_metric(col: &CollectorProc, name: &str) -> f64 {
    let ops = col
        .log
        .lock()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "collector listening")
        .and_then(|v| v["fields"]["ops_listen"].as_str().map(str::to_string))
        .expect("the collector logs its ops address");
    let mut tcp = TcpStream::connect(&ops).await.unwrap();
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nhost: {ops}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("gatehouse_collector_{name}")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clickhouse_inserts_hold_the_journal_back_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(tmp.path()).await.unwrap();
    let ch_addr: SocketAddr = ch.url.trim_start_matches("http://").parse().unwrap();
    let slow = FaultProxy::start(ch_addr).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let mut cargs: Vec<String> = ch
        .collector_args()
        .into_iter()
        .map(|a| a.replace(&ch.url, &format!("http://{}", slow.addr)))
        .collect();
    cargs.extend(pki.args());
    cargs.push("--batch-period=100ms".into());
    cargs.push("--queue-batches=2".into());
    let col = CollectorProc::start(tmp.path(), 0, &cargs).await.unwrap();
    let env = Env::start(
        None,
        &pki.gateway_shipping(tmp.path(), &col.addr).unwrap().args,
    )
    .await;

    // Every ClickHouse answer now takes 2 s: inserts crawl while requests keep coming.
    slow.delay_ms.store(2000, Ordering::Release);
    let send = h2(env.gw()).await;
    let auth = format!("Bearer {}", env.token);
    for i in 0..400 {
        let req = http::Request::get(burst_path(i))
            .header("authorization", &auth)
            .body(Empty::new())
            .unwrap();
        let resp = send.clone().send_request(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::NOT_FOUND, "request {i}");
        resp.into_body().collect().await.unwrap();
    }
    let (_, metrics) = env.gw().ops_get("/metrics").await.unwrap();
    let unacked: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_gateway_journal_unacked_bytes"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_default();
    assert!(
        unacked > 0.0,
        "the journal did not hold back unshipped events:\n{metrics}"
    );
    // The metrics are sampled: while inserts take 2 s each, a sample within 10 s must show
    // them waiting (pushed back, queued, or an insert in flight).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (pushed_back, queued, in_flight) = loop {
        let pushed_back = collector_metric(&col, "backpressure").await;
        let queued = collector_metric(&col, "queued_batches").await;
        let in_flight = collector_metric(&col, "inserts_in_flight").await;
        if pushed_back > 0.0 || queued > 0.0 || in_flight > 0.0 {
            break (pushed_back, queued, in_flight);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector's metrics do not show the slow inserts (backpressure {pushed_back}, queued {queued}, inserts in flight {in_flight})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // ClickHouse recovers: everything arrives, once.
    slow.delay_ms.store(0, Ordering::Release);
    let events = env.events();
    let requests = request_paths(&events)
        .iter()
        .filter(|p| p.contains("/configmaps/burst-"))
        .count();
    assert_eq!(requests, 400);
    wait_stored_once(&ch, &col, &env).await;
    eprintln!(
        "slow ClickHouse: {unacked} unshipped bytes held, backpressure {pushed_back}, queued batches {queued}, inserts in flight {in_flight}"
    );
}
