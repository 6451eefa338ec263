//! The gatehouse policy: a YAML rule list loaded with line/column errors, and first-match
//! evaluation of a request (who, from where, what, when) to allow, deny, hold or mask it, and
//! what masking finds (detectors, field rules).
mod eval;
mod index;
mod load;
pub mod mask;
mod model;
mod pattern;
mod request;
mod window;

pub use eval::{Decision, Skipped};
pub use load::{LoadError, load_file, parse};
pub use mask::{Detector, FieldPath, MaskSpec, Scanner};
pub use model::{
    Action, Approvals, Default as DefaultRule, ExecMatch, Match, Policy, Role, Rule, Verb, Webhook,
    WebhookFormat,
};
pub use pattern::{Pattern, Source};
pub use request::{Exec, Request};
pub use window::TimeWindow;
