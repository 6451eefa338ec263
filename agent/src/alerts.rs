//! From kernel match events to journal records: one alert per dedup window with its final
//! count, attributed to process, cgroup and pod, written as a `gatehouse.v1.Event`.
//!
//! The kernel sends an event only when a key opens a window. The agent keeps it pending until
//! the window closes, then reads the window's count from `DEDUP`, writes the alert, and deletes
//! the entry so the map only ever holds unreported windows. A window whose opening event was
//! lost (ring buffer full) is still reported: by the next window's event, which carries the
//! previous count, or by the sweep over `DEDUP`.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gatehouse_agent_common::{
    AF_INET, DedupKey, FinalDest, MatchEvent, MatchedBy, REASON_EXEC_CURL, REASON_EXEC_KUBECTL,
    REASON_TOKEN_OPEN, VERDICT_BLOCKED,
};
use gatehouse_journal::Journal;
use gatehouse_proto::v1::{BypassAlert, Endpoint, Event, Producer, Verdict, event::Payload};
use prost::Message as _;

use crate::{
    AgentError,
    cgroups::{self, CgroupIndex},
    ebpf::Kernel,
    kube::pods::Pods,
    metrics::Metrics,
};

/// Extra time after a window closes before its count is read, for connects racing the edge.
const GRACE: Duration = Duration::from_millis(50);
/// How many finalized windows are remembered to drop a duplicate report.
const DONE_CAP: usize = 65_536;

type WindowId = (DedupKey, u64);

/// What was learnt about the process when its window opened (it may be gone by the end).
#[derive(Debug, Clone, Default)]
struct Attribution {
    pid: u32,
    uid: u32,
    comm: String,
    matched_by: String,
    socket_cookie: u64,
    netns_inode: u64,
    cgroup_path: String,
    pod_uid: String,
    container_id: String,
    exe: String,
    cmdline: String,
}

pub struct Alerts {
    node: String,
    window_ns: u64,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    cgroups: CgroupIndex,
    /// The pods on this node (from the pod watch), looked up when a window is written so a
    /// pod that appeared after its first connect still resolves.
    pub pods: Pods,
    pending: HashMap<WindowId, Attribution>,
    done: HashSet<WindowId>,
    done_order: VecDeque<WindowId>,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, to stamp kernel times as wall-clock.
    mono_to_wall_ns: i128,
    /// The boot time in whole seconds (`btime`): the same for every agent run on this boot, so
    /// a window's event id (which embeds a time) is too.
    boot_unix_s: u64,
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The event id of one dedup window's alert: a UUIDv7 whose time is the window's start and whose
/// other bits are a digest of the node, the key and the window's kernel start time. A window
/// reported again after a crash gets the same id, which downstream stores fold into one.
fn window_event_id(node: &str, key: &DedupKey, start_mono_ns: u64, boot_unix_s: u64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(key.cgroup_id.to_le_bytes());
    h.update(key.tgid.to_le_bytes());
    h.update(key.port_be.to_le_bytes());
    h.update(key.family.to_le_bytes());
    h.update(key.addr);
    h.update([key.verdict]);
    h.update(start_mono_ns.to_le_bytes());
    let digest = h.finalize();
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&digest[..10]);
    let millis = boot_unix_s
        .saturating_mul(1_000)
        .saturating_add(start_mono_ns / 1_000_000);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand)
        .into_uuid()
        .to_string()
}

