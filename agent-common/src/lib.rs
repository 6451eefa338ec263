//! The `#[repr(C)]` ABI shared by the eBPF programs (`agent-ebpf`) and the node agent (`agent`).
//! `no_std` so the kernel side can use it; the `user` feature adds userspace-only impls.
#![no_std]

/// Names of the maps, as the kernel object and the pin directory know them.
pub mod maps {
    /// LPM trie of IPv4 API-server endpoints: key data `[port be 2][addr be 4]`.
    pub const ENDPOINTS4: &str = "GH_ENDPOINTS4";
    /// LPM trie of IPv6 API-server endpoints: key data `[port be 2][addr be 16]`.
    pub const ENDPOINTS6: &str = "GH_ENDPOINTS6";
    /// Array of [`crate::PORT_WORDS`] u64: bit `port % 64` of word `port / 64` (host-order port)
    /// is set while any endpoint uses that port.
    pub const PORTS: &str = "GH_PORTS";
    /// cgroup id → 1 for the gateway's cgroups (and their descendants).
    pub const EXEMPT: &str = "GH_EXEMPT";
    /// cgroup id → [`crate::Mode`] for a pod or namespace subtree.
    pub const MODES: &str = "GH_MODES";
    /// Index 0: the [`crate::Config`].
    pub const CONFIG: &str = "GH_CONFIG";
    /// LRU of [`crate::DedupKey`] → [`crate::DedupValue`].
    pub const DEDUP: &str = "GH_DEDUP";
    /// Socket cookie → [`crate::FinalDest`]: connect4/6 open the entry, cgroup_skb egress fills it.
    pub const FINAL_DEST: &str = "GH_FINAL_DEST";
    /// Per-CPU counters, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "GH_COUNTERS";
    /// Ring buffer of [`crate::MatchEvent`].
    pub const EVENTS: &str = "GH_EVENTS";
    /// LRU of tgid → [`crate::Reasons`], from the optional tracepoints.
    pub const REASONS: &str = "GH_REASONS";
    /// Every map the agent pins.
    pub const ALL: [&str; 11] = [
        ENDPOINTS4, ENDPOINTS6, PORTS, EXEMPT, MODES, CONFIG, DEDUP, FINAL_DEST, COUNTERS, EVENTS,
        REASONS,
    ];
}

/// Program names in the object.
pub mod programs {
    pub const CONNECT4: &str = "gh_connect4";
    pub const CONNECT6: &str = "gh_connect6";
    pub const EGRESS: &str = "gh_egress";
    pub const OPENAT: &str = "gh_openat";
    pub const EXEC: &str = "gh_exec";
}

/// How deep the kernel looks up ancestors of the current cgroup in `EXEMPT` and `MODES`.
pub const MAX_CGROUP_DEPTH: u32 = 12;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// LPM key data for IPv4: port (network order) then address (network order).
pub type Endpoint4 = [u8; 6];
/// LPM key data for IPv6: port (network order) then address.
pub type Endpoint6 = [u8; 18];
/// Bits of the port part, which is always matched exactly.
pub const PORT_BITS: u32 = 16;
/// Words of the `PORTS` bitmap: one bit per port.
pub const PORT_WORDS: u32 = 65536 / 64;

/// Why an endpoint is in the set, so an alert can say what it matched.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    ServiceVip = 1,
    EndpointIp = 2,
    NodeIp = 3,
    External = 4,
    Dns = 5,
}

impl MatchedBy {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ServiceVip,
            2 => Self::EndpointIp,
            3 => Self::NodeIp,
            4 => Self::External,
            5 => Self::Dns,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceVip => "service_vip",
            Self::EndpointIp => "endpoint_ip",
            Self::NodeIp => "node_ip",
            Self::External => "external",
            Self::Dns => "dns",
        }
    }
}

/// Value of an endpoint map entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointValue {
    /// A [`MatchedBy`] as u8.
    pub matched_by: u8,
    pub _pad: [u8; 3],
}

