//! The node agent: loads the gatehouse eBPF programs, attributes bypass connections to
//! node, pod, container and process, and writes alerts to its journal for the shipper.
mod alerts;
pub mod cgroups;
mod config;
mod ebpf;
pub mod endpoints;
mod error;
pub mod kube;
mod metrics;
mod ops;
mod probe;
pub mod telemetry;

use std::{
    collections::{BTreeSet, HashMap},
    io::Write as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

pub use config::{Args, ModeArg};
pub use error::AgentError;
use gatehouse_agent_common::{Config, Mode, maps};
use gatehouse_journal::{Journal, JournalOptions};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    alerts::Alerts,
    cgroups::CgroupIndex,
    ebpf::Kernel,
    endpoints::{EndpointSpec, Entry},
    kube::{KubeEvent, apiserver::ApiServerSources, pods::Pods},
    metrics::Metrics,
};

/// How often the ring buffer is polled (the kernel does not wake the agent per event).
const POLL: Duration = Duration::from_millis(10);
/// How often the DEDUP map is swept for windows whose opening event was lost.
const SWEEP: Duration = Duration::from_secs(1);

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<(), AgentError> {
    args.validate()?;
    let specs = all_specs(&args)?;
    let static_entries = endpoints::resolve(&specs).await;
    let node = args.node_name.clone().unwrap_or_else(hostname);
    let kube_client = match args.kube() {
        Some(cfg) => Some(kube::Client::new(&cfg).map_err(|e| AgentError::Config(e.to_string()))?),
        None => {
            tracing::info!(
                "no Kubernetes API configured: endpoints and modes come from flags only"
            );
            None
        }
    };
    if args.dry_run {
        let mut entries = static_entries.clone();
        if let Some(client) = &kube_client {
            entries.extend(kube_snapshot(client, &node, &args).await?);
        }
        let mut out = std::io::stdout().lock();
        for e in &entries {
            let _ = writeln!(out, "{e}");
        }
        return Ok(());
    }

    if !ebpf::object_present() {
        return Err(AgentError::NoObject);
    }
    let (journal, _) = Journal::open(&args.journal_dir, JournalOptions::default())?;
    let shipper = shipper(&args, &journal)?;
    let probe = probe::probe(&args.pin_dir)?;

    let mut kernel = Kernel::load(&args.pin_dir)?;
    kernel.set_config(Config {
        dedup_window_ns: args.dedup_window.as_nanos() as u64,
        default_mode: match args.default_mode {
            ModeArg::Audit => Mode::Audit as u8,
            ModeArg::Enforce => Mode::Enforce as u8,
        },
        _pad: [0; 7],
    })?;
    let (added, removed) = kernel.sync_endpoints(&static_entries)?;
    let mut cgroup_index = CgroupIndex::new(probe.cgroup_root.clone());
    let self_exempt = self_exemption(&probe.cgroup_root);
    sync_cgroups(&mut kernel, &args, None, &mut cgroup_index, self_exempt)?;
    let attach_to = if args.attach_cgroups.is_empty() {
        vec![probe.cgroup_root.clone()]
    } else {
        args.attach_cgroups.clone()
    };
    for cg in &attach_to {
        if let Some(degraded) = kernel.attach(cg)? {
            if !args.allow_degraded {
                return Err(degraded);
            }
            tracing::warn!(
                error = %degraded,
                "DEGRADED: egress program not attached; alerts may lack the final destination"
            );
        }
    }

    if !args.no_reasons
        && let Err(e) = kernel.attach_reasons()
    {
        tracing::warn!(error = %e, "optional reasons (token opens, kubectl/curl execs) unavailable");
    }
    let mut metrics = Metrics::new();
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let shipping = shipper.map(|s| {
        s.metrics().register(metrics.registry_mut());
        let stop = shutdown.clone();
        tokio::spawn(s.run(async move { stop.notified().await }))
    });
    let metrics = Arc::new(metrics);
    metrics.attached_cgroups.set(kernel.attached().len() as i64);
    metrics.endpoint_entries.set(kernel.endpoint_count() as i64);
    let ops_addr = ops::serve(args.ops_addr, metrics.clone()).await?;
    tracing::info!(
        node,
        endpoints = static_entries.len(),
        kube = kube_client.is_some(),
        added,
        removed,
        attached = ?kernel.attached(),
        pin_dir = %args.pin_dir.display(),
        %ops_addr,
        "agent running"
    );
    // Tests and supervisors wait for this line.
    println!("gatehouse-agent ready ops={ops_addr}");
    let _ = std::io::stdout().flush();

    let mut alerts = Alerts::new(
        node.clone(),
        args.dedup_window,
        journal.clone(),
        metrics.clone(),
        CgroupIndex::new(probe.cgroup_root.clone()),
    );
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| AgentError::io("signal", "SIGTERM", e))?;
    let mut poll = tokio::time::interval(POLL);
    let mut refresh = tokio::time::interval(args.refresh_interval);
    refresh.tick().await;
    let mut last_sweep = Instant::now();
    let mut current = static_entries.clone();
    let mut static_entries = static_entries;
    let mut sources = ApiServerSources::default();
    let mut kube_rx = kube_client
        .as_ref()
        .map(|c| kube::spawn(c, kube::Watches::new(&node, &args.control_plane_selector)));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if let Some(logger) = kernel.logger.as_mut() {
                    logger.flush();
                }
                alerts.drain(&mut kernel)?;
                let sweep = last_sweep.elapsed() >= SWEEP;
                if sweep {
                    last_sweep = Instant::now();
                    metrics.update_from_kernel(&kernel);
                }
                alerts.flush_due(&mut kernel, sweep)?;
                metrics.pending_windows.set(alerts.pending() as i64);
            }
            Some(ev) = next_kube(&mut kube_rx) => {
                let pods_changed = matches!(ev, KubeEvent::Pods(_));
                match ev {
                    KubeEvent::Services(c) => sources.apply_services(*c),
                    KubeEvent::Slices(c) => sources.apply_slices(*c),
                    KubeEvent::Nodes(c) => sources.apply_nodes(*c),
                    KubeEvent::Pods(c) => alerts.pods.apply(*c),
                }
                if pods_changed {
                    metrics.kube_pods.set(alerts.pods.live_count() as i64);
                    let pods = kube_client.is_some().then_some(&alerts.pods);
                    if let Err(e) = sync_cgroups(&mut kernel, &args, pods, &mut cgroup_index, self_exempt) {
                        tracing::warn!(error = %e, "cgroup maps not refreshed");
                    }
                } else {
                    let mut want = static_entries.clone();
                    want.extend(sources.entries(args.control_plane_port));
                    apply_endpoints(&mut kernel, &metrics, &mut current, want)?;
                }
            }
            _ = refresh.tick() => {
                match all_specs(&args) {
                    Ok(specs) => {
                        let resolved = endpoints::resolve(&specs).await;
                        static_entries = keep_failed_names(&specs, &static_entries, resolved);
                        let mut want = static_entries.clone();
                        want.extend(sources.entries(args.control_plane_port));
                        apply_endpoints(&mut kernel, &metrics, &mut current, want)?;
                    }
                    Err(e) => tracing::warn!(error = %e, "endpoints file unreadable; keeping the current set"),
                }
                // Pod cgroups appear after the pod does: rewalk on every refresh too.
                let pods = kube_client.is_some().then_some(&alerts.pods);
                if let Err(e) = sync_cgroups(&mut kernel, &args, pods, &mut cgroup_index, self_exempt) {
                    tracing::warn!(error = %e, "cgroup maps not refreshed");
                }
                metrics.exempt_cgroups.set(kernel.exempt.keys().count() as i64);
                metrics.mode_cgroups.set(kernel.modes.keys().count() as i64);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("shutting down: writing open windows, detaching");
    alerts.drain(&mut kernel)?;
    alerts.flush_all(&mut kernel)?;
    journal.sync()?;
    drop(kernel);
    if let Some(task) = shipping {
        // What is not shipped now stays in the journal for the next start.
        shutdown.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// The collector shipper, if `--collector-url` is set; validated before any BPF is loaded.
fn shipper(
    args: &Args,
    journal: &Arc<Journal>,
) -> Result<Option<gatehouse_shipper::Shipper>, AgentError> {
    let Some(url) = &args.collector_url else {
        return Ok(None);
    };
    let mut cfg = gatehouse_shipper::ShipperConfig::new(url.clone());
    if let Some(ca) = &args.collector_ca {
        let ca_pem = std::fs::read(ca).map_err(|e| AgentError::io("reading", ca, e))?;
        cfg.tls = Some(gatehouse_shipper::TlsConfig {
            ca_pem,
            identity: None,
            domain_name: None,
        });
    }
    if let Some(f) = &args.collector_token_file {
        let token = std::fs::read_to_string(f).map_err(|e| AgentError::io("reading", f, e))?;
        cfg.token = Some(token.trim().to_string());
    }
    match gatehouse_shipper::Shipper::new(journal.clone(), cfg) {
        Ok(s) => Ok(Some(s)),
        Err(gatehouse_shipper::ShipperError::Config(m)) => Err(AgentError::Config(m)),
        Err(e) => Err(e.into()),
    }
}

fn all_specs(args: &Args) -> Result<Vec<EndpointSpec>, AgentError> {
    let mut specs = args.endpoints.clone();
    if let Some(path) = &args.endpoints_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::io("reading endpoints file", path, e))?;
        let more = endpoints::parse_file(&text)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        specs.extend(more);
    }
    Ok(specs)
}

