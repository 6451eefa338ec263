//! A ClickHouse HTTP endpoint for benchmarks that stores nothing: `INSERT … FORMAT
//! RowBinaryWithNamesAndTypes` bodies are decoded to count their rows, then dropped; every other
//! statement (migrations, `DESCRIBE TABLE`) goes to a real engine, so clients see a real schema.
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct DiscardClickHouse {
    /// http://127.0.0.1:PORT
    pub url: String,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    rows: AtomicU64,
    inserts: AtomicU64,
}

impl Drop for DiscardClickHouse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DiscardClickHouse {
    /// Listens on a loopback port; statements other than inserts are forwarded to `upstream`
    /// (`http://host:port` of a ClickHouse HTTP interface).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream: http::Uri = upstream.parse()?;
        let authority = upstream
            .authority()
            .context("the upstream URL has no host")?
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counts = shared.clone();
                let authority = authority.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, counts.clone(), authority.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { url, counts, task })
    }

    /// Rows received in inserts so far.
    pub fn rows(&self) -> u64 {
        self.counts.rows.load(Ordering::Acquire)
    }

    /// Insert statements received so far.
    pub fn inserts(&self) -> u64 {
        self.counts.inserts.load(Ordering::Acquire)
    }
}

type Reply = http::Response<Full<Bytes>>;

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    counts: Arc<Counts>,
    upstream: String,
) -> Result<Reply, std::convert::Infallible> {
    Ok(match respond(req, &counts, &upstream).await {
        Ok(r) => r,
        Err(e) => error_reply(&format!("{e:#}")),
    })
}

/// ClickHouse's error reply, so the client reports the cause.
fn error_reply(msg: &str) -> Reply {
    let mut r = http::Response::new(Full::new(Bytes::from(format!(
        "Code: 1000. DB::Exception: discard fixture: {msg}\n"
    ))));
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        "x-clickhouse-exception-code",
        http::HeaderValue::from_static("1000"),
    );
    r
}

async fn respond(
    req: http::Request<hyper::body::Incoming>,
    counts: &Counts,
    upstream: &str,
) -> anyhow::Result<Reply> {
    let query = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "query")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let words: Vec<String> = query
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if words.first().map(String::as_str) == Some("INSERT") {
        let format = words
            .iter()
            .position(|w| w == "FORMAT")
            .and_then(|i| words.get(i + 1));
        anyhow::ensure!(
            format.map(String::as_str) == Some("ROWBINARYWITHNAMESANDTYPES"),
            "only INSERT … FORMAT RowBinaryWithNamesAndTypes is counted, got {query:?}"
        );
        let body = req.into_body().collect().await?.to_bytes();
        let rows = count_rows(&body)?;
        counts.rows.fetch_add(rows, Ordering::AcqRel);
        counts.inserts.fetch_add(1, Ordering::AcqRel);
        return Ok(http::Response::new(Full::new(Bytes::new())));
    }
    forward(req, upstream).await
}

/// Sends the request on to the real engine over a fresh connection and relays its answer.
async fn forward(
    req: http::Request<hyper::body::Incoming>,
    upstream: &str,
) -> anyhow::Result<Reply> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let tcp = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", upstream);
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-clickhouse")
            || name == http::header::CONTENT_TYPE
            || name == http::header::AUTHORIZATION
        {
            out = out.header(name, value);
        }
    }
    let resp = sender.send_request(out.body(Full::new(body))?).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut reply = http::Response::new(Full::new(body));
    *reply.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-clickhouse") || name == http::header::CONTENT_TYPE {
            reply.headers_mut().insert(name, value.clone());
        }
    }
    Ok(reply)
}

