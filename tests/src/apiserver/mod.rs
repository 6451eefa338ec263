//! A faithful in-process Kubernetes API server for tests: HTTPS (h2 + http/1.1), bearer and
//! client-certificate auth, impersonation, discovery, OpenAPI, CRUD/patch/apply, Table,
//! watch, pod logs and TokenReview, good enough that real kubectl v1.35 cannot tell.

mod auth;
mod defaults;
mod discovery;
mod ephemeral;
mod handler;
mod logs;
mod media;
mod openapi;
mod patch;
mod protobuf;
mod resources;
mod reviews;
mod schema;
mod seed;
mod status;
mod store;
mod streams;
mod table;
pub mod tls;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use auth::UserInfo;
pub use status::ApiError;
pub use store::EventType;

/// The response body type: whole bodies and streams (watch, logs) alike.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).boxed_unsync()
}

/// A body fed chunk by chunk from a channel; each chunk is written and flushed as it comes.
/// When the client goes away the receiver is dropped and the producer's `send` fails.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, ChannelBody { rx }.boxed_unsync())
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A rule that forbids an action (everything else is allowed, like a cluster-admin world).
#[derive(Clone, Debug, Default)]
pub struct DenyRule {
    /// Effective username, or `*` for everyone.
    pub user: String,
    /// Verb (`get`, `list`, `create`, ...) or `*`.
    pub verb: String,
    /// Plural resource (`secrets`) or `*`.
    pub resource: String,
    /// Namespace, or `None` for all.
    pub namespace: Option<String>,
}

impl DenyRule {
    fn matches(&self, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
        (self.user == "*" || self.user == user)
            && (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

/// Synthetic pod logs.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Explicit log text per `ns/pod` or `ns/pod/container`.
    pub content: BTreeMap<String, String>,
    /// Generated log size in bytes per `ns/pod` (also settable with the pod annotation
    /// [`LOG_BYTES_ANNOTATION`]); streamed in chunks, never held in memory.
    pub generated_bytes: BTreeMap<String, u64>,
    /// How often `follow=true` emits a new line once the existing log is sent.
    pub follow_interval: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            content: BTreeMap::new(),
            generated_bytes: BTreeMap::new(),
            follow_interval: Duration::from_millis(200),
        }
    }
}

/// Pod annotation holding the log text (overrides the default generated lines).
pub const LOG_CONTENT_ANNOTATION: &str = "gatehouse.dev/test-log";
/// Pod annotation asking for a generated log of this many bytes.
pub const LOG_BYTES_ANNOTATION: &str = "gatehouse.dev/test-log-bytes";

/// How to start a [`TestApiServer`].
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// The gateway's credential: authenticates as `gateway_user`, which may impersonate and
    /// call TokenReview.
    pub gateway_token: String,
    pub gateway_user: UserInfo,
    /// Other bearer tokens: both valid credentials here and what TokenReview answers.
    pub users: BTreeMap<String, UserInfo>,
    /// Usernames allowed to impersonate (members of `system:masters` always may).
    pub impersonators: BTreeSet<String>,
    /// Usernames allowed to create TokenReviews (members of `system:masters` always may).
    pub token_reviewers: BTreeSet<String>,
    /// Seed the default namespaces and the `payments` demo objects (see [`seed_objects`]).
    pub seed_defaults: bool,
    /// Extra objects to create at start (after the defaults), any served kind.
    pub objects: Vec<Value>,
    pub logs: LogOptions,
    /// Actions that answer 403 (and `no` to `kubectl auth can-i`).
    pub deny: Vec<DenyRule>,
}

/// The default gateway token.
pub const GATEWAY_TOKEN: &str = "gateway-token";
/// The default gateway principal.
pub const GATEWAY_USER: &str = "system:serviceaccount:gatehouse:gateway";
/// A `system:masters` token, for talking to the server directly.
pub const ADMIN_TOKEN: &str = "admin-token";
/// Tokens for two ordinary users, `alice` (group `developers`) and `bob` (group `viewers`).
pub const ALICE_TOKEN: &str = "alice-token";
pub const BOB_TOKEN: &str = "bob-token";

impl Default for ApiServerOptions {
    fn default() -> Self {
        let gateway_user = UserInfo::new(
            GATEWAY_USER,
            &["system:serviceaccounts", "system:serviceaccounts:gatehouse"],
        )
        .with_uid("5b0c5d6e-0000-4000-8000-000000000001");
        let mut users = BTreeMap::new();
        users.insert(
            ADMIN_TOKEN.to_string(),
            UserInfo::new(
                "kubernetes-admin",
                &["kubeadm:cluster-admins", "system:masters"],
            ),
        );
        users.insert(
            ALICE_TOKEN.to_string(),
            UserInfo::new("alice", &["developers"]).with_uid("alice-uid-0001"),
        );
        users.insert(
            BOB_TOKEN.to_string(),
            UserInfo::new("bob", &["viewers"]).with_uid("bob-uid-0002"),
        );
        ApiServerOptions {
            gateway_token: GATEWAY_TOKEN.to_string(),
            impersonators: BTreeSet::from([gateway_user.username.clone()]),
            token_reviewers: BTreeSet::from([gateway_user.username.clone()]),
            gateway_user,
            users,
            seed_defaults: true,
            objects: Vec::new(),
            logs: LogOptions::default(),
            deny: Vec::new(),
        }
    }
}