/// A name that failed to resolve this time keeps the addresses it had: a DNS outage must not
/// open a hole in detection.
fn keep_failed_names(
    specs: &[EndpointSpec],
    current: &BTreeSet<Entry>,
    mut want: BTreeSet<Entry>,
) -> BTreeSet<Entry> {
    let dns = gatehouse_agent_common::MatchedBy::Dns as u8;
    for spec in specs {
        if spec.kind as u8 == dns
            && !want
                .iter()
                .any(|e| e.matched_by == dns && e.port == spec.port)
        {
            want.extend(
                current
                    .iter()
                    .filter(|e| e.matched_by == dns && e.port == spec.port),
            );
        }
    }
    want
}

/// Makes the endpoint maps hold `want` if it differs from what they hold.
fn apply_endpoints(
    kernel: &mut Kernel,
    metrics: &Metrics,
    current: &mut BTreeSet<Entry>,
    want: BTreeSet<Entry>,
) -> Result<(), AgentError> {
    if want != *current {
        let (added, removed) = kernel.sync_endpoints(&want)?;
        tracing::info!(added, removed, total = want.len(), "endpoint set updated");
        *current = want;
        metrics.endpoint_entries.set(kernel.endpoint_count() as i64);
    }
    Ok(())
}

async fn next_kube(rx: &mut Option<tokio::sync::mpsc::Receiver<KubeEvent>>) -> Option<KubeEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One list of each endpoint source, for `--dry-run`.
async fn kube_snapshot(
    client: &kube::Client,
    node: &str,
    args: &Args,
) -> Result<BTreeSet<Entry>, AgentError> {
    let w = kube::Watches::new(node, &args.control_plane_selector);
    let sources = tokio::time::timeout(Duration::from_secs(30), kube::snapshot(client, &w))
        .await
        .map_err(|_| kube::KubeError::Http("no answer from the API server within 30s".into()))??;
    Ok(sources.entries(args.control_plane_port))
}

