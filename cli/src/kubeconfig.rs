//! `gatehouse kubeconfig`: writes a kubeconfig context for the gateway with its CA inline
//! (never insecure-skip-tls-verify) and gatehouse itself as the ExecCredential plugin.
use crate::token::{Grant, TokenArgs};
use base64::Engine;
use clap::Args;
use serde_yaml::{Mapping, Value};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

impl KubeconfigError {
    pub fn exit_code(&self) -> u8 {
        match self {
            KubeconfigError::Config(_) => 64,
            KubeconfigError::File { .. } => 1,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct KubeconfigArgs {
    /// The gateway's URL (https).
    #[arg(long, env = "GATEHOUSE_GATEWAY")]
    pub gateway: String,
    /// PEM CA that signed the gateway's certificate; embedded as certificate-authority-data.
    #[arg(long, env = "GATEHOUSE_GATEWAY_CA")]
    pub ca: PathBuf,
    /// Name of the context, cluster and user written.
    #[arg(long, env = "GATEHOUSE_CONTEXT", default_value = "gatehouse")]
    pub context: String,
    /// Default namespace of the context.
    #[arg(long, env = "GATEHOUSE_NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig file to create or update (default ~/.kube/config).
    #[arg(long, env = "GATEHOUSE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Leave current-context alone.
    #[arg(long, env = "GATEHOUSE_NO_SWITCH")]
    pub no_switch: bool,
    #[command(flatten)]
    pub token: TokenArgs,
}

pub fn run(args: &KubeconfigArgs, out: &mut dyn Write) -> Result<(), KubeconfigError> {
    let cfg = |m: String| KubeconfigError::Config(m);
    if !args.gateway.starts_with("https://") {
        return Err(cfg(format!(
            "--gateway {:?} must be an https URL: tokens are never sent in clear",
            args.gateway
        )));
    }
    let ca =
        std::fs::read(&args.ca).map_err(|e| cfg(format!("--ca {}: {e}", args.ca.display())))?;
    if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
        return Err(cfg(format!(
            "--ca {}: no PEM certificate in it",
            args.ca.display()
        )));
    }
    let t = &args.token;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut exec_args: Vec<String> = vec!["token".into()];
    if t.grant == Grant::TokenFile {
        let f = t
            .token_source_file
            .as_ref()
            .ok_or_else(|| cfg("--grant token-file needs --token-source-file".into()))?;
        exec_args.extend([
            "--grant=token-file".into(),
            format!("--token-source-file={}", abs(f).display()),
        ]);
    } else {
        let issuer = t
            .issuer
            .as_ref()
            .ok_or_else(|| cfg("--issuer is required".into()))?;
        let client = t
            .client_id
            .as_ref()
            .ok_or_else(|| cfg("--client-id is required".into()))?;
        if !issuer.starts_with("https://") {
            return Err(cfg(format!("--issuer {issuer:?} must be an https URL")));
        }
        exec_args.extend([
            format!("--issuer={issuer}"),
            format!("--client-id={client}"),
        ]);
        if t.grant == Grant::ClientCredentials {
            let s = t.client_secret_file.as_ref().ok_or_else(|| {
                cfg("--grant client-credentials needs --client-secret-file".into())
            })?;
            exec_args.push("--grant=client-credentials".into());
            exec_args.push(format!("--client-secret-file={}", abs(s).display()));
        } else if let Some(s) = &t.client_secret_file {
            exec_args.push(format!("--client-secret-file={}", abs(s).display()));
        }
        if let Some(c) = &t.issuer_ca {
            exec_args.push(format!("--issuer-ca={}", abs(c).display()));
        }
        exec_args.push(format!("--scopes={}", t.scopes));
    }
    if let Some(d) = &t.cache_dir {
        exec_args.push(format!("--cache-dir={}", abs(d).display()));
    }
    let command = std::env::current_exe()
        .map_err(|e| cfg(format!("cannot locate the gatehouse binary: {e}")))?;

    let path = match &args.kubeconfig {
        Some(p) => p.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".kube").join("config"))
            .ok_or_else(|| cfg("HOME is not set: pass --kubeconfig".into()))?,
    };
    let file_err = |reason: String| KubeconfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let mut doc: Value = match std::fs::read(&path) {
        Ok(b) if !b.is_empty() => {
            serde_yaml::from_slice(&b).map_err(|e| file_err(format!("not a kubeconfig: {e}")))?
        }
        Ok(_) => Value::Mapping(Mapping::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Mapping(Mapping::new()),
        Err(e) => return Err(file_err(e.to_string())),
    };
    let root = doc
        .as_mapping_mut()
        .ok_or_else(|| file_err("not a kubeconfig: not a mapping".into()))?;
    root.insert("apiVersion".into(), "v1".into());
    root.insert("kind".into(), "Config".into());
    let name = args.context.as_str();
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), args.gateway.clone().into());
    cluster.insert(
        "certificate-authority-data".into(),
        base64::engine::general_purpose::STANDARD.encode(&ca).into(),
    );
    let mut exec = Mapping::new();
    exec.insert(
        "apiVersion".into(),
        "client.authentication.k8s.io/v1".into(),
    );
    exec.insert("command".into(), command.display().to_string().into());
    exec.insert(
        "args".into(),
        Value::Sequence(exec_args.into_iter().map(Value::from).collect()),
    );
    exec.insert(
        "interactiveMode".into(),
        if t.grant == Grant::DeviceCode {
            "IfAvailable"
        } else {
            "Never"
        }
        .into(),
    );
    exec.insert("provideClusterInfo".into(), false.into());
    let mut user = Mapping::new();
    user.insert("exec".into(), Value::Mapping(exec));
    let mut context = Mapping::new();
    context.insert("cluster".into(), name.into());
    context.insert("user".into(), name.into());
    if let Some(ns) = &args.namespace {
        context.insert("namespace".into(), ns.clone().into());
    }
    upsert(root, "clusters", "cluster", name, cluster).map_err(file_err)?;
    upsert(root, "users", "user", name, user).map_err(file_err)?;
    upsert(root, "contexts", "context", name, context).map_err(file_err)?;
    if !args.no_switch || !root.contains_key("current-context") {
        root.insert("current-context".into(), name.into());
    }
    let body = serde_yaml::to_string(&doc).map_err(|e| file_err(e.to_string()))?;
    write_private(&path, body.as_bytes()).map_err(|e| file_err(e.to_string()))?;
    writeln!(
        out,
        "wrote context {name:?} (server {}, {} sign-in) to {}",
        args.gateway,
        match t.grant {
            Grant::DeviceCode => "device-code",
            Grant::ClientCredentials => "client-credentials",
            Grant::TokenFile => "token-file",
        },
        path.display()
    )
    .map_err(|e| file_err(e.to_string()))
}

/// Replaces the entry called `name` in the list `list` (or appends it).
fn upsert(
    root: &mut Mapping,
    list: &str,
    key: &str,
    name: &str,
    body: Mapping,
) -> Result<(), String> {
    let entries = root
        .entry(list.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if entries.is_null() {
        *entries = Value::Sequence(Vec::new());
    }
    let seq = entries
        .as_sequence_mut()
        .ok_or_else(|| format!("not a kubeconfig: {list} is not a list"))?;
    let mut entry = Mapping::new();
    entry.insert("name".into(), name.into());
    entry.insert(key.into(), Value::Mapping(body));
    match seq
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(e) => *e = Value::Mapping(entry),
        None => seq.push(Value::Mapping(entry)),
    }
    Ok(())
}

/// Kubeconfigs hold credentials: 0600, replaced atomically.
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
