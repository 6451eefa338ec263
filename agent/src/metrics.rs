//! Prometheus metrics, named `gatehouse_agent_<name>_<unit>[_total]`.
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_agent_common::Counter as KernelCounter;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::ebpf::Kernel;

pub struct Metrics {
    registry: Registry,
    /// Mirrors of the kernel's per-CPU counters (they survive restarts through the pin).
    kernel: [(KernelCounter, Counter, AtomicU64); 5],
    pub events: Counter,
    pub alerts: Counter,
    pub alerted_connects: Counter,
    pub alert_write_errors: Counter,
    pub orphan_windows: Counter,
    pub endpoint_entries: Gauge,
    pub pending_windows: Gauge,
    pub attached_cgroups: Gauge,
    pub exempt_cgroups: Gauge,
    pub mode_cgroups: Gauge,
    pub kube_pods: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("gatehouse_agent"),
            kernel: [
                (
                    KernelCounter::Connects,
                    Counter::default(),
                    AtomicU64::new(0),
                ),
                (
                    KernelCounter::Matches,
                    Counter::default(),
                    AtomicU64::new(0),
                ),
                (KernelCounter::Blocks, Counter::default(), AtomicU64::new(0)),
                (
                    KernelCounter::LostEvents,
                    Counter::default(),
                    AtomicU64::new(0),
                ),
                (KernelCounter::Exempt, Counter::default(), AtomicU64::new(0)),
            ],
            events: Counter::default(),
            alerts: Counter::default(),
            alerted_connects: Counter::default(),
            alert_write_errors: Counter::default(),
            orphan_windows: Counter::default(),
            endpoint_entries: Gauge::default(),
            pending_windows: Gauge::default(),
            attached_cgroups: Gauge::default(),
            exempt_cgroups: Gauge::default(),
            mode_cgroups: Gauge::default(),
            kube_pods: Gauge::default(),
        };
        let r = &mut m.registry;
        let names = [
            ("connects", "connect() calls seen by the cgroup programs"),
            (
                "matches",
                "connects to an API-server endpoint from non-exempt cgroups",
            ),
            (
                "blocks",
                "matching connects refused with EPERM (enforce mode)",
            ),
            (
                "lost_events",
                "kernel match events lost because the ring buffer was full",
            ),
            (
                "exempt_matches",
                "connects to an API-server endpoint from the gateway's cgroups",
            ),
        ];
        for ((_, c, _), (name, help)) in m.kernel.iter().zip(names) {
            r.register(name, help, c.clone());
        }
        r.register(
            "ring_events",
            "match events read from the ring buffer",
            m.events.clone(),
        );
        r.register(
            "alerts",
            "bypass alerts written to the journal",
            m.alerts.clone(),
        );
        r.register(
            "alerted_connects",
            "matching connects covered by written alerts (the sum of their counts)",
            m.alerted_connects.clone(),
        );
        r.register(
            "alert_write_errors",
            "alerts the journal refused",
            m.alert_write_errors.clone(),
        );
        r.register(
            "orphan_windows",
            "dedup windows reported by the map sweep because their opening event was lost",
            m.orphan_windows.clone(),
        );
        r.register(
            "endpoint_entries",
            "entries in the API-server endpoint maps",
            m.endpoint_entries.clone(),
        );
        r.register(
            "pending_windows",
            "dedup windows waiting to close",
            m.pending_windows.clone(),
        );
        r.register(
            "attached_cgroups",
            "cgroups the programs are attached to",
            m.attached_cgroups.clone(),
        );
        r.register(
            "exempt_cgroups",
            "cgroups in the gateway exemption map",
            m.exempt_cgroups.clone(),
        );
        r.register(
            "mode_cgroups",
            "cgroups with their own audit/enforce mode",
            m.mode_cgroups.clone(),
        );
        r.register(
            "kube_pods",
            "pods on this node known from the pod watch",
            m.kube_pods.clone(),
        );
        m
    }

    /// Lets another component (the shipper) add its metrics to `/metrics`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Copies the kernel counters into the Prometheus counters (by delta, so they stay counters).
    pub fn update_from_kernel(&self, kernel: &Kernel) {
        for (which, c, last) in &self.kernel {
            let now = kernel.counter(*which);
            let before = last.swap(now, Ordering::Relaxed);
            if now > before {
                c.inc_by(now - before);
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
