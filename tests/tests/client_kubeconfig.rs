//! The client side for real: `gatehouse kubeconfig` writes a context, real kubectl calls
//! `gatehouse token` as its ExecCredential plugin, and the requests pass the real gateway as the
//! signed-in identity. Device-code, cached and refreshed tokens; client credentials for agents.
#![allow(clippy::unwrap_used)]
use gatehouse_proto::v1::event::Payload;
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use gatehouse_tests::kubectl::kubectl_path;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Client {
    dir: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

fn gatehouse() -> PathBuf {
    gatehouse_tests::binaries::path("gatehouse").unwrap()
}

/// Writes the CAs and runs `gatehouse kubeconfig` with `extra` flags.
async fn configure(env: &GatewayEnv, name: &str, extra: &[String]) -> (Client, Output) {
    let dir = env.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let gw_ca = dir.join("gateway-ca.pem");
    let issuer_ca = dir.join("issuer-ca.pem");
    std::fs::write(&gw_ca, &env.gw.ca_pem).unwrap();
    std::fs::write(&issuer_ca, &env.issuer.ca_pem).unwrap();
    let c = Client {
        kubeconfig: dir.join("kube").join("config"),
        cache: dir.join("cache"),
        dir,
    };
    let gateway = extra
        .iter()
        .find_map(|a| a.strip_prefix("--gateway="))
        .map_or(env.gw.url.clone(), str::to_string);
    let extra: Vec<&String> = extra
        .iter()
        .filter(|a| !a.starts_with("--gateway="))
        .collect();
    let out = tokio::process::Command::new(gatehouse())
        .arg("kubeconfig")
        .arg(format!("--gateway={gateway}"))
        .arg(format!("--ca={}", gw_ca.display()))
        .arg(format!("--issuer={}", env.issuer.url))
        .arg(format!("--issuer-ca={}", issuer_ca.display()))
        .arg(format!("--client-id={AUDIENCE}"))
        .arg(format!("--kubeconfig={}", c.kubeconfig.display()))
        .arg(format!("--cache-dir={}", c.cache.display()))
        .arg("--namespace=default")
        .args(extra)
        .env("HOME", &c.dir)
        .output()
        .await
        .unwrap();
    (c, out)
}

async fn kubectl(c: &Client, args: &[&str]) -> Output {
    tokio::process::Command::new(kubectl_path().unwrap())
        .arg(format!("--kubeconfig={}", c.kubeconfig.display()))
        .args(args)
        .env("HOME", &c.dir)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Usernames the gateway recorded on requests, in order.
fn recorded_users(env: &GatewayEnv) -> Vec<String> {
    env.events()
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::Request(_))))
        .map(|e| e.identity.map(|i| i.username).unwrap_or_default())
        .collect()
}

