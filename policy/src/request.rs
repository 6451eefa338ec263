//! The request shape a policy is evaluated against, filled by the gateway from a parsed API
//! request and by `gatehouse policy test` from a kubectl command line.
use chrono::{DateTime, Utc};

/// One API request with its caller. Empty strings mean "not present" (a non-resource URL has
/// no resource; a cluster-scoped one no namespace).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub user: String,
    pub groups: Vec<String>,
    /// The caller's IP address.
    pub source: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for exec requests (`pods/exec`).
    pub exec: Option<Exec>,
    /// Labels the request carries (body `metadata.labels`, `labelSelector` equality terms).
    pub labels: Vec<(String, String)>,
    /// Roles the caller holds through active just-in-time grants.
    pub roles: Vec<String>,
    pub time: DateTime<Utc>,
}

/// What an exec request runs.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub container: String,
    pub argv: Vec<String>,
}
