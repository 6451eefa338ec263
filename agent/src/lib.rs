//! The node agent: loads the gatehouse eBPF programs, attributes bypass connections to
//! node, pod, container and process, and writes alerts to its journal for the shipper.
mod alerts;
pub mod cgroups;
mod config;
mod ebpf;
pub mod endpoints;
mod error;
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
    let entries = endpoints::resolve(&specs).await;
    if args.dry_run {
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
    let node = args.node_name.clone().unwrap_or_else(hostname);

    let mut kernel = Kernel::load(&args.pin_dir)?;
    kernel.set_config(Config {
        dedup_window_ns: args.dedup_window.as_nanos() as u64,
        default_mode: match args.default_mode {
            ModeArg::Audit => Mode::Audit as u8,
            ModeArg::Enforce => Mode::Enforce as u8,
        },
        _pad: [0; 7],
    })?;
    let (added, removed) = kernel.sync_endpoints(&entries)?;
    sync_cgroups(&mut kernel, &args)?;
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
                "DEGRADED: sock_ops not attached; alerts will lack the final destination"
            );
        }
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
        endpoints = entries.len(),
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
        node,
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
    let mut current = entries;
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
            _ = refresh.tick() => {
                match all_specs(&args) {
                    Ok(specs) => {
                        let want = endpoints::resolve(&specs).await;
                        let want = keep_failed_names(&specs, &current, want);
                        if want != current {
                            let (added, removed) = kernel.sync_endpoints(&want)?;
                            tracing::info!(added, removed, total = want.len(), "endpoint set updated");
                            current = want;
                            metrics.endpoint_entries.set(kernel.endpoint_count() as i64);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "endpoints file unreadable; keeping the current set"),
                }
                if let Err(e) = sync_cgroups(&mut kernel, &args) {
                    tracing::warn!(error = %e, "cgroup maps not refreshed");
                }
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

fn sync_cgroups(kernel: &mut Kernel, args: &Args) -> Result<(), AgentError> {
    let ids = |paths: &[PathBuf], v: u8| -> Result<HashMap<u64, u8>, AgentError> {
        paths.iter().map(|p| Ok((cgroups::id_of(p)?, v))).collect()
    };
    let exempt = ids(&args.exempt_cgroups, 1)?;
    let mut modes = ids(&args.audit_cgroups, Mode::Audit as u8)?;
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
