//! Test support for gatehouse: a faithful in-process Kubernetes API server
//! ([`apiserver::TestApiServer`]) and helpers to run the real kubectl against it
//! ([`kubectl`]). Never shipped.

pub mod apiserver;
pub mod binaries;
pub mod clickhouse;
pub mod collector_proc;
pub mod discard_clickhouse;
pub mod fixture;
pub mod gateway_proc;
pub mod kubectl;
pub mod nginx_proxy;
pub mod oidc;
pub mod on_disk;
pub mod port_forward;
pub mod proc_log;
pub mod pty;
pub mod tls_relay;
