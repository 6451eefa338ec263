//! The `#[repr(C)]` ABI shared by the eBPF programs (`agent-ebpf`) and the node agent (`agent`).
//! `no_std` so the kernel side can use it; the `user` feature adds userspace-only impls.
#![no_std]
