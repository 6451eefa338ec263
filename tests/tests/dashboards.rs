#![allow(clippy::unwrap_used)]
//! The Grafana dashboards in `charts/gatehouse/dashboards/`: every panel's SQL runs on the real
//! ClickHouse engine (chdb fixture, or `CLICKHOUSE_URL`) over a schema made by the real
//! `collector migrate`, with seeded events and alerts, and each panel's result shape and values
//! are asserted. Grafana's ClickHouse plugin macros are expanded as the plugin does.

use std::collections::BTreeMap;

use gatehouse_tests::clickhouse::TestClickHouse;
use serde_json::Value;

const DATASOURCE_TYPE: &str = "grafana-clickhouse-datasource";

fn dashboards() -> Vec<(String, Value)> {
    let dir = gatehouse_tests::kubectl::workspace_root().join("charts/gatehouse/dashboards");
    let mut v: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let d = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), d)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!v.is_empty(), "no dashboards in {}", dir.display());
    v
}

/// Expands the ClickHouse plugin's macros and the dashboard variables; anything left over is
/// an error (the plugin would send it to ClickHouse verbatim).
fn expand(sql: &str, database: &str, from: i64, to: i64) -> String {
    let mut s = sql.replace("${database}", database);
    for (mac, f) in [
        (
            "$__timeFilter(",
            "{c} >= toDateTime({from}) AND {c} <= toDateTime({to})",
        ),
        (
            "$__timeInterval(",
            "toStartOfInterval(toDateTime({c}), INTERVAL 60 second)",
        ),
    ] {
        while let Some(i) = s.find(mac) {
            let rest = &s[i + mac.len()..];
            let end = rest.find(')').unwrap();
            let col = rest[..end].trim().to_string();
            let with = f
                .replace("{c}", &col)
                .replace("{from}", &from.to_string())
                .replace("{to}", &to.to_string());
            s = format!("{}{}{}", &s[..i], with, &rest[end + 1..]);
        }
    }
    assert!(
        !s.contains("$__") && !s.contains("${"),
        "unexpanded macro or variable in:\n{s}"
    );
    s
}

