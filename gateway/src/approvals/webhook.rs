//! Announces a pending approval with one JSON POST: the approval itself (`generic`), or a Slack
//! incoming-webhook message (`slack`). Retried on 5xx and connection failures; a delivery that
//! still fails is logged and the hold goes on.
use super::Approval;
use bytes::Bytes;
use gatehouse_policy::{Webhook, WebhookFormat};
use http_body_util::Full;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The JSON body for `format`.
pub fn payload(format: WebhookFormat, a: &Approval) -> serde_json::Value {
    match format {
        WebhookFormat::Generic => serde_json::json!({
            "type": "gatehouse.approval.pending",
            "approval": a,
        }),
        WebhookFormat::Slack => serde_json::json!({
            "text": format!(
                "gatehouse: *{}* asks to run `{}` (rule {}). Approve with `gatehouse approvals approve {} --reason …`",
                a.requester, a.command, a.rule, a.id
            ),
        }),
    }
}

/// Attempts per notification: a 5xx answer or a failed connection is retried after 1 s, then
/// 2 s; a 4xx answer is final (the receiver refuses this payload).
pub const ATTEMPTS: u32 = 3;

/// Posts in the background.
pub fn notify(hook: &Webhook, a: &Approval) {
    let url = hook.url.clone();
    let body = payload(hook.format, a).to_string();
    let id = a.id.clone();
    tokio::spawn(async move {
        for attempt in 1..=ATTEMPTS {
            let retry = match post(&url, body.clone()).await {
                Ok(status) if status.is_success() => return,
                Ok(status) if status.is_server_error() => {
                    tracing::warn!(%url, %status, attempt, id, "approval webhook failed");
                    true
                }
                Ok(status) => {
                    tracing::warn!(%url, %status, id, "approval webhook refused the notification");
                    false
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, attempt, id, "approval webhook failed");
                    true
                }
            };
            if !retry || attempt == ATTEMPTS {
                tracing::error!(%url, id, "approval webhook not delivered; the request stays held");
                return;
            }
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
    });
}

async fn post(url: &str, body: String) -> Result<http::StatusCode, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = crate::upstream::tls::client_config(roots, None).map_err(|e| e.to_string())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("invalid webhook url: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out after 10s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(resp.status())
}