/// Per-cgroup (pod or namespace subtree) mode.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Allow and alert.
    Audit = 0,
    /// Refuse with EPERM and alert.
    Enforce = 1,
}

/// Verdict the kernel gave a matching connect.
pub const VERDICT_ALLOWED: u8 = 1;
pub const VERDICT_BLOCKED: u8 = 2;

/// Runtime configuration, in array map `CONFIG` at index 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Length of a dedup window in nanoseconds: connects of the same key within it fold into one.
    pub dedup_window_ns: u64,
    /// A [`Mode`] for cgroups with no entry in `MODES`.
    pub default_mode: u8,
    pub _pad: [u8; 7],
}

/// What connects fold into one alert by: who, to where, with what outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub cgroup_id: u64,
    pub tgid: u32,
    /// Network order, as in `bpf_sock_addr.user_port`.
    pub port_be: u16,
    pub family: u16,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
    pub verdict: u8,
    pub _pad: [u8; 7],
}

/// One dedup window of a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupValue {
    /// `bpf_ktime_get_ns` of the first connect of the window: identifies the window.
    pub window_start_ns: u64,
    /// Connects in the window (atomically incremented).
    pub count: u64,
}

/// Sent on the ring buffer when a key opens a new window.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchEvent {
    pub key: DedupKey,
    pub window_start_ns: u64,
    /// The window this one replaced (0 if none) and its final count.
    pub prev_window_start_ns: u64,
    pub prev_count: u64,
    pub socket_cookie: u64,
    pub netns_cookie: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: [u8; 16],
    pub matched_by: u8,
    pub _pad: [u8; 7],
}

/// Destination a flagged socket's packets really leave with, after socket-level rewrites and
/// netfilter DNAT (seen by cgroup_skb egress).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalDest {
    pub family: u16,
    /// Network order.
    pub port_be: u16,
    pub _pad: [u8; 4],
    pub addr: [u8; 16],
}

/// [`Reasons::flags`]: the process opened (or tried to open) a path under a secrets mount
/// (`/var/run/secrets/…`: ServiceAccount and projected tokens).
pub const REASON_TOKEN_OPEN: u32 = 1;
/// [`Reasons::flags`]: the process is `kubectl` (seen at exec).
pub const REASON_EXEC_KUBECTL: u32 = 2;
/// [`Reasons::flags`]: the process is `curl` (seen at exec).
pub const REASON_EXEC_CURL: u32 = 4;
/// Bytes of a token path kept (NUL-terminated).
pub const REASON_PATH_LEN: usize = 96;

/// What the optional tracepoints saw a process do, by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reasons {
    pub flags: u32,
    pub _pad: u32,
    /// The first token path it opened.
    pub token_path: [u8; REASON_PATH_LEN],
}

/// Indexes of the per-CPU `COUNTERS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// connect4/6 invocations.
    Connects = 0,
    /// Connects whose destination was in the endpoint set (exempt ones excluded).
    Matches = 1,
    /// Matching connects refused (enforce).
    Blocks = 2,
    /// Ring buffer reservations that failed: alerts lost in the kernel.
    LostEvents = 3,
    /// Matching connects from exempt (gateway) cgroups.
    Exempt = 4,
}
pub const COUNTER_SLOTS: u32 = 8;

#[cfg(feature = "user")]
mod user {
    // SAFETY of Pod: every type is repr(C), Copy, made of integers and byte arrays, with the
    // padding spelled out as fields, so any byte pattern is a valid value.
    #[allow(unsafe_code)]
    mod pod {
        use crate::*;
        unsafe impl aya::Pod for EndpointValue {}
        unsafe impl aya::Pod for Config {}
        unsafe impl aya::Pod for DedupKey {}
        unsafe impl aya::Pod for DedupValue {}
        unsafe impl aya::Pod for MatchEvent {}
        unsafe impl aya::Pod for FinalDest {}
        unsafe impl aya::Pod for Reasons {}
    }
}
