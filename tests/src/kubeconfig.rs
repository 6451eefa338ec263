//! Writes kubeconfig files for kubectl and the gateway's upstream side.
use base64::Engine;
use std::path::Path;

/// A single-context kubeconfig for `server`, trusting `ca_pem`, with an optional bearer token.
pub fn write(path: &Path, server: &str, ca_pem: &str, token: Option<&str>) -> anyhow::Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut user = serde_json::Map::new();
    if let Some(t) = token {
        user.insert("token".into(), t.into());
    }
    let cfg = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    });
    std::fs::write(path, serde_yaml::to_string(&cfg)?)?;
    Ok(())
}
