//! The gatehouse policy: a YAML rule list loaded with line/column errors, and first-match
//! evaluation of a request (who, from where, what, when) to allow, deny, hold or mask it.
mod eval;
mod load;
mod model;
mod pattern;
mod request;
mod window;

pub use eval::{Decision, Skipped};
pub use load::{LoadError, load_file, parse};
pub use model::{Action, Default as DefaultRule, ExecMatch, Match, Policy, Rule, Verb};
pub use pattern::{Pattern, Source};
pub use request::{Exec, Request};
pub use window::TimeWindow;
