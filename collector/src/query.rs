//! The `Query` gRPC service: session listing, ordered transcripts (show, export, replay) and
//! bypass alerts, each call gated by the reader policy and recorded in `access_audit` before it is answered.
use crate::auth::{ReadRefusal, ReaderAuth, bearer};
use crate::metrics::Metrics;
use crate::rows::PayloadRow;
use gatehouse_gateway::auth::Identity;
use gatehouse_proto::v1::query_server::Query;
use gatehouse_proto::v1::{
    Event, GetSessionRequest, ListAlertsRequest, ListAlertsResponse, ListSessionsRequest,
    ListSessionsResponse, SessionSummary,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 100_000;
const DEFAULT_ALERT_LIMIT: u32 = 100;
const MAX_ALERT_LIMIT: u32 = 10_000;

pub struct QueryService {
    pub client: clickhouse::Client,
    pub auth: Arc<ReaderAuth>,
    pub metrics: Metrics,
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct AuditRow {
    time: i64,
    reader: String,
    groups: Vec<String>,
    method: &'static str,
    target: String,
    allowed: u8,
    reason: String,
    peer: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct SummaryRow {
    session_id: String,
    actor: String,
    #[serde(rename = "s")]
    start: i64,
    #[serde(rename = "e")]
    end: i64,
    requests: u64,
    denied: u64,
    errors: u64,
    #[serde(rename = "ns")]
    namespaces: Vec<String>,
    #[serde(rename = "gs")]
    groups: Vec<String>,
}

/// Who is calling, as each front end (gRPC, JSON over HTTP) sees it.
pub struct Caller<'a> {
    /// The `Authorization: Bearer` token, if any.
    pub token: Option<&'a str>,
    /// The peer address, for the audit row.
    pub peer: String,
}

impl QueryService {
    /// Authorizes and audits one call. The audit row is written before any data is returned; if
    /// it cannot be written, the read is refused (UNAVAILABLE).
    pub async fn admit(
        &self,
        caller: &Caller<'_>,
        method: &'static str,
        target: String,
    ) -> Result<Identity, Status> {
        let verdict = self.auth.check_token(caller.token).await;
        let (reader, groups, allowed, reason) = match &verdict {
            Ok(id) => (id.username.clone(), id.groups.clone(), 1, String::new()),
            Err(ReadRefusal::Unauthenticated(why)) => (String::new(), Vec::new(), 0, why.clone()),
            Err(ReadRefusal::Denied(id, why)) => {
                (id.username.clone(), id.groups.clone(), 0, why.clone())
            }
        };
        let row = AuditRow {
            time: now_nanos(),
            reader,
            groups,
            method,
            target,
            allowed,
            reason,
            peer: caller.peer.clone(),
        };
        self.audit(&row).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the access audit");
            Status::unavailable(
                "the access audit cannot be written; reads are refused until it can",
            )
        })?;
        match verdict {
            Ok(id) => {
                self.metrics.reads.inc();
                Ok(id)
            }
            Err(ReadRefusal::Unauthenticated(why)) => {
                self.metrics.reads_denied.inc();
                Err(Status::unauthenticated(why))
            }
            Err(ReadRefusal::Denied(_, why)) => {
                self.metrics.reads_denied.inc();
                Err(Status::permission_denied(why))
            }
        }
    }

    async fn audit(&self, row: &AuditRow) -> Result<(), clickhouse::error::Error> {
        let mut insert = self.client.insert::<AuditRow>("access_audit").await?;
        insert.write(row).await?;
        insert.end().await
    }

    /// The one session whose id is `prefix` or starts with it.
    async fn resolve(&self, prefix: &str) -> Result<(String, i64, i64), Status> {
        if prefix.is_empty() {
            return Err(Status::invalid_argument("session_id: empty"));
        }
        let rows: Vec<(String, i64, i64)> = self
            .client
            .query(
                "SELECT session_id, min(start), max(end) FROM sessions \
                 WHERE startsWith(session_id, ?) GROUP BY session_id ORDER BY session_id = ? DESC LIMIT 2",
            )
            .bind(prefix)
            .bind(prefix)
            .fetch_all()
            .await
            .map_err(internal)?;
        match rows.as_slice() {
            [] => Err(Status::not_found(format!("no session matches {prefix:?}"))),
            [one] => Ok(one.clone()),
            [first, ..] if first.0 == prefix => Ok(first.clone()),
            _ => Err(Status::failed_precondition(format!(
                "{prefix:?} matches several sessions: give more of the session id"
            ))),
        }
    }

    /// Session summaries matching `f` (of the one session `only`, when given), oldest first.
    /// Callers have been admitted.
    pub async fn list(
        &self,
        f: &ListSessionsRequest,
        only: Option<&str>,
    ) -> Result<Vec<SessionSummary>, Status> {
        let limit = match f.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut sql = String::from(
            "SELECT session_id, actor, min(start) AS s, max(end) AS e, \
             uniqExactMerge(requests) AS requests, uniqExactMerge(denied) AS denied, \
             uniqExactMerge(errors) AS errors, \
             arraySort(groupUniqArrayArray(namespaces)) AS ns, arraySort(groupUniqArrayArray(groups)) AS gs \
             FROM sessions WHERE 1",
        );
        if !f.username.is_empty() {
            sql.push_str(" AND actor = ?");
        }
        if only.is_some() {
            sql.push_str(" AND session_id = ?");
        }
        if !f.text.is_empty() {
            sql.push_str(
                " AND session_id IN (SELECT DISTINCT session_id FROM events \
                 WHERE kind IN ('request', 'denied') AND lower(command) LIKE ?)",
            );
        }
        sql.push_str(" GROUP BY actor, session_id HAVING 1");
        if !f.group.is_empty() {
            sql.push_str(" AND has(gs, ?)");
        }
        if !f.namespace.is_empty() {
            sql.push_str(" AND has(ns, ?)");
        }
        if !f.resource.is_empty() {
            sql.push_str(" AND has(groupUniqArrayArray(resources), ?)");
        }
        if !f.verb.is_empty() {
            sql.push_str(" AND has(groupUniqArrayArray(verbs), ?)");
        }
        if f.since_unix_nano != 0 {
            sql.push_str(" AND e >= fromUnixTimestamp64Nano(toInt64(?))");
        }
        if f.until_unix_nano != 0 {
            sql.push_str(" AND s <= fromUnixTimestamp64Nano(toInt64(?))");
        }
        sql.push_str(" ORDER BY s, session_id LIMIT ?");
        let mut q = self.client.query(&sql);
        if !f.username.is_empty() {
            q = q.bind(&f.username);
        }
        if let Some(id) = only {
            q = q.bind(id);
        }
        if !f.text.is_empty() {
            q = q.bind(format!("%{}%", escape_like(&f.text.to_lowercase())));
        }
        for v in [&f.group, &f.namespace, &f.resource, &f.verb] {
            if !v.is_empty() {
                q = q.bind(v);
            }
        }
        for t in [f.since_unix_nano, f.until_unix_nano] {
            if t != 0 {
                q = q.bind(t);
            }
        }
        q = q.bind(limit);
        let rows: Vec<SummaryRow> = q.fetch_all().await.map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|r| SessionSummary {
                session_id: r.session_id,
                actor: r.actor,
                start_unix_nano: r.start,
                end_unix_nano: r.end,
                requests: r.requests,
                denied: r.denied,
                errors: r.errors,
                namespaces: r.namespaces,
                groups: r.groups,
            })
            .collect())
    }

    /// Stored bypass alerts matching `f`, newest first, each the agent's event as stored.
    /// Callers have been admitted.
    pub async fn alerts(&self, f: &ListAlertsRequest) -> Result<Vec<Event>, Status> {
        let action = match f.action.as_str() {
            "" | "allowed" | "blocked" => f.action.as_str(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "action: {other:?} is neither allowed nor blocked"
                )));
            }
        };
        let limit = match f.limit {
            0 => DEFAULT_ALERT_LIMIT,
            n => n.min(MAX_ALERT_LIMIT),
        };
        let text = [
            ("node", f.node.as_str()),
            ("namespace", f.namespace.as_str()),
            ("pod", f.pod.as_str()),
            ("workload", f.workload.as_str()),
            ("matched_by", f.matched_by.as_str()),
            ("action", action),
        ];
        let mut sql = String::from("SELECT payload FROM alerts WHERE 1");
        for (column, v) in text {
            if !v.is_empty() {
                sql.push_str(&format!(" AND {column} = ?"));
            }
        }
        if f.since_unix_nano != 0 {
            sql.push_str(" AND time >= fromUnixTimestamp64Nano(toInt64(?))");
        }
        if f.until_unix_nano != 0 {
            sql.push_str(" AND time <= fromUnixTimestamp64Nano(toInt64(?))");
        }
        // `LIMIT 1 BY event_id` hides redeliveries ReplacingMergeTree has not merged yet.
        sql.push_str(" ORDER BY time DESC, event_id LIMIT 1 BY event_id LIMIT ?");
        let mut q = self.client.query(&sql);
        for (_, v) in text {
            if !v.is_empty() {
                q = q.bind(v);
            }
        }
        for t in [f.since_unix_nano, f.until_unix_nano] {
            if t != 0 {
                q = q.bind(t);
            }
        }
        let rows: Vec<PayloadRow> = q.bind(limit).fetch_all().await.map_err(internal)?;
        rows.into_iter()
            .map(|r| {
                Event::decode(r.payload.as_ref()).map_err(|e| {
                    Status::data_loss(format!("stored alert is not a gatehouse.v1.Event: {e}"))
                })
            })
            .collect()
    }

    /// The summary of the one session `prefix` names.
    pub async fn summary(&self, prefix: &str) -> Result<SessionSummary, Status> {
        let (id, _, _) = self.resolve(prefix).await?;
        self.list(&ListSessionsRequest::default(), Some(&id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Status::not_found(format!("no session matches {prefix:?}")))
    }

    /// The ordered transcript of the one session `prefix` names, from `from_seq`, streamed as
    /// ClickHouse returns it. Not-found and ambiguous ids fail before anything is streamed.
    pub async fn transcript(
        &self,
        prefix: &str,
        from_seq: u64,
    ) -> Result<mpsc::Receiver<Result<Event, Status>>, Status> {
        let (id, start, end) = self.resolve(prefix).await?;
        // The time range from `sessions` lets ClickHouse prune partitions and granules; the
        // bloom filter on session_id does the rest. `LIMIT 1 BY event_id` hides replays that
        // ReplacingMergeTree has not merged yet.
        let mut cursor = self
            .client
            .query(
                "SELECT payload FROM events \
                 WHERE time >= fromUnixTimestamp64Nano(toInt64(?)) AND time <= fromUnixTimestamp64Nano(toInt64(?)) \
                 AND session_id = ? AND seq >= ? \
                 ORDER BY seq, event_id LIMIT 1 BY event_id",
            )
            .bind(start)
            .bind(end)
            .bind(&id)
            .bind(from_seq)
            .fetch::<PayloadRow>()
            .map_err(internal)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let item = match cursor.next().await {
                    Ok(Some(row)) => Event::decode(row.payload.as_ref()).map_err(|e| {
                        Status::data_loss(format!("stored event is not a gatehouse.v1.Event: {e}"))
                    }),
                    Ok(None) => break,
                    Err(e) => Err(internal(e)),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// The gRPC caller of `req`.
fn grpc_caller<T>(req: &Request<T>) -> Caller<'_> {
    Caller {
        token: bearer(req),
        peer: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let target = format!("{:?}", req.get_ref());
        self.admit(&grpc_caller(&req), "ListSessions", target)
            .await?;
        let sessions = self.list(req.get_ref(), None).await?;
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    type GetSessionStream = ReceiverStream<Result<Event, Status>>;

    async fn get_session(
        &self,
        req: Request<GetSessionRequest>,
    ) -> Result<Response<Self::GetSessionStream>, Status> {
        let target = req.get_ref().session_id.clone();
        self.admit(&grpc_caller(&req), "GetSession", target).await?;
        let r = req.get_ref();
        let rx = self.transcript(&r.session_id, r.from_seq).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let target = format!("{:?}", req.get_ref());
        self.admit(&grpc_caller(&req), "ListAlerts", target).await?;
        let alerts = self.alerts(req.get_ref()).await?;
        Ok(Response::new(ListAlertsResponse { alerts }))
    }
}

pub(crate) fn internal(e: clickhouse::error::Error) -> Status {
    tracing::error!(error = %e, "query failed");
    Status::unavailable(format!("ClickHouse: {e}"))
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
