//! `metav1.Status` error responses, so kubectl prints `Error from server (Reason): message`.
use crate::body::{BoxBody, full};
use http::{Response, StatusCode, header};

/// A `metav1.Status` failure with `code` matching the HTTP status.
pub fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<BoxBody> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn status_code_matches_http_code() {
        let r = status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "token expired");
        assert_eq!(r.status(), 401);
        let b = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["code"], 401);
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["reason"], "Unauthorized");
    }
}
