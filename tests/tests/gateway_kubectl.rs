//! Real kubectl v1.35 through the real `gateway` binary to the test API server: kubectl must
//! behave exactly as it does directly, and the journal must hold the transcript of what it did.
#![allow(clippy::unwrap_used)]

use gatehouse_proto::v1::{Event, event::Payload};
use gatehouse_tests::apiserver::{ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::fixture::{self, AUDIENCE, GatewayEnv};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::kubectl::{Kubectl, KubectlOutput};
use gatehouse_tests::oidc::SigningKey;
use prost::Message;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

async fn env_with(opts: ApiServerOptions, extra: &[&str]) -> GatewayEnv {
    let mut args = vec!["--journal-fsync=always".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    GatewayEnv::start(opts, &args).await.unwrap()
}

async fn env() -> GatewayEnv {
    env_with(ApiServerOptions::default(), &[]).await
}

/// What the tests read back from the transcript.
trait Transcript {
    /// The reconstructed commands of every recorded request, in journal order.
    fn commands(&self) -> Vec<String>;
    /// Runs the real `gatehouse` CLI on the gateway's journal: (exit code, stdout, stderr).
    fn gatehouse(&self, args: &[&str]) -> (i32, String, String);
}

impl Transcript for GatewayEnv {
    fn commands(&self) -> Vec<String> {
        self.events()
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::Request(r)) => Some(r.command),
                _ => None,
            })
            .collect()
    }

    fn gatehouse(&self, args: &[&str]) -> (i32, String, String) {
        let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--journal")
            .arg(&self.gw.journal_dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn kubectl_via(gw: &GatewayProc, dir: &TempDir, name: &str, token: &str) -> Kubectl {
    fixture::kubectl_via(gw, dir, name, token).unwrap()
}

async fn both(e: &GatewayEnv, args: &[&str]) -> (KubectlOutput, KubectlOutput) {
    let direct = e.direct.run(args).await.unwrap();
    let via = e.agent.run(args).await.unwrap();
    (direct, via)
}

/// Asserts kubectl printed the same and exited the same, directly and through the gateway.
async fn same(e: &GatewayEnv, args: &[&str]) -> KubectlOutput {
    let (direct, via) = both(e, args).await;
    assert_eq!(
        via.code, direct.code,
        "exit codes differ\ndirect: {direct}\nvia gateway: {via}"
    );
    assert_eq!(
        via.stdout, direct.stdout,
        "stdout differs\ndirect: {direct}\nvia gateway: {via}"
    );
    // client-go announces `DISABLE_HTTP2` on stderr with a timestamp: not kubectl's output.
    let stderr = |o: &KubectlOutput| -> String {
        o.stderr
            .lines()
            .filter(|l| !l.contains("HTTP2 has been explicitly disabled"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        stderr(&via),
        stderr(&direct),
        "stderr differs\ndirect: {direct}\nvia gateway: {via}"
    );
    via
}

/// Warms both discovery caches (so later comparisons see the same requests), then lists
/// namespaces and reads a ConfigMap as YAML, directly and through the gateway.
async fn first_reads_match(e: &GatewayEnv) {
    e.direct.run(&["get", "ns"]).await.unwrap().ok().unwrap();
    e.agent.run(&["get", "ns"]).await.unwrap().ok().unwrap();
    same(e, &["get", "ns", "-o", "name"]).await;
    let args: Vec<&str> = "get configmap app-config -n payments -o yaml"
        .split(' ')
        .collect();
    let cm = same(e, &args).await;
    assert!(cm.stdout.contains("name: app-config"), "{cm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_errors_match_direct_kubectl_and_are_recorded() {
    let e = env().await;
    first_reads_match(&e).await;
    same(
        &e,
        &["describe", "configmap", "app-config", "-n", "payments"],
    )
    .await;
    same(&e, &["get", "secrets", "-n", "payments", "-o", "json"]).await;
    same(
        &e,
        &[
            "get",
            "pods",
            "-n",
            "payments",
            "-o",
            "wide",
            "--no-headers",
            "-o",
            "custom-columns=N:.metadata.name",
        ],
    )
    .await;
    let missing = same(&e, &["get", "configmap", "nope", "-n", "payments"]).await;
    assert_eq!(missing.code, Some(1));
    assert!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): configmaps "nope" not found"#),
        "{missing}"
    );
    let table = e
        .agent
        .run(&["get", "pods", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );

    // The transcript: the exact kubectl line, the caller, and a response for each request.
    let cmds = e.commands();
    for want in [
        "kubectl get configmap app-config -n payments",
        "kubectl get configmap nope -n payments",
        "kubectl get pods -n payments",
        "kubectl get secrets -n payments",
        "kubectl get namespaces",
    ] {
        assert!(
            cmds.iter().any(|c| c == want),
            "missing {want:?} in {cmds:#?}"
        );
    }
    let events = e.events().unwrap();
    let req = events
        .iter()
        .find(|ev| matches!(&ev.payload, Some(Payload::Request(r)) if r.command == "kubectl get configmap nope -n payments"))
        .unwrap();
    let id = req.identity.as_ref().unwrap();
    assert_eq!(
        (id.username.as_str(), id.groups.as_slice()),
        ("agent-ops", &["agents".to_string()][..])
    );
    let client = req.client.as_ref().unwrap();
    assert_eq!(client.kubectl_command, "kubectl get");
    assert!(
        client.user_agent.starts_with("kubectl/v1.35"),
        "{}",
        client.user_agent
    );
    assert!(!req.command_id.is_empty());
    let resp = events
        .iter()
        .find_map(|ev| match &ev.payload {
            Some(Payload::Response(r)) if r.request_event_id == req.event_id => Some((ev, r)),
            _ => None,
        })
        .expect("a response event for the request");
    assert_eq!(resp.1.status_code, 404);
    assert_eq!(resp.0.session_id, req.session_id);
    let body = resp.1.body.as_ref().unwrap();
    assert!(!body.truncated);
    assert!(String::from_utf8_lossy(&body.data).contains("NotFound"));

    // One session, sequence numbers 1..n without gaps, each event chained to the previous.
    let mine: Vec<&Event> = events
        .iter()
        .filter(|ev| ev.session_id == req.session_id)
        .collect();
    assert_eq!(
        mine.len(),
        events.len(),
        "all of agent-ops' requests share one session"
    );
    for (i, ev) in mine.iter().enumerate() {
        assert_eq!(ev.seq, i as u64 + 1);
        if i == 0 {
            assert!(ev.prev_hash.is_empty());
        } else {
            let prev = sha256(&mine[i - 1].encode_to_vec());
            assert_eq!(
                ev.prev_hash.as_ref(),
                prev.as_slice(),
                "chain broken at seq {}",
                ev.seq
            );
        }
    }

    // What the API server saw: the gateway's credential, impersonating the caller.
    let upstream: Vec<_> = e
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/payments/configmaps/nope")
        .collect();
    assert_eq!(upstream.len(), 2, "once direct, once through the gateway");
    let via = upstream
        .iter()
        .find(|r| r.authenticated_user.as_deref() == Some(gatehouse_tests::apiserver::GATEWAY_USER))
        .unwrap();
    assert_eq!(via.header("impersonate-user"), Some("agent-ops"));
    assert_eq!(via.header_values("impersonate-group"), ["agents"]);
    assert_eq!(
        via.header("impersonate-extra-gatehouse.dev%2fsession-id"),
        Some(req.session_id.as_str())
    );
    assert_eq!(
        via.header("authorization"),
        Some(format!("Bearer {GATEWAY_TOKEN}").as_str())
    );
    assert_eq!(via.effective_user.as_ref().unwrap().username, "agent-ops");
}

fn sha256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_delete_and_whoami_through_the_gateway() {
    let e = env().await;
    let manifest = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  namespace: payments\ndata:\n  checkout_v2: \"{v}\"\n"
        )
    };
    let out = e
        .agent
        .run_with_stdin(&["apply", "-f", "-"], Some(&manifest("true")))
        .await
        .unwrap();
    assert_eq!(
        out.clone().ok().unwrap().stdout,
        "configmap/flags created\n",
        "{out}"
    );
    let out = e
        .agent
        .run_with_stdin(&["apply", "-f", "-"], Some(&manifest("false")))
        .await
        .unwrap();
    assert_eq!(
        out.clone().ok().unwrap().stdout,
        "configmap/flags configured\n",
        "{out}"
    );
    let out = e
        .agent
        .run_with_stdin(&["apply", "-f", "-"], Some(&manifest("false")))
        .await
        .unwrap();
    assert_eq!(
        out.clone().ok().unwrap().stdout,
        "configmap/flags unchanged\n",
        "{out}"
    );
    assert_eq!(
        e.api.object("", "configmaps", "payments", "flags").unwrap()["data"]["checkout_v2"],
        "false"
    );
    let out = e
        .agent
        .run_with_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&manifest("ssa").replace("name: flags", "name: flags-ssa")),
        )
        .await
        .unwrap();
    assert!(
        out.clone()
            .ok()
            .unwrap()
            .stdout
            .contains("serverside-applied"),
        "{out}"
    );
    let out = e
        .agent
        .run(&["delete", "configmap", "flags", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(
        out.clone().ok().unwrap().stdout,
        "configmap \"flags\" deleted from payments namespace\n",
        "{out}"
    );
    assert!(
        e.api
            .object("", "configmaps", "payments", "flags")
            .is_none()
    );

    let who = e
        .agent
        .run(&["auth", "whoami", "-o", "json"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&who.stdout).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "agent-ops");
    assert_eq!(
        v["status"]["userInfo"]["groups"],
        json!(["agents", "system:authenticated"])
    );
    let can = e
        .agent
        .run(&["auth", "can-i", "delete", "pods", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(can.stdout, "yes\n", "{can}");

    let cmds = e.commands();
    let patch = cmds
        .iter()
        .find(|c| c.starts_with("kubectl patch configmap flags -n payments --type strategic -p "))
        .unwrap_or_else(|| panic!("no patch in {cmds:#?}"));
    assert!(patch.contains("checkout_v2"), "{patch}");
    for want in [
        "kubectl create configmap flags -n payments -f -",
        "kubectl patch configmap flags-ssa -n payments --server-side-apply --field-manager=kubectl",
        "kubectl delete configmap flags -n payments",
        "kubectl auth whoami",
        "kubectl auth can-i delete pods -n payments",
    ] {
        assert!(
            cmds.iter().any(|c| c == want),
            "missing {want:?} in {cmds:#?}"
        );
    }
    // The created object's body was recorded before it was forwarded.
    let create = e
        .events()
        .unwrap()
        .into_iter()
        .find_map(|ev| match ev.payload {
            Some(Payload::Request(r))
                if r.command.starts_with("kubectl create configmap flags") =>
            {
                Some(r)
            }
            _ => None,
        })
        .unwrap();
    let body = create.body.unwrap();
    assert!(String::from_utf8_lossy(&body.data).contains("checkout_v2"));
    assert_eq!(body.total_bytes, body.data.len() as u64);
}

/// The pod with a four-line log, followed at 50 ms per line.
const LOG_POD: &str = "payments-api-7c9d8b5f6d-2xk4p";

async fn env_with_logs() -> GatewayEnv {
    let mut opts = ApiServerOptions::default();
    opts.logs.content.insert(
        format!("payments/{LOG_POD}"),
        "line 1\nline 2\nline 3\nline 4\n".into(),
    );
    opts.logs.follow_interval = Duration::from_millis(50);
    env_with(opts, &[]).await
}

/// `logs -f` of `LOG_POD` shows lines as they come, and `get -w` shows a ConfigMap created
/// meanwhile (named `created`), once it has shown `listed`; both through the gateway.
async fn follow_and_watch(e: &GatewayEnv, listed: &str, created: &str) {
    let mut follow = e
        .agent
        .spawn(&["logs", "-f", LOG_POD, "-n", "payments"])
        .unwrap();
    follow
        .wait_for_line(Duration::from_secs(20), |l| l == "line 4")
        .await
        .unwrap();
    let after = follow.seen.len();
    for _ in 0..2 {
        follow
            .wait_for_line(Duration::from_secs(20), |_| true)
            .await
            .unwrap();
    }
    assert!(follow.seen.len() >= after + 2);
    follow.kill().await.unwrap();

    let mut watch = e
        .agent
        .spawn(&["get", "configmaps", "-n", "payments", "-w"])
        .unwrap();
    watch
        .wait_for_line(Duration::from_secs(20), |l| l.starts_with(listed))
        .await
        .unwrap();
    let literal = "--from-literal=a=b";
    e.direct
        .run(&["create", "configmap", created, "-n", "payments", literal])
        .await
        .unwrap()
        .ok()
        .unwrap();
    watch
        .wait_for_line(Duration::from_secs(20), |l| l.starts_with(created))
        .await
        .unwrap();
    watch.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_and_watch_stream_through_the_gateway() {
    let e = env_with_logs().await;
    let pod = LOG_POD;
    let tail = same(&e, &["logs", pod, "-n", "payments", "--tail", "2"]).await;
    assert_eq!(tail.stdout, "line 3\nline 4\n");
    // The followed lines arrive one by one through the gateway, not at the end; so do watch
    // events.
    follow_and_watch(&e, "app-config", "appeared-later").await;

    let cmds = e.commands();
    for want in [
        format!("kubectl logs {pod} -n payments -c api --tail 2"),
        format!("kubectl logs {pod} -n payments -c api -f"),
        "kubectl get configmaps -n payments --watch".to_string(),
    ] {
        assert!(cmds.contains(&want), "missing {want:?} in {cmds:#?}");
    }
    // The killed follow and watch end as responses that say the caller went away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let aborted = e
            .events().unwrap()
            .into_iter()
            .filter(|ev| matches!(&ev.payload, Some(Payload::Response(r)) if r.error.contains("caller closed")))
            .count();
        if aborted >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "aborted streams not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_are_recorded_and_never_forwarded() {
    let e = env().await;
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, exp: i64| json!({"iss": e.issuer.url, "sub": "mallory", "aud": aud, "iat": now - 7200, "nbf": now - 7200, "exp": exp});
    let expired = e.issuer.sign(&claims(AUDIENCE, now - 3600)).unwrap();
    let wrong_aud = e.issuer.sign(&claims("someone-else", now + 3600)).unwrap();
    let foreign = SigningKey::generate("key-1")
        .unwrap()
        .sign(&claims(AUDIENCE, now + 3600))
        .unwrap();
    e.api.clear_requests();
    for (name, token) in [
        ("expired", expired.as_str()),
        ("wrong-aud", wrong_aud.as_str()),
        ("foreign", foreign.as_str()),
    ] {
        let k = kubectl_via(&e.gw, &e.dir, name, token);
        let out = k.run(&["get", "pods", "-n", "payments"]).await.unwrap();
        assert_eq!(out.code, Some(1), "{name}: {out}");
        assert!(
            out.stderr
                .contains("error: You must be logged in to the server"),
            "{name}: {out}"
        );
    }
    // No credentials at all (kubectl would prompt for a password first, so use curl): a
    // metav1.Status 401 whose code matches the HTTP status.
    let ca = e.dir.path().join("gateway-ca.pem");
    std::fs::write(&ca, &e.gw.ca_pem).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("{}/api/v1/namespaces/payments/pods", e.gw.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "401", "{text}");
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_i64()),
        (Some("Status"), Some(401))
    );
    assert_eq!(status["reason"], "Unauthorized");

    let forwarded = e.api.requests();
    assert!(
        forwarded.is_empty(),
        "unauthenticated requests reached the API server: {forwarded:#?}"
    );
    let denied: Vec<_> = e
        .events()
        .unwrap()
        .into_iter()
        .filter_map(|ev| match ev.payload {
            Some(Payload::Denied(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert!(denied.len() >= 4, "{denied:#?}");
    assert!(
        denied
            .iter()
            .all(|d| d.status_code == 401 && d.reason == "Unauthorized")
    );
    let messages: Vec<&str> = denied.iter().map(|d| d.message.as_str()).collect();
    for want in ["expired", "audience", "no credentials"] {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "no denial mentions {want:?}: {messages:#?}"
        );
    }
    let (_, metrics) = e.gw.ops_get("/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("gatehouse_gateway_denied_requests_total{reason=\"unauthorized\"}")),
        "{metrics}"
    );
    // Denials are recorded like everything else: the counter the soak checks ClickHouse
    // against counts every event in the journal (nothing ships here, so it holds them all).
    let journaled = e.events().unwrap().len();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("gatehouse_gateway_journal_appended_events_total {journaled}")),
        "{journaled} events in the journal: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_as_is_refused_unless_allowed() {
    let e = env_with(
        ApiServerOptions::default(),
        &["--allow-impersonation=agent-ops=deployer"],
    )
    .await;
    e.agent.run(&["get", "ns"]).await.unwrap().ok().unwrap();
    e.api.clear_requests();
    let out = e
        .agent
        .run(&["get", "pods", "-n", "payments", "--as", "system:admin"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("Error from server (Forbidden)"),
        "{out}"
    );
    let out = e
        .agent
        .run(&[
            "get",
            "pods",
            "-n",
            "payments",
            "--as",
            "deployer",
            "--as-group",
            "system:masters",
        ])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "groups are never allowed: {out}");
    assert!(
        e.api.requests().is_empty(),
        "a spoofed request reached the API server"
    );

    let who = e
        .agent
        .run(&["auth", "whoami", "--as", "deployer", "-o", "json"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&who.stdout).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "deployer");
    let denied = e
        .events()
        .unwrap()
        .into_iter()
        .filter(|ev| matches!(&ev.payload, Some(Payload::Denied(d)) if d.status_code == 403))
        .count();
    assert_eq!(denied, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_verified_with_token_review() {
    let e = env_with(ApiServerOptions::default(), &["--token-review"]).await;
    let bob = kubectl_via(&e.gw, &e.dir, "bob", gatehouse_tests::apiserver::BOB_TOKEN);
    for _ in 0..3 {
        let who = bob
            .run(&["auth", "whoami", "-o", "json"])
            .await
            .unwrap()
            .ok()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&who.stdout).unwrap();
        assert_eq!(v["status"]["userInfo"]["username"], "bob");
    }
    let reviews = e
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/tokenreviews"))
        .count();
    assert_eq!(reviews, 1, "TokenReview results are cached");
    let nobody = kubectl_via(&e.gw, &e.dir, "nobody", "not-a-valid-token");
    let out = nobody.run(&["get", "pods"]).await.unwrap();
    assert!(
        out.stderr.contains("You must be logged in to the server"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_transcript_of_the_session() {
    let e = env().await;
    e.agent
        .run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    e.agent
        .run(&[
            "logs",
            "payments-api-7c9d8b5f6d-2xk4p",
            "-n",
            "payments",
            "--tail",
            "200",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let out = e
        .agent
        .run(&["delete", "secret", "nope", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1));

    let (code, list, err) = e.gatehouse(&["sessions", "--who", "agent-ops", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    let id = s["session_id"].as_str().unwrap();
    assert_eq!(s["namespaces"], json!(["payments"]));
    let (code, shown, err) = e.gatehouse(&["show", &id[..13]]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with(&format!("session {id}  actor agent-ops  duration ")),
        "{shown}"
    );
    assert_eq!(
        &lines[1..],
        [
            "> kubectl get configmap app-config -n payments",
            "> kubectl logs payments-api-7c9d8b5f6d-2xk4p -n payments -c api --tail 200",
            "> kubectl delete secret nope -n payments   # 404",
        ],
        "{shown}"
    );
    let (code, nd, _) = e.gatehouse(&["export", id, "--format", "ndjson"]);
    assert_eq!(code, 0);
    let n = nd.lines().count();
    assert_eq!(n, e.events().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_journal_fails_closed_with_503_and_readyz_says_why() {
    // A bound of a few KiB: the first requests fit, then the journal refuses and so does
    // the gateway, without forwarding anything.
    let e = env_with(ApiServerOptions::default(), &["--journal-max-bytes=6KiB"]).await;
    let mut refused = None;
    for i in 0..40 {
        e.api.clear_requests();
        let out = e
            .agent
            .run(&[
                "get",
                "configmap",
                "app-config",
                "-n",
                "payments",
                "-o",
                "name",
            ])
            .await
            .unwrap();
        if out.code != Some(0) {
            refused = Some((i, out));
            break;
        }
    }
    let (i, out) = refused.expect("the journal bound was never reached");
    assert!(i > 0, "the first request should fit");
    assert!(out.stderr.contains("could not be recorded"), "{out}");
    assert!(
        e.api
            .requests()
            .iter()
            .all(|r| !r.path.contains("app-config")),
        "a request that was not recorded reached the API server"
    );
    let (code, why) = e.gw.ops_get("/readyz").await.unwrap();
    assert_eq!(code, 503);
    assert!(why.contains("unshipped"), "{why}");
    let (code, _) = e.gw.ops_get("/healthz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_journal_fails_closed() {
    // Root ignores file permissions, so make the disk itself refuse: a tiny tmpfs, filled up.
    if !nix_is_root() {
        eprintln!(
            "SKIPPED unwritable_journal_fails_closed: needs root to mount a tmpfs (run as root, as CI does)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("journal");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let api = TestApiServer::start(ApiServerOptions::default())
        .await
        .unwrap();
    let upstream = dir.path().join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream, GATEWAY_TOKEN).unwrap();
    let gw = GatewayProc::start(
        dir.path(),
        &mnt,
        &[
            "--upstream-mode=kubeconfig".into(),
            format!("--kubeconfig={}", upstream.display()),
            "--token-review".into(),
        ],
    )
    .await
    .unwrap();
    let alice = kubectl_via(&gw, &dir, "alice", gatehouse_tests::apiserver::ALICE_TOKEN);
    alice.run(&["get", "ns"]).await.unwrap().ok().unwrap();
    // Fill the filesystem so the next append gets ENOSPC.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1000"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status();
    // tmpfs allocates whole pages, so a record may still fit in the journal's last partly
    // used page. Read the object until a record no longer fits: the DELETE's record (a longer
    // command and a body) is larger than that GET's, so it cannot fit either.
    let mut refused = false;
    for _ in 0..200 {
        let out = alice
            .run(&["get", "configmap", "app-config", "-n", "payments"])
            .await
            .unwrap();
        if out.code != Some(0) {
            assert!(out.stderr.contains("could not be recorded"), "{out}");
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the gateway kept recording on a full journal filesystem"
    );
    api.clear_requests();
    let out = alice
        .run(&["delete", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("could not be recorded"), "{out}");
    assert!(
        api.requests().iter().all(|r| r.method != "DELETE"),
        "the unrecorded delete reached the API server"
    );
    assert!(
        api.object("", "configmaps", "payments", "app-config")
            .is_some()
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_capture_cap_are_truncated_explicitly_and_relayed_whole() {
    let mut opts = ApiServerOptions::default();
    let big = "x".repeat(200 * 1024);
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": "payments"},
        "data": {"blob": big},
    }));
    let e = env_with(opts, &["--capture-bytes=4KiB"]).await;
    let out = e
        .agent
        .run(&[
            "get",
            "configmap",
            "big",
            "-n",
            "payments",
            "-o",
            "jsonpath={.data.blob}",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(
        out.stdout.len(),
        big.len(),
        "the whole body reached kubectl"
    );
    // A request body over the cap: recorded up to the cap, flagged, and forwarded whole.
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-upload\n  namespace: payments\ndata:\n  blob: {}\n",
        "y".repeat(100 * 1024)
    );
    e.agent
        .run_with_stdin(&["create", "-f", "-"], Some(&manifest))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let stored = e
        .api
        .object("", "configmaps", "payments", "big-upload")
        .unwrap();
    assert_eq!(stored["data"]["blob"].as_str().unwrap().len(), 100 * 1024);

    let events = e.events().unwrap();
    let resp = events
        .iter()
        .find_map(|ev| match &ev.payload {
            Some(Payload::Response(r))
                if r.body.as_ref().is_some_and(|b| b.total_bytes > 200 * 1024) =>
            {
                r.body.clone()
            }
            _ => None,
        })
        .expect("the big response was recorded");
    assert!(resp.truncated);
    assert_eq!(resp.data.len(), 4096);
    let create = events
        .iter()
        .find_map(|ev| match &ev.payload {
            Some(Payload::Request(r)) if r.request.as_ref().is_some_and(|k| k.verb == "create") => {
                Some(r.clone())
            }
            _ => None,
        })
        .unwrap();
    let body = create.body.unwrap();
    assert!(body.truncated);
    assert_eq!(body.data.len(), 4096);
    let finished = events
        .iter()
        .find_map(|ev| match &ev.payload {
            Some(Payload::Response(r)) if r.request_event_id == ev_id(&events, "create") => {
                Some(r.request_bytes)
            }
            _ => None,
        })
        .unwrap();
    assert!(
        finished > 100 * 1024,
        "request_bytes counts what went upstream: {finished}"
    );
}

fn ev_id(events: &[Event], verb: &str) -> String {
    events
        .iter()
        .find(|ev| matches!(&ev.payload, Some(Payload::Request(r)) if r.request.as_ref().is_some_and(|k| k.verb == verb)))
        .map(|ev| ev.event_id.clone())
        .unwrap_or_default()
}

/// kubectl over HTTP/1.1 (client-go's `DISABLE_HTTP2`, as behind proxies that do not speak h2):
/// the gateway serves it over HTTP/1.1 and kubectl must not be able to tell, for reads, errors,
/// writes, logs, follows and watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_kubectl_behaves_the_same_through_the_gateway() {
    let mut e = env_with_logs().await;
    let pod = LOG_POD;
    let h1 = ("DISABLE_HTTP2".to_string(), "1".to_string());
    e.direct.env.push(h1.clone());
    e.agent.env.push(h1);
    first_reads_match(&e).await;
    let missing = same(&e, &["get", "configmap", "nope", "-n", "payments"]).await;
    assert_eq!(missing.code, Some(1));
    let tail = same(&e, &["logs", pod, "-n", "payments", "--tail", "2"]).await;
    assert_eq!(tail.stdout, "line 3\nline 4\n");

    let manifest = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h1-flags\n  namespace: payments\ndata:\n  v: \"{v}\"\n"
        )
    };
    for (v, want) in [("1", "created"), ("2", "configured")] {
        let out = e
            .agent
            .run_with_stdin(&["apply", "-f", "-"], Some(&manifest(v)))
            .await
            .unwrap();
        assert_eq!(
            out.clone().ok().unwrap().stdout,
            format!("configmap/h1-flags {want}\n"),
            "{out}"
        );
    }
    assert_eq!(
        e.api
            .object("", "configmaps", "payments", "h1-flags")
            .unwrap()["data"]["v"],
        "2"
    );

    // A follow and a watch stream as they happen, over HTTP/1.1 chunked responses.
    follow_and_watch(&e, "h1-flags", "h1-later").await;
    let out = e
        .agent
        .run(&["delete", "configmap", "h1-flags", "-n", "payments"])
        .await
        .unwrap();
    assert!(
        out.clone().ok().unwrap().stdout.contains("deleted"),
        "{out}"
    );

    // kubectl really spoke HTTP/1.1 (seen on its direct requests), and everything it asked the
    // gateway for reached the API server as the agent.
    let requests = e.api.requests();
    let direct: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.authenticated_user.as_deref() != Some(gatehouse_tests::apiserver::GATEWAY_USER)
        })
        .collect();
    let via: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.effective_user
                .as_ref()
                .is_some_and(|u| u.username == "agent-ops")
        })
        .collect();
    assert!(
        !direct.is_empty() && via.len() > 10,
        "{} direct, {} via",
        direct.len(),
        via.len()
    );
    for r in &direct {
        assert_eq!(r.version, "HTTP/1.1", "{} {}", r.method, r.path);
    }
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(
            via.iter().any(|r| r.method == method),
            "no {method} via the gateway"
        );
    }

    let cmds = e.commands();
    for want in [
        "kubectl get configmap app-config -n payments".to_string(),
        format!("kubectl logs {pod} -n payments -c api -f"),
        "kubectl get configmaps -n payments --watch".to_string(),
        "kubectl delete configmap h1-flags -n payments".to_string(),
    ] {
        assert!(cmds.contains(&want), "missing {want:?} in {cmds:#?}");
    }
}