/// The agent's own pod cgroup, when it runs in a pod: its watches talk to the API server
/// directly and must not flag (or, enforcing, block) themselves. Never a non-pod cgroup, which
/// could be the root and exempt the whole node.
fn self_exemption(root: &std::path::Path) -> Option<u64> {
    let own = cgroups::own_path()?;
    cgroups::pod_ref(&own)?;
    cgroups::id_of(&root.join(own.trim_start_matches('/'))).ok()
}

fn sync_cgroups(
    kernel: &mut Kernel,
    args: &Args,
    pods: Option<&Pods>,
    index: &mut CgroupIndex,
    self_exempt: Option<u64>,
) -> Result<(), AgentError> {
    let ids = |paths: &[PathBuf], v: u8| -> Result<HashMap<u64, u8>, AgentError> {
        paths.iter().map(|p| Ok((cgroups::id_of(p)?, v))).collect()
    };
    let mut exempt = ids(&args.exempt_cgroups, 1)?;
    let mut modes = HashMap::new();
    if let Some(pods) = pods {
        let ns_modes: HashMap<&str, u8> = args
            .namespace_modes
            .iter()
            .map(|(ns, m)| {
                let m = match m {
                    ModeArg::Audit => Mode::Audit as u8,
                    ModeArg::Enforce => Mode::Enforce as u8,
                };
                (ns.as_str(), m)
            })
            .collect();
        let cgroup_of = index.pod_cgroups();
        for pod in pods.live() {
            let Some(id) = cgroup_of.get(&pod.uid) else {
                continue;
            };
            if args.gateway_selector.matches(&pod.labels) {
                exempt.insert(*id, 1);
            }
            if let Some(m) = ns_modes.get(pod.namespace.as_str()) {
                modes.insert(*id, *m);
            }
        }
    }
    if let Some(id) = self_exempt {
        exempt.insert(id, 1);
    }
    // Explicit cgroup flags are the most specific: they win over namespace modes.
    modes.extend(ids(&args.audit_cgroups, Mode::Audit as u8)?);
    modes.extend(ids(&args.enforce_cgroups, Mode::Enforce as u8)?);
    Kernel::sync_cgroup_map(&mut kernel.exempt, maps::EXEMPT, &exempt)?;
    Kernel::sync_cgroup_map(&mut kernel.modes, maps::MODES, &modes)?;
    Ok(())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-node".into())
}
