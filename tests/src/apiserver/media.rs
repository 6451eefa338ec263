//! Content negotiation over `Accept`: plain JSON, YAML, `as=Table`, `as=PartialObjectMetadata`
//! and aggregated discovery. Protobuf is never chosen: kubectl always offers JSON as an
//! alternative, and answering JSON is legal.

use std::collections::BTreeMap;

use super::status::ApiError;

/// What a response should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    Json,
    Yaml,
    /// `meta.k8s.io/<version>` Table.
    Table(String),
    /// `meta.k8s.io/<version>` PartialObjectMetadata(List).
    PartialMetadata(String),
    /// `apidiscovery.k8s.io/v2` APIGroupDiscoveryList.
    AggregatedDiscovery,
}

#[derive(Debug)]
struct MediaRange {
    essence: String,
    params: BTreeMap<String, String>,
}

fn parse(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let essence = it.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    ))
                })
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

/// Picks the first acceptable representation in the client's order. `discovery` enables
/// aggregated discovery (only `/api` and `/apis` serve it).
pub fn negotiate(accept: Option<&str>, discovery: bool) -> Result<Wanted, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Wanted::Json);
    };
    for r in parse(accept) {
        let json_like = matches!(
            r.essence.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        let as_ = r.params.get("as").map(String::as_str);
        let g = r.params.get("g").map(String::as_str);
        let v = r.params.get("v").map(String::as_str).unwrap_or("");
        match (json_like, as_) {
            (true, None) => return Ok(Wanted::Json),
            (true, Some("Table")) if g == Some("meta.k8s.io") && matches!(v, "v1" | "v1beta1") => {
                return Ok(Wanted::Table(v.to_string()));
            }
            (true, Some("PartialObjectMetadata" | "PartialObjectMetadataList"))
                if g == Some("meta.k8s.io") && matches!(v, "v1" | "v1beta1") =>
            {
                return Ok(Wanted::PartialMetadata(v.to_string()));
            }
            (true, Some("APIGroupDiscoveryList"))
                if discovery && g == Some("apidiscovery.k8s.io") && v == "v2" =>
            {
                return Ok(Wanted::AggregatedDiscovery);
            }
            _ => {}
        }
        if r.essence == "application/yaml" && as_.is_none() {
            return Ok(Wanted::Yaml);
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// The `Content-Type` to answer with for a representation.
pub fn content_type(w: &Wanted) -> String {
    match w {
        Wanted::Json => "application/json".into(),
        Wanted::Yaml => "application/yaml".into(),
        Wanted::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        Wanted::PartialMetadata(v) => {
            format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io")
        }
        Wanted::AggregatedDiscovery => {
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".into()
        }
    }
}

/// The essence of a request `Content-Type` (`application/merge-patch+json`, ...).
pub fn essence(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_prefers_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(a), false).ok(),
            Some(Wanted::Table("v1".into()))
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf, */*";
        assert_eq!(negotiate(Some(a), false).ok(), Some(Wanted::Json));
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf"), false).is_err());
    }

    #[test]
    fn aggregated_only_on_discovery() {
        let a =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate(Some(a), true).ok(),
            Some(Wanted::AggregatedDiscovery)
        );
        assert_eq!(negotiate(Some(a), false).ok(), Some(Wanted::Json));
    }
}
