//! The gatehouse eBPF object: `cgroup/connect4`, `cgroup/connect6`, `cgroup_skb/egress` and
//! the optional-reason tracepoints.
//! Built for `bpfel-unknown-none` by `agent/build.rs`; on the host it is an empty `main` so
//! `cargo build/clippy/test --workspace` stay green (the aya template's cfg trick).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The eBPF build is nightly (aya-build): `atomic_xadd` stands in for the missing fetch_add.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
// Kernel programs read the context and call helpers through raw pointers; there is no safe API.
#![cfg_attr(target_arch = "bpf", allow(unsafe_code))]

#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod egress;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod reasons;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
