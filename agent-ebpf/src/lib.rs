//! eBPF programs (cgroup connect4/6, cgroup_skb egress) that flag API-server connections which bypass
//! the gateway. The programs live in the `gatehouse-agent-ebpf` binary, built for
//! `bpfel-unknown-none` by `agent/build.rs`; on the host this library is empty.
#![no_std]
