//! The standard end-to-end set-up: the test API server, a test OIDC issuer, the real gateway
//! binary in front of them, and kubectl both direct (as cluster admin) and through the gateway
//! (as `agent-ops`, group `agents`, with an OIDC token).
use crate::apiserver::{ADMIN_TOKEN, ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use crate::gateway_proc::GatewayProc;
use crate::kubectl::{Kubectl, kubeconfig_yaml};
use crate::oidc::TestIssuer;
use gatehouse_proto::v1::Event;
use prost::Message;
use tempfile::TempDir;

/// The audience the gateway accepts and the issuer mints for.
pub const AUDIENCE: &str = "gatehouse";

pub struct GatewayEnv {
    pub api: TestApiServer,
    pub issuer: TestIssuer,
    pub gw: GatewayProc,
    pub dir: TempDir,
    /// kubectl straight to the test API server, as cluster admin.
    pub direct: Kubectl,
    /// kubectl through the gateway as `agent-ops` (group `agents`).
    pub agent: Kubectl,
}

impl GatewayEnv {
    /// Starts everything; `extra` are further gateway flags.
    pub async fn start(opts: ApiServerOptions, extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let api = TestApiServer::start(opts).await?;
        let upstream = dir.path().join("upstream.kubeconfig");
        api.write_kubeconfig(&upstream, GATEWAY_TOKEN)?;
        let issuer = TestIssuer::start().await?;
        let issuer_ca = dir.path().join("issuer-ca.pem");
        std::fs::write(&issuer_ca, &issuer.ca_pem)?;
        let mut args = vec![
            "--upstream-mode=kubeconfig".to_string(),
            format!("--kubeconfig={}", upstream.display()),
            format!("--oidc-issuer-url={}", issuer.url),
            format!("--oidc-audience={AUDIENCE}"),
            format!("--oidc-ca-file={}", issuer_ca.display()),
            "--oidc-username-prefix=-".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let gw = GatewayProc::start(dir.path(), &dir.path().join("journal"), &args).await?;
        let direct = Kubectl::new(&dir.path().join("direct"), &api.kubeconfig(ADMIN_TOKEN))?;
        let token = issuer.token("agent-ops", &["agents"], AUDIENCE)?;
        let agent = kubectl_via(&gw, &dir, "agent", &token)?;
        Ok(Self {
            api,
            issuer,
            gw,
            dir,
            direct,
            agent,
        })
    }

    /// A collector's flags to serve readers in group `auditors` whose tokens this environment's
    /// issuer signs (the same OIDC set-up as the gateway's callers).
    pub fn collector_reader_args(&self) -> Vec<String> {
        vec![
            format!("--oidc-issuer-url={}", self.issuer.url),
            format!("--oidc-audience={AUDIENCE}"),
            format!(
                "--oidc-ca-file={}",
                self.dir.path().join("issuer-ca.pem").display()
            ),
            "--oidc-username-prefix=-".to_string(),
            "--reader-groups=auditors".to_string(),
        ]
    }

    /// kubectl through the gateway with `token`, its `HOME` in `<dir>/<name>`.
    pub fn kubectl_as(&self, name: &str, token: &str) -> anyhow::Result<Kubectl> {
        kubectl_via(&self.gw, &self.dir, name, token)
    }

    /// Every event in the gateway's journal, in journal order.
    pub fn events(&self) -> anyhow::Result<Vec<Event>> {
        gatehouse_journal::Reader::read_all(&self.gw.journal_dir)?
            .into_iter()
            .map(|r| Ok(Event::decode(r.payload.as_slice())?))
            .collect()
    }
}

/// kubectl through `gw` with `token`, its `HOME` in `<dir>/<name>`.
pub fn kubectl_via(
    gw: &GatewayProc,
    dir: &TempDir,
    name: &str,
    token: &str,
) -> anyhow::Result<Kubectl> {
    let home = dir.path().join(name);
    std::fs::create_dir_all(&home)?;
    Kubectl::new(&home, &kubeconfig_yaml(&gw.url, &gw.ca_pem, token))
}