fn num(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A panel's result: column names and rows as name → value.
struct Result {
    columns: Vec<String>,
    rows: Vec<BTreeMap<String, Value>>,
}

async fn run(ch: &TestClickHouse, sql: &str) -> Result {
    let out = ch
        .query_text(&format!("{sql}\nFORMAT JSON"))
        .await
        .unwrap_or_else(|e| panic!("panel SQL failed: {e:#}\n{sql}"));
    let v: Value = serde_json::from_str(&out).unwrap();
    let columns = v["meta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    let rows = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    Result { columns, rows }
}

/// Events and alerts as the collector writes them, a few minutes old, with one replayed
/// (same id, same time) event and alert that must not be counted twice.
async fn seed(ch: &TestClickHouse) {
    let ev = |id: u32,
              session: &str,
              seq: u32,
              mins: u32,
              kind: &str,
              actor: &str,
              command_id: &str,
              verb: &str,
              ns: &str,
              name: &str,
              command: &str,
              status: u16| {
        format!(
            "(toUUID('00000000-0000-7000-8000-{id:012}'), '{session}', {seq}, \
             toDateTime64(now64(9) - INTERVAL {mins} MINUTE, 9), '{kind}', 'gateway', 'gw-0', '{actor}', \
             ['sre'], 'oidc', '10.0.0.1', 'kubectl/v1.35', '{command_id}', '{verb}', '', 'pods', '', \
             '{ns}', '{name}', '{command}', {status}, {failed}, '')",
            failed = u8::from(status >= 400)
        )
    };
    let rows = [
        ev(
            1,
            "s1",
            1,
            30,
            "request",
            "alice",
            "c1",
            "list",
            "prod",
            "",
            "kubectl get pods -n prod",
            0,
        ),
        ev(
            2, "s1", 2, 30, "response", "alice", "c1", "", "", "", "", 200,
        ),
        ev(
            3,
            "s1",
            3,
            29,
            "request",
            "alice",
            "c1",
            "list",
            "prod",
            "",
            "kubectl get pods -n prod",
            0,
        ),
        ev(
            4,
            "s1",
            4,
            20,
            "request",
            "alice",
            "c2",
            "delete",
            "prod",
            "web-1",
            "kubectl delete pod web-1 -n prod",
            0,
        ),
        ev(
            5, "s1", 5, 20, "response", "alice", "c2", "", "", "", "", 403,
        ),
        ev(
            6,
            "s2",
            1,
            10,
            "request",
            "bob",
            "c3",
            "list",
            "prod",
            "",
            "kubectl get pods -n prod",
            0,
        ),
        ev(
            7,
            "s2",
            2,
            9,
            "stream_opened",
            "bob",
            "c4",
            "",
            "prod",
            "web-1",
            "sh -c id",
            0,
        ),
        ev(
            8,
            "s3",
            1,
            5,
            "denied",
            "unauthenticated@10.0.0.9",
            "c5",
            "get",
            "kube-system",
            "",
            "kubectl get secrets -n kube-system",
            401,
        ),
    ];
    let sql = format!(
        "INSERT INTO events (event_id, session_id, seq, time, kind, producer, instance, actor, groups, \
         auth_method, source_ip, user_agent, command_id, verb, api_group, resource, subresource, \
         namespace, name, command, status_code, failed, payload) VALUES {}",
        rows.join(", ")
    );
    ch.query_text(&sql).await.unwrap();
    // A replay of event 1 (same id, same time), as after a shipper retry: counted once.
    ch.query_text(
        "INSERT INTO events SELECT * FROM events WHERE event_id = toUUID('00000000-0000-7000-8000-000000000001')",
    )
    .await
    .unwrap();

    let alert = |id: u32,
                 mins: u32,
                 node: &str,
                 ns: &str,
                 pod: &str,
                 comm: &str,
                 action: &str,
                 matched: &str,
                 count: u32,
                 workload: &str| {
        format!(
            "(toUUID('00000000-0000-7000-9000-{id:012}'), toDateTime64(now64(9) - INTERVAL {mins} MINUTE, 9), \
             'agent-{node}', '{node}', '{ns}', '{pod}', 'app', 1234, 1234, 0, '{comm}', 42, \
             '10.96.0.1:443', '10.96.0.1:443', '{action}', ['{matched}'], '{matched}', {host}, \
             '/usr/bin/{comm}', '{comm} https://10.96.0.1', '', '', '', '{workload}', 0, {count}, '')",
            host = u8::from(pod.is_empty())
        )
    };
    let alerts = [
        alert(
            1,
            15,
            "node-a",
            "prod",
            "web-7d9f8c6b5-x2x7k",
            "curl",
            "allowed",
            "service_vip",
            3,
            // The agent's workload, when it knew the pod: the panel shows it as is.
            "Deployment/web",
        ),
        alert(
            2,
            12,
            "node-b",
            "ci",
            "runner-abcde",
            "kubectl",
            "blocked",
            "endpoint_ip",
            2,
            // No workload stored (an older agent): the panel derives one from the pod name.
            "",
        ),
        alert(3, 8, "node-a", "", "", "curl", "allowed", "node_ip", 1, ""),
    ];
    ch.query_text(&format!("INSERT INTO alerts VALUES {}", alerts.join(", ")))
        .await
        .unwrap();
    ch.query_text(
        "INSERT INTO alerts SELECT * FROM alerts WHERE event_id = toUUID('00000000-0000-7000-9000-000000000001')",
    )
    .await
    .unwrap();
}

fn by<'a>(
    rows: &'a [BTreeMap<String, Value>],
    col: &str,
    val: &str,
) -> Vec<&'a BTreeMap<String, Value>> {
    rows.iter().filter(|r| r[col] == val).collect()
}

fn sum(rows: &[&BTreeMap<String, Value>], col: &str) -> u64 {
    rows.iter().map(|r| num(&r[col])).sum()
}