fn cache_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one cached token: {files:?}");
    files[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_signs_in_with_the_device_code_then_uses_cached_and_refreshed_tokens() {
    let env = GatewayEnv::start(ApiServerOptions::default(), &[])
        .await
        .unwrap();
    // A public client (no secret): people sign in with the device code.
    env.issuer
        .register_client(AUDIENCE, None, "agent-ops", &["agents"]);
    let (c, out) = configure(&env, "person", &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("device-code sign-in"));

    let kc = std::fs::read_to_string(&c.kubeconfig).unwrap();
    assert!(!kc.contains("insecure-skip-tls-verify"), "{kc}");
    let doc: serde_yaml::Value = serde_yaml::from_str(&kc).unwrap();
    assert_eq!(doc["current-context"], "gatehouse");
    let cluster = &doc["clusters"][0]["cluster"];
    assert_eq!(cluster["server"].as_str().unwrap(), env.gw.url);
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap())
        .unwrap();
    assert_eq!(text(&ca), env.gw.ca_pem);
    let exec = &doc["users"][0]["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["args"][0], "token");
    assert_eq!(
        std::fs::metadata(&c.kubeconfig)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // First call: no token yet, so the plugin runs the device flow (kubectl shows its stderr).
    let out = kubectl(&c, &["get", "configmaps"]).await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "open {}/activate and enter the code GH-",
            env.issuer.url
        )),
        "{err}"
    );
    assert_eq!(env.issuer.grants.lock().device_authorizations, 1);
    let cached = cache_file(&c.cache);
    assert_eq!(
        std::fs::metadata(&cached).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&c.cache).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Second call: the cached token, no new sign-in.
    let out = kubectl(&c, &["get", "configmaps"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("enter the code"));
    assert_eq!(env.issuer.grants.lock().device_authorizations, 1);
    assert_eq!(env.issuer.grants.lock().refreshes, 0);

    // The token expires: the refresh token renews it, still without a sign-in.
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cached).unwrap()).unwrap();
    let old = v["token"].clone();
    v["expires_at"] = serde_json::json!(0);
    std::fs::write(&cached, v.to_string()).unwrap();
    let out = kubectl(&c, &["get", "configmaps"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counts = {
        let g = env.issuer.grants.lock();
        (g.device_authorizations, g.refreshes)
    };
    assert_eq!(counts, (1, 1));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cached).unwrap()).unwrap();
    assert_ne!(v["token"], old, "the refreshed token is cached");

    // The plugin prints an ExecCredential with the expiry kubectl uses to know when to ask again.
    let out = tokio::process::Command::new(gatehouse())
        .args(
            exec["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cred["kind"], "ExecCredential");
    assert_eq!(cred["status"]["token"], v["token"]);
    let exp = chrono::DateTime::parse_from_rfc3339(
        cred["status"]["expirationTimestamp"].as_str().unwrap(),
    )
    .unwrap();
    assert!(exp.timestamp() > chrono::Utc::now().timestamp() + 3000);

    let users = recorded_users(&env);
    // kubectl get makes one or more requests per call; three calls went through.
    assert!(users.len() >= 3, "{users:?}");
    assert!(users.iter().all(|u| u == "agent-ops"), "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_agent_uses_client_credentials_and_a_wrong_secret_is_refused() {
    let env = GatewayEnv::start(ApiServerOptions::default(), &[])
        .await
        .unwrap();
    env.issuer
        .register_client(AUDIENCE, Some("s3cret"), "ai-agent-7", &["agents"]);
    let dir = env.dir.path();
    let secret = dir.join("client-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let (c, out) = configure(
        &env,
        "agent",
        &[
            "--grant=client-credentials".into(),
            format!("--client-secret-file={}", secret.display()),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kc = std::fs::read_to_string(&c.kubeconfig).unwrap();
    assert!(kc.contains("interactiveMode: Never"), "{kc}");
    for _ in 0..2 {
        let out = kubectl(&c, &["get", "configmaps"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(
        env.issuer.grants.lock().client_credentials,
        1,
        "the second call uses the cached token"
    );
    let users = recorded_users(&env);
    assert!(users.len() >= 2, "{users:?}");
    assert!(users.iter().all(|u| u == "ai-agent-7"), "{users:?}");

    // A wrong secret: one line saying so, exit 2, and kubectl fails without reaching the cluster.
    let wrong = dir.join("wrong-secret");
    std::fs::write(&wrong, "nope").unwrap();
    let out = tokio::process::Command::new(gatehouse())
        .arg("token")
        .arg(format!("--issuer={}", env.issuer.url))
        .arg(format!(
            "--issuer-ca={}",
            c.dir.join("issuer-ca.pem").display()
        ))
        .arg(format!("--client-id={AUDIENCE}"))
        .arg("--grant=client-credentials")
        .arg(format!("--client-secret-file={}", wrong.display()))
        .arg(format!("--cache-dir={}", dir.join("other-cache").display()))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "gatehouse: sign-in refused: HTTP 401 Unauthorized: invalid_client\n"
    );
    assert!(out.stdout.is_empty());

    // Plain http for the gateway is refused before anything is written.
    let (bad, out) = configure(&env, "insecure", &["--gateway=http://127.0.0.1:1".into()]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("must be an https URL"));
    assert!(!bad.kubeconfig.exists());
}
