//! Secrets never reach the logs: the real gateway and collector run with `LOG=trace` and
//! `LOG_FORMAT=json` while real kubectl v1.35 sends an OIDC JWT, a ServiceAccount token (checked
//! with TokenReview), a forged bearer token, a Secret's data and a pod log line holding an AWS
//! key through them, the gateway using its own upstream token and the collector ingest token.
//! Every line either process wrote on stdout or stderr is searched for each secret value.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use gatehouse_tests::apiserver::{ApiServerOptions, TestApiServer, UserInfo};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::{AUDIENCE, kubectl_via};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::kubectl::Kubectl;
use gatehouse_tests::oidc::TestIssuer;
use std::time::Duration;

const POD: &str = "payments-api-7c9d8b5f6d-2xk4p";

fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_any_trace_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // The secrets, each unique to this run so a match cannot be a coincidence.
    let upstream_token = random("gw-upstream-");
    // Shaped like a projected ServiceAccount token (three base64url segments).
    let sa_token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"sub":"system:serviceaccount:payments:deployer"}"#),
        random("sasig")
    );
    let forged = random("forged-bearer-");
    let secret_value = random("db-password-");
    let aws_key_id = format!("AKIA{}", &random("").to_uppercase()[..16]);
    let aws_secret = format!("{}/K7MDENG/bPxRfiCY", random("wJalrXUtnFEMI"));

    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let pki = CollectorPki::write(dir.path()).unwrap();
    let mut cargs = ch.collector_args();
    cargs.extend(pki.args());
    cargs.push("--batch-period=100ms".into());
    let col = CollectorProc::start_logging(dir.path(), 0, &cargs, "trace")
        .await
        .unwrap();

    let mut opts = ApiServerOptions {
        gateway_token: upstream_token.clone(),
        ..Default::default()
    };
    opts.users.insert(
        sa_token.clone(),
        UserInfo {
            username: "system:serviceaccount:payments:deployer".into(),
            groups: vec!["system:serviceaccounts".into()],
            ..Default::default()
        },
    );
    opts.logs.content.insert(
        format!("payments/{POD}"),
        format!(
            "starting\naws configure set aws_access_key_id {aws_key_id}\nAWS_SECRET_ACCESS_KEY={aws_secret}\nready\n"
        ),
    );
    let api = TestApiServer::start(opts).await.unwrap();
    let upstream = dir.path().join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream, &upstream_token).unwrap();
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
        "--token-review".to_string(),
        "--journal-fsync=always".to_string(),
    ];
    args.extend(pki.gateway_shipping(dir.path(), &col.addr).unwrap().args);
    let gw = GatewayProc::start_logging(dir.path(), &dir.path().join("journal"), &args, "trace")
        .await
        .unwrap();

    let jwt = issuer.token("agent-ops", &["agents"], AUDIENCE).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let agent = kubectl_via(&gw, &tmp, "agent", &jwt).unwrap();
    let sa = kubectl_via(&gw, &tmp, "sa", &sa_token).unwrap();
    let intruder = kubectl_via(&gw, &tmp, "intruder", &forged).unwrap();
    let ok = |k: &Kubectl, args: &'static [&'static str]| {
        let k = k.clone();
        async move { k.run(args).await.unwrap().ok().unwrap() }
    };

    // A Secret created with its value on the command line, read back, and applied from YAML.
    let created = agent
        .run(&[
            "create",
            "secret",
            "generic",
            "db-creds",
            "-n",
            "payments",
            &format!("--from-literal=password={secret_value}"),
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(created.stdout.contains("secret/db-creds"), "{created}");
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-key\n  namespace: payments\nstringData:\n  aws_secret_access_key: {aws_secret}\n"
    );
    agent
        .run_with_stdin(&["apply", "-f", "-"], Some(&manifest))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let yaml = ok(
        &agent,
        &["get", "secret", "db-creds", "-n", "payments", "-o", "yaml"],
    )
    .await;
    assert!(yaml.stdout.contains("name: db-creds"), "{yaml}");
    ok(&agent, &["get", "secrets", "-n", "payments"]).await;
    // The pod log with the AWS key goes through the gateway (and into the journal).
    let logs = ok(&agent, &["logs", POD, "-n", "payments"]).await;
    assert!(logs.stdout.starts_with("starting\n"), "{logs}");
    // The ServiceAccount token is verified with a TokenReview and used.
    let who = ok(&sa, &["auth", "whoami", "-o", "json"]).await;
    assert!(
        who.stdout
            .contains("system:serviceaccount:payments:deployer"),
        "{who}"
    );
    ok(&sa, &["get", "configmap", "app-config", "-n", "payments"]).await;
    // A forged token is refused.
    let refused = intruder
        .run(&["get", "pods", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(refused.code, Some(1), "{refused}");

    // Everything is shipped, so the collector has handled (and traced) the recorded secrets.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let want = gatehouse_journal::Reader::read_all(&gw.journal_dir)
            .unwrap()
            .len();
        let got = ch
            .query_text("SELECT count(), uniqExact(event_id) FROM events")
            .await
            .unwrap_or_default();
        if got.trim() == format!("{want}\t{want}") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ClickHouse holds {got:?}, the journal {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let the last acks and their trace lines land.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let jwt_signature = jwt.rsplit('.').next().unwrap().to_string();
    let secrets = [
        ("OIDC JWT", jwt.clone()),
        ("OIDC JWT signature", jwt_signature),
        ("ServiceAccount token", sa_token.clone()),
        ("forged bearer token", forged.clone()),
        ("gateway upstream token", upstream_token.clone()),
        ("collector ingest token", pki.token.clone()),
        ("Secret value", secret_value.clone()),
        ("Secret value (base64)", b64(&secret_value)),
        ("AWS access key id", aws_key_id.clone()),
        ("AWS secret key", aws_secret.clone()),
        ("AWS secret key (base64)", b64(&aws_secret)),
    ];
    for (who, log) in [("gateway", &gw.log), ("collector", &col.log)] {
        let lines = log.lock().clone();
        // The search means something only if the trace lines are there.
        let traced = lines
            .iter()
            .filter(|l| l.contains("\"level\":\"TRACE\""))
            .count();
        assert!(
            traced > 50,
            "{who} wrote only {traced} TRACE lines of {}",
            lines.len()
        );
        for line in &lines {
            for (what, value) in &secrets {
                assert!(
                    !line.contains(value.as_str()),
                    "the {who} logged the {what}:\n{line}"
                );
            }
        }
        let naming = lines.iter().filter(|l| l.contains("db-creds")).count();
        println!(
            "{who}: {} log lines ({traced} TRACE, {naming} naming the Secret db-creds), no secret",
            lines.len()
        );
    }
}