/// A column type's RowBinary encoding, enough to step over a value.
enum Ty {
    Fixed(usize),
    String,
    Nullable(Box<Ty>),
    Array(Box<Ty>),
    Tuple(Vec<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

fn parse_type(t: &str) -> anyhow::Result<Ty> {
    let t = t.trim();
    let inner = |prefix: &str| {
        t.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
    };
    if let Some(i) = inner("LowCardinality") {
        return parse_type(i);
    }
    if let Some(i) = inner("Nullable") {
        return Ok(Ty::Nullable(Box::new(parse_type(i)?)));
    }
    if let Some(i) = inner("Array") {
        return Ok(Ty::Array(Box::new(parse_type(i)?)));
    }
    if let Some(i) = inner("Tuple") {
        return Ok(Ty::Tuple(
            split_args(i)
                .into_iter()
                .map(|a| {
                    // Named elements: `name Type`.
                    let a = a.trim();
                    match a.split_once(' ') {
                        Some((n, ty)) if !n.contains('(') => parse_type(ty),
                        _ => parse_type(a),
                    }
                })
                .collect::<anyhow::Result<_>>()?,
        ));
    }
    if let Some(i) = inner("Map") {
        let args = split_args(i);
        anyhow::ensure!(args.len() == 2, "bad Map type {t}");
        return Ok(Ty::Map(
            Box::new(parse_type(args[0])?),
            Box::new(parse_type(args[1])?),
        ));
    }
    if let Some(n) = inner("FixedString") {
        return Ok(Ty::Fixed(n.trim().parse()?));
    }
    let base = t.split('(').next().unwrap_or(t);
    Ok(match base {
        "String" => Ty::String,
        "UInt8" | "Int8" | "Bool" | "Enum8" => Ty::Fixed(1),
        "UInt16" | "Int16" | "Date" | "Enum16" => Ty::Fixed(2),
        "UInt32" | "Int32" | "Float32" | "DateTime" | "Date32" | "IPv4" => Ty::Fixed(4),
        "UInt64" | "Int64" | "Float64" | "DateTime64" => Ty::Fixed(8),
        "UInt128" | "Int128" | "UUID" | "IPv6" => Ty::Fixed(16),
        "UInt256" | "Int256" => Ty::Fixed(32),
        _ => anyhow::bail!("the discard fixture cannot step over type {t}"),
    })
}

/// Top-level comma-separated arguments of a type.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn varint(buf: &[u8], pos: &mut usize) -> anyhow::Result<usize> {
    let mut v = 0usize;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).context("truncated varint")?;
        *pos += 1;
        v |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    anyhow::bail!("varint too long")
}

fn advance(buf: &[u8], pos: &mut usize, n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(buf.len() - *pos >= n, "truncated value");
    *pos += n;
    Ok(())
}

fn skip(ty: &Ty, buf: &[u8], pos: &mut usize) -> anyhow::Result<()> {
    match ty {
        Ty::Fixed(n) => advance(buf, pos, *n),
        Ty::String => {
            let n = varint(buf, pos)?;
            advance(buf, pos, n)
        }
        Ty::Nullable(t) => {
            let null = *buf.get(*pos).context("truncated Nullable")?;
            *pos += 1;
            if null == 0 { skip(t, buf, pos) } else { Ok(()) }
        }
        Ty::Array(t) => {
            for _ in 0..varint(buf, pos)? {
                skip(t, buf, pos)?;
            }
            Ok(())
        }
        Ty::Tuple(ts) => ts.iter().try_for_each(|t| skip(t, buf, pos)),
        Ty::Map(k, v) => {
            for _ in 0..varint(buf, pos)? {
                skip(k, buf, pos)?;
                skip(v, buf, pos)?;
            }
            Ok(())
        }
    }
}

/// Rows in a RowBinaryWithNamesAndTypes body: the header names the columns and their types,
/// and every value is stepped over, so a malformed body is refused rather than miscounted.
fn count_rows(body: &[u8]) -> anyhow::Result<u64> {
    let mut pos = 0;
    let columns = varint(body, &mut pos)?;
    for _ in 0..columns {
        let n = varint(body, &mut pos)?;
        advance(body, &mut pos, n)?;
    }
    let mut types = Vec::with_capacity(columns);
    for _ in 0..columns {
        let n = varint(body, &mut pos)?;
        let start = pos;
        advance(body, &mut pos, n)?;
        types.push(parse_type(std::str::from_utf8(&body[start..pos])?)?);
    }
    let mut rows = 0;
    while pos < body.len() {
        for t in &types {
            skip(t, body, &mut pos)?;
        }
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn counts_rows_by_stepping_over_each_value() {
        let mut body = vec![3];
        for n in ["id", "tags", "note"] {
            string(&mut body, n);
        }
        for t in ["UUID", "Array(LowCardinality(String))", "Nullable(String)"] {
            string(&mut body, t);
        }
        for i in 0..3u8 {
            body.extend_from_slice(&[i; 16]);
            body.push(2);
            string(&mut body, "a");
            string(&mut body, "bc");
            if i == 1 {
                body.push(1);
            } else {
                body.push(0);
                string(&mut body, "x");
            }
        }
        assert_eq!(count_rows(&body).unwrap(), 3);
        // A row cut short is an error, not a miscount.
        assert!(count_rows(&body[..body.len() - 1]).is_err());
        assert!(parse_type("Decimal(10, 2)").is_err());
    }
}