/// `btime` from /proc/stat: when this boot began, in seconds since the epoch (0 if unknown;
/// ids then still repeat for a window, only their time is off).
fn boot_unix_s() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Alerts {
    pub fn new(
        node: String,
        window: Duration,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
        cgroups: CgroupIndex,
    ) -> Self {
        Self {
            node,
            window_ns: window.as_nanos() as u64,
            journal,
            metrics,
            cgroups,
            pods: Pods::default(),
            pending: HashMap::new(),
            done: HashSet::new(),
            done_order: VecDeque::new(),
            mono_to_wall_ns: wall_ns() - i128::from(monotonic_ns()),
            boot_unix_s: boot_unix_s(),
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drains the ring buffer.
    pub fn drain(&mut self, kernel: &mut Kernel) -> Result<usize, AgentError> {
        let mut events = Vec::new();
        while let Some(item) = kernel.events.next() {
            if item.len() >= size_of::<MatchEvent>() {
                let ev = read_event(&item);
                events.push(ev);
            }
        }
        let n = events.len();
        for ev in events {
            self.on_event(kernel, &ev)?;
        }
        Ok(n)
    }

    fn on_event(&mut self, kernel: &mut Kernel, ev: &MatchEvent) -> Result<(), AgentError> {
        self.metrics.events.inc();
        let attribution = self.attribute(ev);
        if ev.prev_window_start_ns != 0 {
            let prev = (ev.key, ev.prev_window_start_ns);
            // The previous window ended before this connect: its count is final.
            let who = self
                .pending
                .remove(&prev)
                .unwrap_or_else(|| attribution.clone());
            self.finish(kernel, prev, who, ev.prev_count, None)?;
        }
        self.pending
            .insert((ev.key, ev.window_start_ns), attribution);
        Ok(())
    }

    /// Writes every pending window that has closed, then sweeps `DEDUP` for closed windows the
    /// agent never heard open.
    pub fn flush_due(&mut self, kernel: &mut Kernel, sweep: bool) -> Result<(), AgentError> {
        let now = monotonic_ns();
        let due: Vec<WindowId> = self
            .pending
            .keys()
            .filter(|(_, start)| {
                now.saturating_sub(*start) >= self.window_ns + GRACE.as_nanos() as u64
            })
            .copied()
            .collect();
        for id in due {
            if let Some(who) = self.pending.remove(&id) {
                self.close(kernel, id, who)?;
            }
        }
        if sweep {
            let orphans: Vec<WindowId> = kernel
                .dedup
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, v)| {
                    now.saturating_sub(v.window_start_ns)
                        >= self.window_ns + GRACE.as_nanos() as u64
                        && !self.pending.contains_key(&(*k, v.window_start_ns))
                })
                .map(|(k, v)| (k, v.window_start_ns))
                .collect();
            for id in orphans {
                self.metrics.orphan_windows.inc();
                let who = self.attribute_key(&id.0);
                self.close(kernel, id, who)?;
            }
        }
        Ok(())
    }

    /// Writes every pending window now, with the count so far (shutdown).
    pub fn flush_all(&mut self, kernel: &mut Kernel) -> Result<(), AgentError> {
        let ids: Vec<WindowId> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(who) = self.pending.remove(&id) {
                self.close(kernel, id, who)?;
            }
        }
        Ok(())
    }

    /// Reads the window's count, writes the alert, then deletes the window from `DEDUP`, so the
    /// next connect opens a new window (reported on its own) rather than adding to one already
    /// written. Deleting only after the journal has the alert makes a crash in between report
    /// the window again (the next agent's sweep), under the same event id: at-least-once, never
    /// lost.
    fn close(
        &mut self,
        kernel: &mut Kernel,
        id: WindowId,
        who: Attribution,
    ) -> Result<(), AgentError> {
        let (key, start) = id;
        let mut written = false;
        let count = match kernel.dedup.get(&key, 0) {
            Ok(v) if v.window_start_ns == start => {
                written = true;
                v.count
            }
            // Rolled over: the newer window's event carries this one's count; it was handled
            // in drain(), or this is a lost-event edge: report what is known.
            Ok(_) => {
                if self.done.contains(&id) {
                    return Ok(());
                }
                1
            }
            // Evicted from the LRU under pressure: the first connect is all that is known.
            Err(_) => 1,
        };
        let cookie = who.socket_cookie;
        let final_dest = kernel.final_dest.get(&cookie, 0).ok();
        self.finish(kernel, id, who, count, final_dest)?;
        let _ = kernel.final_dest.remove(&cookie);
        // Only the window just written: a connect racing this may have opened a newer one.
        if written
            && kernel
                .dedup
                .get(&key, 0)
                .is_ok_and(|v| v.window_start_ns == start)
        {
            let _ = kernel.dedup.remove(&key);
        }
        Ok(())
    }

    fn finish(
        &mut self,
        kernel: &mut Kernel,
        id: WindowId,
        who: Attribution,
        count: u64,
        final_dest: Option<FinalDest>,
    ) -> Result<(), AgentError> {
        if self.done.contains(&id) {
            return Ok(());
        }
        let (key, start) = id;
        let start_wall = (i128::from(start) + self.mono_to_wall_ns) as i64;
        let end_wall = start_wall.saturating_add(self.window_ns as i64);
        let original = endpoint(key.family, &key.addr, u16::from_be(key.port_be));
        let final_destination = match final_dest {
            Some(f) if f.family != 0 => endpoint(f.family, &f.addr, u16::from_be(f.port_be)),
            // No TCP dial seen (blocked, UDP, refused before SYN): the original is all there is.
            _ => original.clone(),
        };
        let host = who.pod_uid.is_empty();
        let pod = self.pods.get(&who.pod_uid);
        let alert = BypassAlert {
            node: self.node.clone(),
            pod_namespace: pod.map(|p| p.namespace.clone()).unwrap_or_default(),
            pod_name: pod.map(|p| p.name.clone()).unwrap_or_default(),
            // The ServiceAccount as the API server names it: the key the gateway records its
            // callers by, so the collector can tell whether this identity used the gateway.
            service_account: pod.map(|p| p.identity()).unwrap_or_default(),
            workload: pod.map(|p| p.workload.clone()).unwrap_or_default(),
            host_network: pod.is_some_and(|p| p.host_network),
            container: pod
                .and_then(|p| p.containers.get(&who.container_id).cloned())
                .unwrap_or_default(),
            pid: who.pid,
            tgid: key.tgid,
            uid: who.uid,
            comm: who.comm,
            cgroup_id: key.cgroup_id,
            netns_inode: who.netns_inode,
            original_destination: Some(original),
            final_destination: Some(final_destination),
            verdict: if key.verdict == VERDICT_BLOCKED {
                Verdict::Blocked as i32
            } else {
                Verdict::Allowed as i32
            },
            count,
            matched_by: who.matched_by,
            host_process: host,
            exe: who.exe,
            cmdline: who.cmdline,
            cgroup_path: who.cgroup_path,
            pod_uid: who.pod_uid,
            container_id: who.container_id,
            reasons: reasons(kernel, key.tgid),
            window_start_unix_nano: start_wall,
            window_end_unix_nano: end_wall,
        };
        let event = Event {
            event_id: window_event_id(&self.node, &key, start, self.boot_unix_s),
            time_unix_nano: wall_ns() as i64,
            producer: Some(Producer {
                component: "agent".into(),
                instance: self.node.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
            }),
            payload: Some(Payload::Alert(alert)),
            ..Default::default()
        };
        match self.journal.append(&event.encode_to_vec()) {
            Ok(_) => {
                // Done only once written: a failed write is retried by the next sweep.
                self.done.insert(id);
                self.done_order.push_back(id);
                if self.done_order.len() > DONE_CAP
                    && let Some(old) = self.done_order.pop_front()
                {
                    self.done.remove(&old);
                }
                self.metrics.alerts.inc();
                self.metrics.alerted_connects.inc_by(count);
                tracing::info!(
                    cgroup_id = key.cgroup_id,
                    tgid = key.tgid,
                    count,
                    blocked = key.verdict == VERDICT_BLOCKED,
                    "bypass alert written"
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.alert_write_errors.inc();
                Err(e.into())
            }
        }
    }

    fn attribute(&mut self, ev: &MatchEvent) -> Attribution {
        let mut a = self.attribute_key(&ev.key);
        a.pid = ev.pid;
        a.uid = ev.uid;
        a.comm = comm(&ev.comm);
        a.socket_cookie = ev.socket_cookie;
        a.matched_by = MatchedBy::from_u8(ev.matched_by)
            .map_or("", MatchedBy::as_str)
            .to_string();
        a
    }

    fn attribute_key(&mut self, key: &DedupKey) -> Attribution {
        let cgroup_path = self.cgroups.path_of(key.cgroup_id).unwrap_or_default();
        let pod = cgroups::pod_ref(&cgroup_path).unwrap_or_default();
        let (exe, cmdline) = cgroups::process_details(key.tgid);
        Attribution {
            pid: key.tgid,
            netns_inode: cgroups::netns_inode(key.tgid),
            cgroup_path,
            pod_uid: pod.pod_uid,
            container_id: pod.container_id,
            exe,
            cmdline,
            ..Default::default()
        }
    }
}

