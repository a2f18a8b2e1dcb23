//! Schema drift end to end in process terms: the real binary (dry-run launcher) watching real tansu, fed Debezium
//! records whose `after` has a field the table's template does not declare and lacks one it does. The sidecar
//! reports it in `cdc_table_schema_drift`, in `GET /tables/<table>`, in `status`, and in one warning line however
//! many records carry it; under `policy.on_schema_drift = "pause"` the drifted table never starts, while the same
//! drift under the default `alert` starts its table as usual.

use std::time::Duration;

use serde_json::Value;

use crate::support::sidecar::{Sidecar, command};
use crate::support::{self, Broker};

const PREFIX: &str = "university-server.public.";

/// A hostile field name: a line break and a terminal escape.
const HOSTILE: &str = "bad\nname\u{1b}[31m";

/// A `c` record of `table` whose `after` holds `after`.
fn record(table: &str, after: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "before": null,
        "after": after,
        "source": {"connector": "postgresql", "name": "university-server", "db": "sourcedb",
                   "schema": "public", "table": table, "snapshot": "false", "ts_ms": 1_732_500_000_000_i64},
        "op": "c",
        "ts_ms": 1_732_500_000_037_i64,
        "transaction": null,
    }))
    .expect("json")
}

fn start_sidecar(broker: &Broker) -> Sidecar {
    Sidecar::builder()
        .bootstrap(&broker.bootstrap())
        .envs([
            ("CDC_LOG_LEVEL", "info"),
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
            // Every advance is sampled, so that every record below is read for its fields.
            ("CDC_KAFKA__SAMPLE_INTERVAL", "0s"),
            ("CDC_POLICY__COOLDOWN", "0s"),
            ("CDC_POLICY__TABLES__COURSE__ON_SCHEMA_DRIFT", "pause"),
        ])
        .dry_run()
        .sql_credentials()
        .ready_when_logged("Kafka brokers answer", Duration::from_secs(20))
        .start()
}

fn table(sidecar: &Sidecar, name: &str) -> Value {
    let (status, body) = sidecar.get(&format!("/tables/{name}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a table's JSON")
}

fn metric(sidecar: &Sidecar, series: &str) -> Option<f64> {
    let (_, metrics) = sidecar.get("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_once_and_pause_holds_the_start_of_a_drifted_table() {
    let broker = Broker::start();
    let client = support::client(&broker).await;
    for t in ["faculty", "course"] {
        support::create_topic(&client, &format!("{PREFIX}{t}"), 1).await;
    }
    let sidecar = start_sidecar(&broker);
    assert_eq!(
        metric(&sidecar, "cdc_table_schema_drift{table=\"faculty\"}"),
        None,
        "no series before a sample"
    );
    assert_eq!(table(&sidecar, "faculty")["schema_drift"], Value::Null);

    // faculty declares id, faculty_code, faculty_name, created_at: its records add two fields and lack created_at.
    let faculty_topic = format!("{PREFIX}faculty");
    let drifted = serde_json::json!({"id": 1, "faculty_code": "F", "faculty_name": "N", "dean": "D", HOSTILE: 1});
    for round in 0..6 {
        let values: Vec<Vec<u8>> = (0..3).map(|_| record("faculty", &drifted)).collect();
        let values: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_slice())).collect();
        support::produce(&client, &faculty_topic, 0, Some(b"{\"id\":1}"), &values).await;
        if round == 0 {
            sidecar.wait_for("faculty's drift", Duration::from_secs(20), || {
                metric(&sidecar, "cdc_table_schema_drift{table=\"faculty\"}") == Some(1.0)
            });
        }
    }
    // Every round's records are sampled before the log is counted.
    sidecar.wait_for("every faculty record sampled", Duration::from_secs(20), || {
        metric(&sidecar, "cdc_new_records_total{table=\"faculty\"}").is_some_and(|n| n >= 18.0)
    });

    let faculty = table(&sidecar, "faculty");
    let drift = &faculty["schema_drift"];
    assert_eq!(drift["added"], serde_json::json!([HOSTILE, "dean"]), "{faculty}");
    assert_eq!(drift["missing"], serde_json::json!(["created_at"]), "{faculty}");
    assert!(drift["since"].as_u64().is_some_and(|t| t > 0), "{faculty}");
    assert_eq!(faculty["drift_paused"], false, "alert is the default");
    assert_eq!(
        metric(
            &sidecar,
            "cdc_table_schema_drift_fields{table=\"faculty\",kind=\"added\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &sidecar,
            "cdc_table_schema_drift_fields{table=\"faculty\",kind=\"missing\"}"
        ),
        Some(1.0)
    );
    // Under alert the table starts as usual.
    sidecar.wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(20));

    // One warning line for 18 records, the hostile name escaped in it.
    let log = sidecar.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("schema drift:") && l.contains("faculty"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(r#""bad\nname\u{1b}[31m""#), "{}", warnings[0]);
    assert!(warnings[0].contains(r#"missing=["created_at"]"#), "{}", warnings[0]);
    assert!(!log.contains('\u{1b}'), "no raw escape reaches the log");
    assert!(!log.lines().any(|l| l.starts_with("name")), "no forged line");

    // course is under pause: its drifted change starts nothing.
    let course_topic = format!("{PREFIX}course");
    let course = record(
        "course",
        &serde_json::json!({"id": 1, "course_code": "C", "course_name": "N",
        "credits": 3, "program_id": 1, "created_at": 0, "syllabus": "new"}),
    );
    support::produce(&client, &course_topic, 0, Some(b"{\"id\":1}"), &[Some(&course)]).await;
    sidecar.wait_for("course's drift", Duration::from_secs(20), || {
        table(&sidecar, "course")["drift_paused"] == true
    });
    let shown = table(&sidecar, "course");
    assert_eq!(shown["state"], "paused", "{shown}");
    assert_eq!(
        shown["schema_drift"]["added"],
        serde_json::json!(["syllabus"]),
        "{shown}"
    );
    assert_eq!(shown["schema_drift"]["missing"], serde_json::json!([]), "{shown}");
    // More changes, and several polls later, still no start.
    support::produce(&client, &course_topic, 0, Some(b"{\"id\":1}"), &[Some(&course)]).await;
    sidecar.wait_for("course's second change", Duration::from_secs(20), || {
        metric(&sidecar, "cdc_new_records_total{table=\"course\"}").is_some_and(|n| n >= 2.0)
    });
    let polls = metric(&sidecar, "cdc_polls_total").unwrap_or(0.0);
    sidecar.wait_for("five more polls", Duration::from_secs(20), || {
        metric(&sidecar, "cdc_polls_total").is_some_and(|n| n >= polls + 5.0)
    });
    assert_eq!(sidecar.count("triggered job for: course"), 0, "{}", sidecar.log_text());
    assert_eq!(sidecar.count("schema drift:"), 2, "one line per table's change");

    // `status` shows both.
    let out = command(&["status", "--url", &sidecar.url()]).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |t: &str| text.lines().find(|l| l.starts_with(t)).unwrap_or("").to_owned();
    assert!(line("course").contains("paused (drift)"), "{text}");
    assert!(line("course").contains("+syllabus"), "{text}");
    assert!(
        line("faculty").contains("+dean") && line("faculty").contains("-created_at"),
        "{text}"
    );
}
