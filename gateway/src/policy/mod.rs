//! Policy at the gateway: the live policy file (hot-reloaded) and the request shape it is
//! evaluated against. The model and evaluation live in `gatehouse-policy`.
mod live;
mod request;

pub use live::{LivePolicy, Reload};
pub use request::request_of;