/// What the optional tracepoints saw this process do (kept: it may connect again).
fn reasons(kernel: &Kernel, tgid: u32) -> Vec<String> {
    let Ok(r) = kernel.reasons.get(&tgid, 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if r.flags & REASON_TOKEN_OPEN != 0 {
        let end = r
            .token_path
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(r.token_path.len());
        out.push(format!(
            "opened token path {}",
            String::from_utf8_lossy(&r.token_path[..end])
        ));
    }
    if r.flags & REASON_EXEC_KUBECTL != 0 {
        out.push("exec kubectl".into());
    }
    if r.flags & REASON_EXEC_CURL != 0 {
        out.push("exec curl".into());
    }
    out
}

fn read_event(bytes: &[u8]) -> MatchEvent {
    let mut ev = std::mem::MaybeUninit::<MatchEvent>::zeroed();
    let n = size_of::<MatchEvent>().min(bytes.len());
    // MatchEvent is repr(C) plain data (aya::Pod), so any bytes are a valid value; this copy is
    // the one place the agent reinterprets kernel bytes.
    #[allow(unsafe_code)]
    // SAFETY: n bytes fit in both; the zeroed remainder is valid; every bit pattern is valid.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ev.as_mut_ptr().cast::<u8>(), n);
        ev.assume_init()
    }
}

fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn endpoint(family: u16, addr: &[u8; 16], port: u16) -> Endpoint {
    let ip = if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    };
    Endpoint {
        ip: ip.to_string(),
        port: u32::from(port),
    }
}

#[cfg(test)]
mod id_tests {
    use super::{DedupKey, window_event_id};

    fn key(tgid: u32) -> DedupKey {
        DedupKey {
            cgroup_id: 42,
            tgid,
            port_be: 443u16.to_be(),
            family: 2,
            addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            verdict: 0,
            _pad: [0; 7],
        }
    }

    #[test]
    fn a_window_keeps_its_event_id_across_agent_runs_and_others_differ() {
        let boot = 1_700_000_000;
        let id = window_event_id("node-a", &key(7), 5_000_000_000, boot);
        assert_eq!(id, window_event_id("node-a", &key(7), 5_000_000_000, boot));
        let u = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, _) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, boot + 5, "the id's time is the window's start");
        for other in [
            window_event_id("node-a", &key(8), 5_000_000_000, boot),
            window_event_id("node-a", &key(7), 5_000_000_001, boot),
            window_event_id("node-b", &key(7), 5_000_000_000, boot),
        ] {
            assert_ne!(id, other);
        }
    }
}
