//! The versioned migrations. Append new ones; never edit an applied one. Each statement is
//! idempotent (`IF NOT EXISTS`) so a migration interrupted half-way can simply run again.
//!
//! Placeholders: `{db}`, `{on_cluster}`, `{replacing}`, `{aggregating}`, `{merge_tree}`, and the
//! TTLs `{recordings_ttl}`, `{frames_ttl}` (interactive stream bytes, shorter by default), `{alerts_ttl}`, `{rollup_ttl}`, `{audit_ttl}` (days).
//!
//! Layout follows the OpenTelemetry ClickHouse exporter: a time bucket first in ORDER BY,
//! LowCardinality + ZSTD, Delta on timestamps, daily (events) or monthly partitions with
//! `ttl_only_drop_parts`, bloom-filter skip indexes on session id and identity. Replays of the same
//! event (same id, same time) have the same sort key, so ReplacingMergeTree folds them and reads
//! use `LIMIT 1 BY event_id`; derived tables count with `uniqExact(event_id)` so replays never
//! inflate them.

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events, sessions, alerts, access audit",
        statements: &[
            r"CREATE TABLE IF NOT EXISTS {db}.events {on_cluster}
(
    event_id UUID,
    session_id String CODEC(ZSTD(1)),
    seq UInt64 CODEC(Delta(8), ZSTD(1)),
    time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    kind LowCardinality(String) CODEC(ZSTD(1)),
    producer LowCardinality(String) CODEC(ZSTD(1)),
    instance LowCardinality(String) CODEC(ZSTD(1)),
    actor LowCardinality(String) CODEC(ZSTD(1)),
    groups Array(LowCardinality(String)) CODEC(ZSTD(1)),
    auth_method LowCardinality(String) CODEC(ZSTD(1)),
    source_ip String CODEC(ZSTD(1)),
    user_agent LowCardinality(String) CODEC(ZSTD(1)),
    command_id String CODEC(ZSTD(1)),
    verb LowCardinality(String) CODEC(ZSTD(1)),
    api_group LowCardinality(String) CODEC(ZSTD(1)),
    resource LowCardinality(String) CODEC(ZSTD(1)),
    subresource LowCardinality(String) CODEC(ZSTD(1)),
    namespace LowCardinality(String) CODEC(ZSTD(1)),
    name String CODEC(ZSTD(1)),
    command String CODEC(ZSTD(1)),
    status_code UInt16 CODEC(ZSTD(1)),
    failed UInt8 CODEC(ZSTD(1)),
    payload String CODEC(ZSTD(3)),
    INDEX idx_session session_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_actor actor TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_command lower(command) TYPE ngrambf_v1(3, 65536, 3, 0) GRANULARITY 1,
    CONSTRAINT time_is_sane CHECK time >= toDateTime64('2000-01-01 00:00:00', 9, 'UTC')
)
ENGINE = {replacing}
PARTITION BY toDate(time)
ORDER BY (toStartOfHour(time), session_id, time, event_id)
TTL toDateTime(time) + INTERVAL {frames_ttl} DAY DELETE WHERE kind = 'stream_frame',
    toDateTime(time) + INTERVAL {recordings_ttl} DAY
SETTINGS ttl_only_drop_parts = 1",
            r"CREATE TABLE IF NOT EXISTS {db}.sessions {on_cluster}
(
    actor LowCardinality(String) CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    start SimpleAggregateFunction(min, DateTime64(9)) CODEC(Delta(8), ZSTD(1)),
    end SimpleAggregateFunction(max, DateTime64(9)) CODEC(Delta(8), ZSTD(1)),
    groups SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    namespaces SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    resources SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    verbs SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    requests AggregateFunction(uniqExact, UUID),
    denied AggregateFunction(uniqExact, UUID),
    errors AggregateFunction(uniqExact, UUID),
    INDEX idx_session session_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = {aggregating}
PARTITION BY toYYYYMM(start)
ORDER BY (actor, session_id)
TTL toDateTime(end) + INTERVAL {recordings_ttl} DAY
SETTINGS ttl_only_drop_parts = 1",
            r"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.sessions_mv {on_cluster} TO {db}.sessions AS
SELECT
    actor,
    session_id,
    min(time) AS start,
    max(time) AS end,
    groupUniqArrayArray(groups) AS groups,
    groupUniqArrayArray(if(namespace = '', [], [namespace])) AS namespaces,
    groupUniqArrayArray(if(resource = '', [], [resource])) AS resources,
    groupUniqArrayArray(if(verb = '', [], [verb])) AS verbs,
    uniqExactStateIf(event_id, kind = 'request') AS requests,
    uniqExactStateIf(event_id, kind = 'denied') AS denied,
    uniqExactStateIf(event_id, kind = 'response' AND failed = 1) AS errors
FROM {db}.events
GROUP BY actor, session_id",
            r"CREATE TABLE IF NOT EXISTS {db}.alerts {on_cluster}
(
    event_id UUID,
    time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    instance LowCardinality(String) CODEC(ZSTD(1)),
    node LowCardinality(String) CODEC(ZSTD(1)),
    namespace LowCardinality(String) CODEC(ZSTD(1)),
    pod String CODEC(ZSTD(1)),
    container LowCardinality(String) CODEC(ZSTD(1)),
    pid UInt32 CODEC(ZSTD(1)),
    tgid UInt32 CODEC(ZSTD(1)),
    uid UInt32 CODEC(ZSTD(1)),
    comm LowCardinality(String) CODEC(ZSTD(1)),
    cgroup_id UInt64 CODEC(ZSTD(1)),
    original_destination String CODEC(ZSTD(1)),
    final_destination String CODEC(ZSTD(1)),
    action LowCardinality(String) CODEC(ZSTD(1)),
    reasons Array(LowCardinality(String)) CODEC(ZSTD(1)),
    matched_by LowCardinality(String) CODEC(ZSTD(1)),
    host_process UInt8,
    exe LowCardinality(String) CODEC(ZSTD(1)),
    cmdline String CODEC(ZSTD(1)),
    pod_uid String CODEC(ZSTD(1)),
    container_id String CODEC(ZSTD(1)),
    service_account LowCardinality(String) CODEC(ZSTD(1)),
    count UInt64 CODEC(ZSTD(1)),
    payload String CODEC(ZSTD(3)),
    INDEX idx_pod pod TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {replacing}
PARTITION BY toYYYYMM(time)
ORDER BY (toStartOfDay(time), node, namespace, time, event_id)
TTL toDateTime(time) + INTERVAL {alerts_ttl} DAY
SETTINGS ttl_only_drop_parts = 1",
            r"CREATE TABLE IF NOT EXISTS {db}.access_audit {on_cluster}
(
    time DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    reader LowCardinality(String) CODEC(ZSTD(1)),
    groups Array(LowCardinality(String)) CODEC(ZSTD(1)),
    method LowCardinality(String) CODEC(ZSTD(1)),
    target String CODEC(ZSTD(1)),
    allowed UInt8,
    reason String CODEC(ZSTD(1)),
    peer String CODEC(ZSTD(1)),
    INDEX idx_reader reader TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {merge_tree}
PARTITION BY toYYYYMM(time)
ORDER BY (toStartOfDay(time), reader, time)
TTL toDateTime(time) + INTERVAL {audit_ttl} DAY
SETTINGS ttl_only_drop_parts = 1",
        ],
    },
    Migration {
        version: 2,
        name: "hourly rollup for dashboards",
        statements: &[
            r"CREATE TABLE IF NOT EXISTS {db}.events_hourly {on_cluster}
(
    hour DateTime CODEC(Delta(4), ZSTD(1)),
    actor LowCardinality(String) CODEC(ZSTD(1)),
    namespace LowCardinality(String) CODEC(ZSTD(1)),
    verb LowCardinality(String) CODEC(ZSTD(1)),
    resource LowCardinality(String) CODEC(ZSTD(1)),
    requests AggregateFunction(uniqExact, UUID),
    denied AggregateFunction(uniqExact, UUID),
    errors AggregateFunction(uniqExact, UUID)
)
ENGINE = {aggregating}
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, actor, namespace, verb, resource)
TTL hour + INTERVAL {rollup_ttl} DAY
SETTINGS ttl_only_drop_parts = 1",
            r"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_hourly_mv {on_cluster} TO {db}.events_hourly AS
SELECT
    toStartOfHour(toDateTime(time)) AS hour,
    actor,
    namespace,
    verb,
    resource,
    uniqExactStateIf(event_id, kind = 'request') AS requests,
    uniqExactStateIf(event_id, kind = 'denied') AS denied,
    uniqExactStateIf(event_id, kind = 'response' AND failed = 1) AS errors
FROM {db}.events
WHERE kind IN ('request', 'denied', 'response')
GROUP BY hour, actor, namespace, verb, resource",
        ],
    },
    Migration {
        version: 3,
        name: "alerts: workload and host network",
        // Columns added in place: rows stored before read the defaults ('' and 0), which is
        // what an agent without these fields meant. `IF NOT EXISTS` makes a rerun a no-op.
        statements: &[r"ALTER TABLE {db}.alerts {on_cluster}
    ADD COLUMN IF NOT EXISTS workload LowCardinality(String) CODEC(ZSTD(1)) AFTER service_account,
    ADD COLUMN IF NOT EXISTS host_network UInt8 AFTER workload"],
    },
];
