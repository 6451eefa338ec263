//! Retention follows the configuration: after the migrations, each table's TTL is compared with
//! the configured days and changed with `ALTER TABLE … MODIFY TTL` only where it differs, so a
//! rerun with the same settings is a no-op and a changed `--*-ttl-days` takes effect.
use super::render;
use crate::config::SchemaArgs;
use crate::error::CollectorError;

/// Each table's TTL, in the migrations' placeholders (the same text as in its CREATE TABLE).
pub const TABLE_TTLS: &[(&str, &str)] = &[
    (
        "events",
        "toDateTime(time) + INTERVAL {frames_ttl} DAY DELETE WHERE kind = 'stream_frame', \
         toDateTime(time) + INTERVAL {recordings_ttl} DAY",
    ),
    (
        "sessions",
        "toDateTime(end) + INTERVAL {recordings_ttl} DAY",
    ),
    ("alerts", "toDateTime(time) + INTERVAL {alerts_ttl} DAY"),
    (
        "access_audit",
        "toDateTime(time) + INTERVAL {audit_ttl} DAY",
    ),
    ("events_hourly", "hour + INTERVAL {rollup_ttl} DAY"),
];

/// The day counts of a TTL clause in order of appearance: `INTERVAL 90 DAY` in what we render,
/// `toIntervalDay(90)` in what ClickHouse stores in `create_table_query`.
pub fn days(sql: &str) -> Vec<u64> {
    let Some(start) = sql.find(" TTL ").map(|i| i + 5).or_else(|| {
        // A bare TTL expression (what `TABLE_TTLS` renders to).
        (!sql.contains("CREATE ")).then_some(0)
    }) else {
        return Vec::new();
    };
    let clause = &sql[start..];
    let clause = clause.split(" SETTINGS ").next().unwrap_or(clause);
    let mut out = Vec::new();
    let mut rest = clause;
    loop {
        let next = [("toIntervalDay(", ")"), ("INTERVAL ", " DAY")]
            .iter()
            .filter_map(|(open, close)| rest.find(open).map(|i| (i, *open, *close)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, open, close)) = next else { break };
        let after = &rest[i + open.len()..];
        let Some(end) = after.find(close) else { break };
        if let Ok(n) = after[..end].trim().parse() {
            out.push(n);
        }
        rest = &after[end..];
    }
    out
}

/// Brings every table's TTL to the configured days; returns the tables changed.
pub async fn reconcile(
    client: &clickhouse::Client,
    db: &str,
    schema: &SchemaArgs,
) -> Result<Vec<&'static str>, CollectorError> {
    let mut changed = Vec::new();
    for (table, template) in TABLE_TTLS {
        let stored: Vec<String> = client
            .query(
                "SELECT create_table_query FROM system.tables \
                 WHERE database = currentDatabase() AND name = ?",
            )
            .bind(*table)
            .fetch_all()
            .await
            .map_err(CollectorError::clickhouse(format!(
                "reading the TTL of {table}"
            )))?;
        let Some(ddl) = stored.first() else { continue };
        let want = render(template, db, schema);
        if days(ddl) == days(&want) {
            continue;
        }
        let alter = render(
            &format!("ALTER TABLE {{db}}.{table} {{on_cluster}} MODIFY TTL {template}"),
            db,
            schema,
        );
        client
            .query(&alter)
            .execute()
            .await
            .map_err(CollectorError::clickhouse(format!(
                "changing the TTL of {table}"
            )))?;
        tracing::info!(table, ttl = %want, "table TTL changed to the configured retention");
        changed.push(*table);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_read_both_spellings_in_order() {
        assert_eq!(
            days(
                "CREATE TABLE gh.events (x UInt8) ENGINE = MergeTree ORDER BY x \
                 TTL toDateTime(time) + toIntervalDay(90) WHERE kind = 'stream_frame', \
                 toDateTime(time) + toIntervalDay(365) SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192"
            ),
            vec![90, 365]
        );
        assert_eq!(
            days("toDateTime(end) + INTERVAL 30 DAY"),
            vec![30],
            "a rendered TTL expression"
        );
        assert!(days("CREATE TABLE t (x UInt8) ENGINE = Memory").is_empty());
    }

    #[test]
    fn every_ttl_template_has_its_days() {
        let schema = SchemaArgs {
            recordings_ttl_days: 365,
            frames_ttl_days: 90,
            alerts_ttl_days: 180,
            rollup_ttl_days: 91,
            audit_ttl_days: 400,
            clickhouse_cluster: None,
        };
        let got: Vec<Vec<u64>> = TABLE_TTLS
            .iter()
            .map(|(_, t)| days(&render(t, "gh", &schema)))
            .collect();
        assert_eq!(
            got,
            vec![vec![90, 365], vec![365], vec![180], vec![400], vec![91]]
        );
    }
}