pub use seed::seed_objects;

/// One request as received, before any processing, so tests can assert what a gateway sent.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header, lower-case names, in arrival order (repeated headers repeat).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The authenticated username (before impersonation), if authentication succeeded.
    pub authenticated_user: Option<String>,
    /// The effective user after impersonation, if authentication succeeded.
    pub effective_user: Option<UserInfo>,
}

impl RecordedRequest {
    /// All values of a header (case-insensitive name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

pub(crate) struct State {
    pub opts: ApiServerOptions,
    pub store: store::Store,
    pub recorded: Mutex<Vec<RecordedRequest>>,
    /// Client certificates we issued (DER) and who they name.
    pub client_certs: Mutex<BTreeMap<Vec<u8>, UserInfo>>,
    pub address: String,
    /// The pods' "containers": real local processes in per-pod temp dirs.
    pub streams: streams::Containers,
}

impl State {
    fn may(&self, user: &UserInfo, set: &BTreeSet<String>) -> bool {
        set.contains(&user.username) || user.groups.iter().any(|g| g == "system:masters")
    }

    pub(crate) fn may_impersonate(&self, user: &UserInfo) -> bool {
        self.may(user, &self.opts.impersonators)
    }

    pub(crate) fn may_review_tokens(&self, user: &UserInfo) -> bool {
        self.may(user, &self.opts.token_reviewers)
    }

    /// Whether the deny rules allow an action.
    pub(crate) fn allowed(&self, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
        !self
            .opts
            .deny
            .iter()
            .any(|d| d.matches(user, verb, resource, namespace))
    }
}

/// A running test apiserver on `https://127.0.0.1:<port>`. Dropping it stops serving.
pub struct TestApiServer {
    addr: SocketAddr,
    ca: tls::TestCa,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApiServer {
    /// Generates the CA and serving certificate, seeds the store and starts serving on
    /// 127.0.0.1 with an ephemeral port.
    pub async fn start(opts: ApiServerOptions) -> anyhow::Result<TestApiServer> {
        let ca = tls::TestCa::generate().context("generating the test CA")?;
        let serving = ca
            .issue_server()
            .context("issuing the serving certificate")?;
        let config = ca.server_config(&serving)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            store: store::Store::new(),
            recorded: Mutex::new(Vec::new()),
            client_certs: Mutex::new(BTreeMap::new()),
            address: addr.to_string(),
            streams: streams::Containers::new().context("creating the pods' directory")?,
            opts,
        });
        seed::seed(&state).context("seeding objects")?;
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the accept task ends them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                while conns.try_join_next().is_some() {}
                let acceptor = acceptor.clone();
                let state = task_state.clone();
                conns.spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let peer_cert = peer_cert.clone();
                        async move {
                            Ok::<_, Infallible>(handler::handle(state, req, peer_cert).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        });
        Ok(TestApiServer {
            addr,
            ca,
            state,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory that is pod `namespace/pod`'s filesystem (exec runs there).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> std::path::PathBuf {
        self.state.streams.pod_dir(namespace, pod)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorded.lock().clone()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.state.recorded.lock().clear();
    }

    /// The current object, straight from the store (`group` is `""` for core).
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)?;
        self.state.store.get(r, namespace, name)
    }

    /// Creates an object as `kubectl create` would (defaults applied, `status` dropped), and
    /// returns it with its server-set uid: tests that build fake cgroups need that uid.
    pub fn create_object(&self, obj: Value) -> anyhow::Result<Value> {
        handler::create_internal(&self.state, obj).map_err(|e| anyhow::anyhow!("creating: {e}"))
    }

    /// Replaces an object's `status` as the status subresource does (a kubelet reporting
    /// container ids, a node its addresses); watchers see MODIFIED.
    pub fn set_status(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> anyhow::Result<Value> {
        let r = resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .ok_or_else(|| anyhow::anyhow!("no served resource {group}/{plural}"))?;
        let (_, o) = self
            .state
            .store
            .write(r, namespace, name, false, |cur| {
                let mut next = cur
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
                next["status"] = status;
                Ok(store::Write::Update(next))
            })
            .map_err(|e| anyhow::anyhow!("updating status: {e}"))?;
        Ok(o)
    }

    /// Deletes an object at once (no grace period); watchers see DELETED.
    pub fn delete_object(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let r = resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .ok_or_else(|| anyhow::anyhow!("no served resource {group}/{plural}"))?;
        self.state
            .store
            .write(r, namespace, name, false, |_| Ok(store::Write::Delete))
            .map_err(|e| anyhow::anyhow!("deleting: {e}"))?;
        Ok(())
    }

    /// Issues a client certificate for `user` (CN) and `groups` (O), accepted by this server.
    /// Returns `(cert_pem, key_pem)`.
    pub fn issue_client_cert(&self, user: &UserInfo) -> anyhow::Result<(String, String)> {
        let issued = self.ca.issue_client(&user.username, &user.groups)?;
        self.state
            .client_certs
            .lock()
            .insert(issued.cert_der.clone(), user.clone());
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// A kubeconfig (context `test`) with the CA data and a bearer token.
    pub fn kubeconfig(&self, token: &str) -> String {
        crate::kubectl::kubeconfig_yaml(&self.url(), &self.ca.pem, token)
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig(token))
            .with_context(|| format!("writing kubeconfig {}", path.display()))
    }
}
