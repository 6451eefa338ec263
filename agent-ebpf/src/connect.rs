//! `cgroup/connect4` and `cgroup/connect6`: match the destination against the API-server set,
//! skip the gateway's cgroups, fold repeats into a dedup window, alert, and block in enforce mode.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_NOEXIST, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_netns_cookie,
            bpf_get_socket_cookie, bpf_ktime_get_ns,
        },
    },
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use aya_log_ebpf::warn;
use gatehouse_agent_common::{
    AF_INET, AF_INET6, Counter, DedupKey, DedupValue, FinalDest, MAX_CGROUP_DEPTH, MatchEvent,
    Mode, PORT_BITS, VERDICT_ALLOWED, VERDICT_BLOCKED,
};

use crate::{
    counters::bump,
    maps::{CONFIG, DEDUP, ENDPOINTS4, ENDPOINTS6, EVENTS, EXEMPT, FINAL_DEST, MODES, PORTS},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn gh_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(ret) => ret,
        Err(_) => ALLOW,
    }
}

#[cgroup_sock_addr(connect6)]
pub fn gh_connect6(ctx: SockAddrContext) -> i32 {
    match try_connect6(&ctx) {
        Ok(ret) => ret,
        Err(_) => ALLOW,
    }
}

/// Whether any endpoint uses this port (network order, as in `user_port`). This runs on every
/// connect in the cgroup, so it is one inlined array load and a bit test: no helper calls.
#[inline(always)]
fn endpoint_port(port_be: u32) -> bool {
    let port = u16::from_be(port_be as u16);
    PORTS
        .get(u32::from(port >> 6))
        .is_some_and(|word| word & (1 << (port & 63)) != 0)
}

fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i64> {
    bump(Counter::Connects);
    // SAFETY: the kernel hands connect4 a valid bpf_sock_addr.
    let port = unsafe { (*ctx.sock_addr).user_port };
    if !endpoint_port(port) {
        return Ok(ALLOW);
    }
    // SAFETY: as above.
    let ip_be = unsafe { (*ctx.sock_addr).user_ip4 };
    // user_port holds the network-order port in its low 16 bits; memory order is what we want.
    let port_be = (port as u16).to_ne_bytes();
    let ip = ip_be.to_ne_bytes();
    let data = [port_be[0], port_be[1], ip[0], ip[1], ip[2], ip[3]];
    let Some(value) = ENDPOINTS4.get(Key::new(PORT_BITS + 32, data)) else {
        return Ok(ALLOW);
    };
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip);
    on_match(ctx, AF_INET, port as u16, addr, value.matched_by)
}

fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i64> {
    bump(Counter::Connects);
    // SAFETY: the kernel hands connect6 a valid bpf_sock_addr.
    let port = unsafe { (*ctx.sock_addr).user_port };
    if !endpoint_port(port) {
        return Ok(ALLOW);
    }
    // SAFETY: as above; user_ip6 takes 4-byte loads.
    let w = unsafe {
        let sa = &*ctx.sock_addr;
        [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ]
    };
    let port_be = (port as u16).to_ne_bytes();
    let mut addr = [0u8; 16];
    let mut data = [0u8; 18];
    data[0] = port_be[0];
    data[1] = port_be[1];
    for (i, word) in w.iter().enumerate() {
        let b = word.to_ne_bytes();
        addr[i * 4..i * 4 + 4].copy_from_slice(&b);
        data[2 + i * 4..2 + i * 4 + 4].copy_from_slice(&b);
    }
    let Some(value) = ENDPOINTS6.get(Key::new(PORT_BITS + 128, data)) else {
        return Ok(ALLOW);
    };
    on_match(ctx, AF_INET6, port as u16, addr, value.matched_by)
}

/// Atomically adds one (BPF `lock xadd`). The bpf target has no compare-and-swap, so core hides
/// `AtomicU64::fetch_add`; the intrinsic with an unused result lowers to the plain atomic add.
///
/// # Safety
/// `p` must point at a live map value.
#[inline(always)]
unsafe fn add_one(p: *mut u64) {
    // SAFETY: the caller guarantees `p` is valid.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
}

