//! Policy at the gateway: the live policy file (hot-reloaded) and the request shape it is
//! evaluated against, and DLP masking of live responses. The model and evaluation live in `gatehouse-policy`.
pub mod dlp;
mod live;
mod request;

pub use live::{LivePolicy, Reload};
pub use request::request_of;
