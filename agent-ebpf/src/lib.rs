//! eBPF programs (cgroup connect4/6, sock_ops, tracepoints) that flag API-server connections
//! which bypass the gateway. Built for `bpfel-unknown-none` by `agent/build.rs`, never for the host.
#![no_std]