/// Walks the current cgroup's ancestors (root first): any exempt one exempts the connect, and
/// the deepest one with a mode sets it.
#[inline(always)]
fn cgroup_policy(default_mode: u8) -> Option<u8> {
    let mut mode = default_mode;
    for level in 0..MAX_CGROUP_DEPTH {
        // SAFETY: plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        // SAFETY: values are plain u8 read once; a racing update gives the old or new value.
        unsafe {
            if EXEMPT.get(&id).is_some() {
                return None;
            }
            if let Some(m) = MODES.get(&id) {
                mode = *m;
            }
        }
    }
    Some(mode)
}

#[inline(always)]
fn on_match(
    ctx: &SockAddrContext,
    family: u16,
    port_be: u16,
    addr: [u8; 16],
    matched_by: u8,
) -> Result<i32, i64> {
    let config = CONFIG.get(0).copied();
    let (window_ns, default_mode) = match config {
        Some(c) => (c.dedup_window_ns, c.default_mode),
        None => (1_000_000_000, Mode::Audit as u8),
    };
    let Some(mode) = cgroup_policy(default_mode) else {
        bump(Counter::Exempt);
        return Ok(ALLOW);
    };
    bump(Counter::Matches);
    let blocked = mode == Mode::Enforce as u8;
    if blocked {
        bump(Counter::Blocks);
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain helper calls.
    let (cgroup_id, now) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_ns()) };
    let key = DedupKey {
        cgroup_id,
        tgid: (pid_tgid >> 32) as u32,
        port_be,
        family,
        addr,
        verdict: if blocked {
            VERDICT_BLOCKED
        } else {
            VERDICT_ALLOWED
        },
        _pad: [0; 7],
    };

    let (prev_start, prev_count) = match DEDUP.get_ptr_mut(&key) {
        Some(v) => {
            // SAFETY: v points at a live LRU value; the count is bumped atomically because
            // several CPUs may hit the same key at once.
            unsafe {
                if now.wrapping_sub((*v).window_start_ns) < window_ns {
                    add_one(&raw mut (*v).count);
                    return Ok(if blocked { DENY } else { ALLOW });
                }
                let prev = ((*v).window_start_ns, (*v).count);
                (*v).window_start_ns = now;
                (*v).count = 1;
                prev
            }
        }
        None => {
            let fresh = DedupValue {
                window_start_ns: now,
                count: 1,
            };
            if DEDUP.insert(&key, &fresh, BPF_NOEXIST as u64).is_err() {
                // Another CPU opened the window first: count into it.
                if let Some(v) = DEDUP.get_ptr_mut(&key) {
                    // SAFETY: as above.
                    unsafe {
                        add_one(&raw mut (*v).count);
                    }
                }
                return Ok(if blocked { DENY } else { ALLOW });
            }
            (0, 0)
        }
    };

    // SAFETY: the context pointer is valid for both cookie helpers in sock_addr programs.
    let (socket_cookie, netns_cookie) = unsafe {
        (
            bpf_get_socket_cookie(ctx.as_ptr()),
            bpf_get_netns_cookie(ctx.as_ptr()),
        )
    };
    // Ask egress to record where this socket's packets finally go.
    let placeholder = FinalDest {
        family: 0,
        port_be: 0,
        _pad: [0; 4],
        addr: [0; 16],
    };
    let _ = FINAL_DEST.insert(&socket_cookie, &placeholder, 0);

    match EVENTS.reserve::<MatchEvent>(0) {
        Some(mut entry) => {
            entry.write(MatchEvent {
                key,
                window_start_ns: now,
                prev_window_start_ns: prev_start,
                prev_count,
                socket_cookie,
                netns_cookie,
                pid: pid_tgid as u32,
                uid: bpf_get_current_uid_gid() as u32,
                comm: bpf_get_current_comm().unwrap_or([0; 16]),
                matched_by,
                _pad: [0; 7],
            });
            // The agent polls; waking it per event costs ~10x the program itself.
            entry.submit(BPF_RB_NO_WAKEUP as u64);
        }
        None => {
            // The window is still counted in DEDUP, so its total reaches userspace with the
            // next window's event or the agent's map sweep; only the first sighting is late.
            bump(Counter::LostEvents);
            warn!(
                ctx,
                "gatehouse: alert ring buffer full for cgroup {}", cgroup_id
            );
        }
    }
    Ok(if blocked { DENY } else { ALLOW })
}
