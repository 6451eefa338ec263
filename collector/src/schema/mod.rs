//! Schema as versioned, idempotent migrations, recorded in `schema_migrations`; `collector
//! migrate` applies what is missing, and so does `collector serve` unless `--no-migrate`.
mod migrations;
pub mod ttl;

pub use migrations::{MIGRATIONS, Migration};

use crate::config::{ClickHouseArgs, SchemaArgs};
use crate::error::CollectorError;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this run, in order.
    pub applied: Vec<u32>,
    /// The schema version after the run.
    pub version: u32,
    /// Tables whose TTL this run changed to the configured retention.
    pub ttl_changed: Vec<&'static str>,
}

/// The SQL of `template` for this deployment.
pub fn render(template: &str, db: &str, schema: &SchemaArgs) -> String {
    let (on_cluster, replicated) = match &schema.clickhouse_cluster {
        Some(c) => (format!("ON CLUSTER {}", quote_ident(c)), true),
        None => (String::new(), false),
    };
    let engine = |kind: &str| {
        if replicated {
            // {shard} and {replica} are the servers' macros; {database}/{table} are built in.
            format!(
                "Replicated{kind}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}')"
            )
        } else {
            kind.to_string()
        }
    };
    template
        .replace("{db}", &quote_ident(db))
        .replace("{on_cluster}", &on_cluster)
        .replace("{replacing}", &engine("ReplacingMergeTree"))
        .replace("{aggregating}", &engine("AggregatingMergeTree"))
        .replace("{merge_tree}", &engine("MergeTree"))
        .replace("{recordings_ttl}", &schema.recordings_ttl_days.to_string())
        .replace("{frames_ttl}", &schema.frames_ttl_days.to_string())
        .replace("{alerts_ttl}", &schema.alerts_ttl_days.to_string())
        .replace("{rollup_ttl}", &schema.rollup_ttl_days.to_string())
        .replace("{audit_ttl}", &schema.audit_ttl_days.to_string())
}

pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Applies every migration not yet recorded in `schema_migrations`, in version order.
pub async fn migrate(
    ch: &ClickHouseArgs,
    schema: &SchemaArgs,
) -> Result<MigrateReport, CollectorError> {
    let db = &ch.clickhouse_database;
    let server = crate::clickhouse_client::client(ch, false);
    let on_cluster = render("{on_cluster}", db, schema);
    server
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {} {on_cluster}",
            quote_ident(db)
        ))
        .execute()
        .await
        .map_err(CollectorError::clickhouse("creating the database"))?;
    let client = crate::clickhouse_client::client(ch, true);
    let ledger = render(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations {on_cluster} \
         (version UInt32, name String, applied_at DateTime64(3)) \
         ENGINE = {replacing} ORDER BY version",
        db,
        schema,
    );
    client
        .query(&ledger)
        .execute()
        .await
        .map_err(CollectorError::clickhouse("creating schema_migrations"))?;
    let done: Vec<u32> = client
        .query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .map_err(CollectorError::clickhouse("reading schema_migrations"))?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for (i, stmt) in m.statements.iter().enumerate() {
            client
                .query(&render(stmt, db, schema))
                .execute()
                .await
                .map_err(CollectorError::clickhouse(format!(
                    "migration {} ({}), statement {}",
                    m.version,
                    m.name,
                    i + 1
                )))?;
        }
        client
            .query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now64(3))",
            )
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(CollectorError::clickhouse("recording a migration"))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "schema migration applied"
        );
        applied.push(m.version);
    }
    let version = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    let ttl_changed = ttl::reconcile(&client, db, schema).await?;
    Ok(MigrateReport {
        applied,
        version,
        ttl_changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cluster: Option<&str>) -> SchemaArgs {
        SchemaArgs {
            recordings_ttl_days: 365,
            frames_ttl_days: 90,
            alerts_ttl_days: 180,
            rollup_ttl_days: 90,
            audit_ttl_days: 400,
            clickhouse_cluster: cluster.map(str::to_string),
        }
    }

    #[test]
    fn versions_increase_and_placeholders_all_resolve() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        for m in MIGRATIONS {
            for s in m.statements {
                let sql = render(s, "gh", &schema(None));
                for p in [
                    "{db}",
                    "{on_cluster}",
                    "{replacing}",
                    "{aggregating}",
                    "{merge_tree}",
                    "_ttl}",
                ] {
                    assert!(
                        !sql.contains(p),
                        "unresolved {p} in migration {}",
                        m.version
                    );
                }
            }
        }
    }

    #[test]
    fn cluster_mode_uses_replicated_engines_on_cluster() {
        let sql = render(MIGRATIONS[0].statements[0], "gh", &schema(Some("main")));
        assert!(sql.contains("ON CLUSTER `main`"), "{sql}");
        assert!(sql.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"), "{sql}");
        assert!(sql.contains("INTERVAL 365 DAY"));
    }
}
