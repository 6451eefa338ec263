//! `--upstream-mode eks`: AssumeRole, then a presigned STS `GetCallerIdentity` URL as the token.
use http::HeaderValue;

use super::UpstreamError;

pub(crate) struct EksToken {}

impl EksToken {
    pub async fn authorization(&self) -> Result<HeaderValue, UpstreamError> {
        Err(UpstreamError::Config("eks mode is not implemented yet".into()))
    }
}

pub(crate) async fn target(
    _args: &super::UpstreamArgs,
) -> Result<super::target::Target, UpstreamError> {
    Err(UpstreamError::Config("eks mode is not implemented yet".into()))
}
