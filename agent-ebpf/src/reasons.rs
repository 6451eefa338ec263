//! Optional reasons that enrich an alert, from cheap tracepoints: a process opening a path
//! under `/var/run/secrets/` (ServiceAccount and projected tokens) and the exec of `kubectl`
//! or `curl`. Kept per tgid in `REASONS`; the agent reads them when it writes the alert.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated::bpf_get_current_ancestor_cgroup_id,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use gatehouse_agent_common::{
    MAX_CGROUP_DEPTH, REASON_EXEC_CURL, REASON_EXEC_KUBECTL, REASON_PATH_LEN, REASON_TOKEN_OPEN,
    Reasons,
};

use crate::maps::{EXEMPT, REASONS};

/// `filename` in `syscalls/sys_enter_openat` (tracefs format file).
const OPENAT_FILENAME: usize = 24;

#[tracepoint]
pub fn gh_openat(ctx: TracePointContext) -> u32 {
    let _ = try_openat(&ctx);
    0
}

#[tracepoint]
pub fn gh_exec(_ctx: TracePointContext) -> u32 {
    // exec has already renamed the task: comm is the new program's basename.
    let Ok(comm) = bpf_get_current_comm() else {
        return 0;
    };
    let flag = if eq_at(&comm, 0, b"kubectl\0") {
        REASON_EXEC_KUBECTL
    } else if eq_at(&comm, 0, b"curl\0") {
        REASON_EXEC_CURL
    } else {
        return 0;
    };
    if !exempt() {
        record(flag, None);
    }
    0
}

fn try_openat(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: the offset is the filename pointer's in this tracepoint's format.
    let name: *const u8 = unsafe { ctx.read_at(OPENAT_FILENAME)? };
    // Nearly every openat on the node lands here: decide on 8 bytes before reading more.
    // SAFETY: a user pointer read through the checked helper.
    let head: [u8; 8] = unsafe { bpf_probe_read_user(name.cast::<[u8; 8]>())? };
    let head = u64::from_ne_bytes(head);
    let var_run = u64::from_ne_bytes(*b"/var/run");
    if head != var_run && head != u64::from_ne_bytes(*b"/run/sec") {
        return Ok(());
    }
    let mut path = [0u8; REASON_PATH_LEN];
    // SAFETY: as above; the helper bounds the copy by the buffer.
    unsafe { bpf_probe_read_user_str_bytes(name, &mut path)? };
    let secrets = if head == var_run {
        eq_at(&path, 8, b"/secrets/")
    } else {
        eq_at(&path, 8, b"rets/")
    };
    if secrets && !exempt() {
        record(REASON_TOKEN_OPEN, Some(&path));
    }
    Ok(())
}

/// Byte-wise comparison: the bpf target has no memcmp to call.
#[inline(always)]
fn eq_at<const L: usize, const N: usize>(buf: &[u8; L], at: usize, want: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N {
        if at + i >= L || buf[at + i] != want[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The gateway's own cgroups read tokens and run what they like.
#[inline(always)]
fn exempt() -> bool {
    for level in 0..MAX_CGROUP_DEPTH {
        // SAFETY: plain helper call.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            return false;
        }
        // SAFETY: a read of a u8 value.
        if unsafe { EXEMPT.get(&id) }.is_some() {
            return true;
        }
    }
    false
}

#[inline(always)]
fn record(flag: u32, path: Option<&[u8; REASON_PATH_LEN]>) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if let Some(r) = REASONS.get_ptr_mut(&tgid) {
        // SAFETY: r points at a live LRU value; a racing writer at worst loses one bit that
        // the next open or exec sets again.
        unsafe {
            if (*r).flags & REASON_TOKEN_OPEN == 0
                && let Some(p) = path
            {
                (*r).token_path = *p;
            }
            (*r).flags |= flag;
        }
        return;
    }
    let fresh = Reasons {
        flags: flag,
        _pad: 0,
        token_path: match path {
            Some(p) => *p,
            None => [0; REASON_PATH_LEN],
        },
    };
    let _ = REASONS.insert(&tgid, &fresh, BPF_NOEXIST as u64);
}
