//! Flags of alert routing (`COLLECTOR_ALERT*`), validated before anything is bound.
use crate::error::CollectorError;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// Alertmanager base URL (http or https); bypass alerts are POSTed to `<url>/api/v2/alerts`.
    #[arg(long, env = "COLLECTOR_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<String>,
    /// Generic JSON webhook (http or https) receiving one POST per bypass alert.
    #[arg(long, env = "COLLECTOR_ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// File holding a bearer token sent to the webhook (`Authorization: Bearer …`).
    #[arg(long, env = "COLLECTOR_ALERT_WEBHOOK_TOKEN_FILE")]
    pub alert_webhook_token_file: Option<PathBuf>,
    /// PEM CA bundle for https alert receivers (default: the public web PKI roots).
    #[arg(long, env = "COLLECTOR_ALERT_CA_FILE")]
    pub alert_ca_file: Option<PathBuf>,
    /// Where an alert is investigated, with `{event_id}`, `{namespace}`, `{pod}` and `{node}`
    /// substituted (e.g. the Grafana bypass dashboard); sent as Alertmanager's generatorURL.
    #[arg(long, env = "COLLECTOR_ALERT_LINK_TEMPLATE")]
    pub alert_link_template: Option<String>,
    /// Alerts with the same id or the same fingerprint (node, pod, container, destination,
    /// matched-by, verdict) within this window are sent once.
    #[arg(long, env = "COLLECTOR_ALERT_DEDUP_WINDOW", value_parser = humantime::parse_duration, default_value = "10m")]
    pub alert_dedup_window: Duration,
    /// At most this many alerts are sent per minute (a burst of the same size is allowed); the
    /// rest are counted and stay queryable in ClickHouse.
    #[arg(long, env = "COLLECTOR_ALERT_RATE_LIMIT", default_value_t = 60)]
    pub alert_rate_limit: u32,
    /// Retries of one notification after a connection error, HTTP 429 or 5xx.
    #[arg(long, env = "COLLECTOR_ALERT_RETRIES", default_value_t = 5)]
    pub alert_retries: u32,
    /// First retry delay; doubles after each failure, up to 1 minute.
    #[arg(long, env = "COLLECTOR_ALERT_RETRY_BACKOFF", value_parser = humantime::parse_duration, default_value = "1s")]
    pub alert_retry_backoff: Duration,
    /// Time limit of one HTTP attempt.
    #[arg(long, env = "COLLECTOR_ALERT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub alert_timeout: Duration,
    /// Alertmanager `endsAt`: the alert resolves this long after it fired unless sent again.
    #[arg(long, env = "COLLECTOR_ALERT_RESOLVE_AFTER", value_parser = humantime::parse_duration, default_value = "30m")]
    pub alert_resolve_after: Duration,
}

/// How one sink retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub retries: u32,
    pub backoff: Duration,
}

impl AlertArgs {
    pub fn validate(&self) -> Result<(), CollectorError> {
        let cfg = |m: String| Err(CollectorError::Config(m));
        for (flag, url) in [
            ("--alertmanager-url", &self.alertmanager_url),
            ("--alert-webhook-url", &self.alert_webhook_url),
        ] {
            if let Some(url) = url {
                match url.parse::<http::Uri>() {
                    Ok(u)
                        if matches!(u.scheme_str(), Some("http" | "https"))
                            && u.host().is_some() => {}
                    _ => return cfg(format!("{flag}: {url:?} is not an http(s) URL")),
                }
            }
        }
        if self.alert_webhook_token_file.is_some() && self.alert_webhook_url.is_none() {
            return cfg("--alert-webhook-token-file needs --alert-webhook-url".into());
        }
        if self.alert_rate_limit == 0 {
            return cfg("--alert-rate-limit must be positive".into());
        }
        if self.alert_retry_backoff.is_zero() || self.alert_timeout.is_zero() {
            return cfg("--alert-retry-backoff and --alert-timeout must be positive".into());
        }
        Ok(())
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.alert_retries,
            backoff: self.alert_retry_backoff,
        }
    }
}
