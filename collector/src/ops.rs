//! The plain-HTTP operations listener: `/healthz` and Prometheus `/metrics`.
use http_body_util::Full;
use hyper::service::service_fn;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/healthz" => (200, "ok\n".to_string()),
                        "/metrics" => {
                            let mut text = String::new();
                            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                                Ok(()) => (200, text),
                                Err(e) => (500, format!("{e}\n")),
                            }
                        }
                        _ => (404, "not found\n".to_string()),
                    };
                    http::Response::builder()
                        .status(status)
                        .body(Full::new(bytes::Bytes::from(body)))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
