//! List-then-watch loop for one collection: a full snapshot after every (re)list, then single
//! changes; on any failure it relists with capped exponential backoff, so a restarted API
//! server or an expired resourceVersion (410) never leaves the agent on stale state.
use std::time::Duration;

use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{KubeError, client::Client};

/// One change to a watched collection.
#[derive(Debug)]
pub enum Change<T> {
    /// The whole collection, replacing what was known.
    Reset(Vec<T>),
    Apply(T),
    Delete(T),
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs until the receiver is dropped. `path` is the collection URL, `query` its selectors.
pub async fn run<T, E>(
    client: Client,
    path: String,
    query: String,
    tx: mpsc::Sender<E>,
    wrap: fn(Change<T>) -> E,
) where
    T: Resource + DeserializeOwned,
{
    let mut backoff = BACKOFF_MIN;
    loop {
        match once(&client, &path, &query, &tx, wrap, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    collection = %path, error = %e, retry_in = ?backoff,
                    "kubernetes watch failed; relisting"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One list and the watches that follow it. Ok(()) only when the receiver is gone.
async fn once<T, E>(
    client: &Client,
    path: &str,
    query: &str,
    tx: &mpsc::Sender<E>,
    wrap: fn(Change<T>) -> E,
    backoff: &mut Duration,
) -> Result<(), KubeError>
where
    T: Resource + DeserializeOwned,
{
    let sep = if query.is_empty() { "" } else { "&" };
    let (items, mut rv) = client.list(&format!("{path}?{query}")).await?;
    let items = items
        .into_iter()
        .map(typed::<T>)
        .collect::<Result<Vec<_>, _>>()?;
    if tx.send(wrap(Change::Reset(items))).await.is_err() {
        return Ok(());
    }
    loop {
        let mut watch = client
            .watch(&format!(
                "{path}?{query}{sep}watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}"
            ))
            .await?;
        *backoff = BACKOFF_MIN;
        while let Some((kind, object)) = watch.next().await? {
            if let Some(v) = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                rv = v.to_string();
            }
            let change = match kind.as_str() {
                "ADDED" | "MODIFIED" => Change::Apply(typed::<T>(object)?),
                "DELETED" => Change::Delete(typed::<T>(object)?),
                "BOOKMARK" => continue,
                // ERROR carries a Status: 410 Gone means relist, anything else too.
                _ => {
                    let msg = object
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("watch error")
                        .to_string();
                    return Err(KubeError::Http(msg));
                }
            };
            if tx.send(wrap(change)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// List items come without apiVersion/kind; k8s-openapi checks them when present only, but
/// set them so the typed decode is the same for list and watch.
pub(crate) fn typed<T: Resource + DeserializeOwned>(mut v: Value) -> Result<T, KubeError> {
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::from(T::API_VERSION));
        m.insert("kind".into(), Value::from(T::KIND));
    }
    serde_json::from_value(v).map_err(|e| KubeError::Http(format!("decoding a {}: {e}", T::KIND)))
}
