//! Loading a policy file. Every problem, syntax or meaning, is reported with the file, line and
//! column it was found at.
use crate::model::Policy;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read policy file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    InvalidNoLocation { origin: String, message: String },
}

/// Parses a policy document; `origin` names it in errors (usually the file path).
pub fn parse(text: &str, origin: &str) -> Result<Policy, LoadError> {
    let policy = parse_model(text, origin)?;
    // Index now, off the request path (a reload builds it before it goes live).
    policy.index();
    Ok(policy)
}

fn parse_model(text: &str, origin: &str) -> Result<Policy, LoadError> {
    serde_yaml::from_str::<Policy>(text).map_err(|e| {
        // serde_yaml appends " at line L column C" to the message; the location is ours to place.
        let full = e.to_string();
        match e.location() {
            Some(loc) => {
                let message = full
                    .rfind(" at line ")
                    .map_or(full.as_str(), |i| &full[..i])
                    .to_string();
                LoadError::Invalid {
                    origin: origin.to_string(),
                    line: loc.line(),
                    column: loc.column(),
                    message,
                }
            }
            None => LoadError::InvalidNoLocation {
                origin: origin.to_string(),
                message: full,
            },
        }
    })
}

/// Reads and parses a policy file.
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}