/// The asserted shape and values of each panel, by title.
fn check(title: &str, r: &Result) {
    let cols = |want: &[&str]| assert_eq!(r.columns, want, "{title}: columns");
    match title {
        "Sessions started, by identity" => {
            cols(&["time", "actor", "sessions"]);
            for a in ["alice", "bob", "unauthenticated@10.0.0.9"] {
                assert_eq!(sum(&by(&r.rows, "actor", a), "sessions"), 1, "{title}: {a}");
            }
            assert_eq!(r.rows.len(), 3, "{title}");
        }
        "Requests per hour, by identity" => {
            cols(&["time", "actor", "requests"]);
            assert_eq!(
                sum(&by(&r.rows, "actor", "alice"), "requests"),
                3,
                "{title}: replay counted"
            );
            assert_eq!(sum(&by(&r.rows, "actor", "bob"), "requests"), 1, "{title}");
        }
        "Top commands" => {
            cols(&["command", "runs", "identities", "last_run"]);
            assert_eq!(r.rows[0]["command"], "kubectl get pods -n prod", "{title}");
            assert_eq!(
                num(&r.rows[0]["runs"]),
                2,
                "{title}: one run per kubectl invocation"
            );
            assert_eq!(num(&r.rows[0]["identities"]), 2, "{title}");
            assert_eq!(r.rows.len(), 2, "{title}: exec and denied are not requests");
        }
        "Denied requests, by identity" => {
            cols(&["actor", "unauthenticated", "forbidden", "last_denied"]);
            let alice = by(&r.rows, "actor", "alice");
            assert_eq!(sum(&alice, "forbidden"), 1, "{title}");
            let anon = by(&r.rows, "actor", "unauthenticated@10.0.0.9");
            assert_eq!(sum(&anon, "unauthenticated"), 1, "{title}");
            assert_eq!(r.rows.len(), 2, "{title}");
        }
        "Interactive sessions (exec, attach, port-forward)" => {
            cols(&["time", "actor", "namespace", "pod", "command", "session_id"]);
            assert_eq!(r.rows.len(), 1, "{title}");
            assert_eq!(r.rows[0]["pod"], "web-1");
            assert_eq!(r.rows[0]["command"], "sh -c id");
        }
        "Bypass alerts, by namespace, workload and matched-by" => {
            cols(&[
                "namespace",
                "workload",
                "matched_by",
                "action",
                "connections",
                "nodes",
                "last_seen",
            ]);
            let got: Vec<(String, String, String, String, u64)> = r
                .rows
                .iter()
                .map(|x| {
                    let s = |c: &str| x[c].as_str().unwrap().to_string();
                    (
                        s("namespace"),
                        s("workload"),
                        s("matched_by"),
                        s("action"),
                        num(&x["connections"]),
                    )
                })
                .collect();
            let want = [
                ("prod", "Deployment/web", "service_vip", "allowed", 3),
                ("ci", "runner", "endpoint_ip", "blocked", 2),
                ("", "host:curl", "node_ip", "allowed", 1),
            ]
            .map(|(a, b, c, d, n)| (a.into(), b.into(), c.into(), d.into(), n));
            assert_eq!(got, want, "{title}");
        }
        "Blocked connections" => {
            cols(&["time", "namespace", "blocked"]);
            assert_eq!(
                sum(&by(&r.rows, "namespace", "ci"), "blocked"),
                2,
                "{title}"
            );
            assert_eq!(r.rows.len(), 1, "{title}");
        }
        "Agents reporting" => {
            cols(&["node", "instance", "last_report", "connections"]);
            assert_eq!(
                sum(&by(&r.rows, "node", "node-a"), "connections"),
                4,
                "{title}"
            );
            assert_eq!(
                sum(&by(&r.rows, "node", "node-b"), "connections"),
                2,
                "{title}"
            );
        }
        other => panic!("panel {other:?} has no assertions in tests/tests/dashboards.rs: add them"),
    }
}

#[tokio::test]
async fn every_panel_runs_on_clickhouse_with_the_expected_result() {
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let out = std::process::Command::new(gatehouse_tests::binaries::path("collector").unwrap())
        .arg("migrate")
        .args(ch.collector_args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seed(&ch).await;

    let now = chrono::Utc::now().timestamp();
    let (from, to) = (now - 6 * 3600, now + 3600);
    let mut ran = 0;
    for (file, d) in dashboards() {
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource") && vars.contains(&"database"),
            "{file}: {vars:?}"
        );
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert_eq!(p["datasource"]["type"], DATASOURCE_TYPE, "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["type"], DATASOURCE_TYPE, "{file}: {title}");
                let want_format = if p["type"] == "timeseries" { 0 } else { 1 };
                assert_eq!(t["format"], want_format, "{file}: {title}: format");
                let sql = expand(t["rawSql"].as_str().unwrap(), &ch.database, from, to);
                let r = run(&ch, &sql).await;
                assert!(
                    !r.rows.is_empty(),
                    "{file}: {title} returned nothing:\n{sql}"
                );
                if p["type"] == "timeseries" {
                    assert_eq!(r.columns[0], "time", "{file}: {title}: time column first");
                }
                check(title, &r);
                ran += 1;
            }
        }
    }
    assert!(ran >= 8, "only {ran} panel queries ran");

    // Outside the time range every panel is empty: the time filter is really applied.
    for (_, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let sql = expand(t["rawSql"].as_str().unwrap(), &ch.database, 0, 3600);
                let r = run(&ch, &sql).await;
                assert!(
                    r.rows.is_empty(),
                    "{}: rows outside the time range",
                    p["title"]
                );
            }
        }
    }
}
