//! `cdc-orchestrator status`: the running sidecar's tables as an aligned terminal table, read from its HTTP API.
//!
//! Everything it prints comes from `GET /tables`, read as loose JSON so an older or newer sidecar (fields added
//! or missing) still shows what it can; a missing value prints as `-`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::healthcheck::probe_address;
use super::{EXIT_CONFIG, EXIT_FAILURE, block_on};
use crate::config::{Config, ServerConfig};
use crate::model::now_ms;
use crate::shutdown;

/// Upper bound on the whole request to the sidecar (connect included).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most of `GET /tables` that is read: some 500 bytes a table, so tens of thousands of tables.
const MAX_TABLES_BYTES: usize = 32 * 1024 * 1024;

/// The environment variable the server's API token comes from; `status` presents it too.
pub const TOKEN_ENV: &str = "CDC_SERVER__TOKEN";

/// Why the sidecar's tables could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The URL is not an http(s) URL.
    #[error("bad sidecar URL {url:?}: {reason}")]
    Url {
        /// What was given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// Nothing answered.
    #[error("cannot reach the sidecar at {url}: {reason} (is `cdc-orchestrator run` up, and is --url right?)")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Connection refused, timeout, ...
        reason: String,
    },
    /// It answered, but not with 200.
    #[error("the sidecar at {url} answered {status}: {message}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error message it gave, or the start of the body.
        message: String,
    },
    /// The answer was not the JSON array `/tables` gives.
    #[error("{url} did not answer with a table list: {reason}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// Reads `GET {base}/tables`, presenting `token` as a bearer token when given.
pub async fn fetch_tables(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<Vec<Value>, StatusError> {
    Ok(fetch_page(client, base, token).await?.0)
}

/// The line `status` prints below the table (the first line stays the titles, for scripts that read them): the replica's role, as `GET /tables` names it in its `CDC-Role`
/// and `CDC-Leader` headers (`role: standby (leader pod-b)`); `None` from a sidecar without them.
fn role_line(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(clean);
    let role = header(crate::http::routes::ROLE_HEADER)?;
    Some(match header(crate::http::routes::LEADER_HEADER) {
        Some(leader) => format!("role: {role} (leader {leader})"),
        None => format!("role: {role}"),
    })
}

/// [`fetch_tables`], with the line naming the replica's role ([`role_line`]).
async fn fetch_page(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), StatusError> {
    let url = tables_url(base)?;
    let mut request = client.get(url.clone());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let unreachable = |e: reqwest::Error| StatusError::Unreachable {
        url: url.to_string(),
        reason: if e.is_timeout() {
            format!("no answer within {}", humantime::format_duration(TIMEOUT))
        } else if e.is_connect() {
            "connection refused".to_owned()
        } else {
            innermost(&e)
        },
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let role = role_line(response.headers());
    let body = match crate::flink::read_body(response, MAX_TABLES_BYTES).await {
        Ok(body) => body,
        Err(crate::flink::BodyError::Read(e)) => return Err(unreachable(e)),
        Err(e @ crate::flink::BodyError::TooLarge { .. }) => {
            return Err(StatusError::Decode {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
    };
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(StatusError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message: message.escape_debug().to_string(),
        });
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(tables)) => Ok((tables, role)),
        Ok(_) => Err(StatusError::Decode {
            url: url.to_string(),
            reason: "expected a JSON array".to_owned(),
        }),
        Err(e) => Err(StatusError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The most specific reason in an error's chain (reqwest's own message is a generic "error sending request").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn tables_url(base: &str) -> Result<reqwest::Url, StatusError> {
    let bad = |reason: String| StatusError::Url {
        url: base.to_owned(),
        reason,
    };
    let mut url = reqwest::Url::parse(base).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected an http:// or https:// URL".to_owned()));
    }
    let path = format!("{}/tables", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// The column titles, in order.
const COLUMNS: [&str; 9] = [
    "TABLE",
    "STATE",
    "JOB",
    "RUNNING SINCE",
    "LAST CHANGE",
    "LAG",
    "RUNNING SHARE",
    "SCHEMA DRIFT",
    "NEXT",
];

/// The tables as an aligned text table, times relative to `now_ms` (milliseconds since the Unix epoch).
pub fn render(tables: &[Value], now_ms: u64) -> String {
    let rows: Vec<[String; 9]> = tables.iter().map(|t| row(t, now_ms)).collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(COLUMNS.map(str::to_owned)).chain(rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if tables.is_empty() {
        out.push_str("(no table has seen a change or a job yet)\n");
    }
    out
}

fn row(table: &Value, now_ms: u64) -> [String; 9] {
    let text = |key: &str| table.get(key).and_then(Value::as_str).map(clean);
    let number = |key: &str| table.get(key).and_then(Value::as_u64);
    let state = text("state").unwrap_or_else(|| "-".to_owned());
    let running_since = if state == "running" {
        number("job_since").map(|at| ago(at, now_ms))
    } else {
        None
    };
    let share = table
        .get("running_share")
        .and_then(Value::as_f64)
        .map(|s| format!("{:.1}%", s * 100.0));
    [
        text("table").unwrap_or_else(|| "-".to_owned()),
        if table.get("paused").and_then(Value::as_bool) == Some(true) && state != "paused" {
            format!("{state} (paused)")
        } else if table.get("drift_paused").and_then(Value::as_bool) == Some(true) {
            // Starts wait for the schema drift to be resolved (`policy.on_schema_drift = "pause"`).
            format!("{state} (drift)")
        } else {
            state
        },
        text("job_id").unwrap_or_else(|| "-".to_owned()),
        running_since.unwrap_or_else(|| "-".to_owned()),
        number("last_change_at").map_or_else(|| "-".to_owned(), |at| ago(at, now_ms)),
        number("lag").map_or_else(|| "-".to_owned(), |lag| lag.to_string()),
        share.unwrap_or_else(|| "-".to_owned()),
        drift(table.get("schema_drift")),
        next(table.get("next"), now_ms),
    ]
}

/// Fields shown of each list of a schema drift; the rest are counted.
const DRIFT_NAMES: usize = 3;

/// `+new_col -old_col`: the fields the records add and the declared columns they miss, a few of each
/// (`+2 more`), or `-` without drift.
fn drift(drift: Option<&Value>) -> String {
    let Some(drift) = drift.filter(|d| d.is_object()) else {
        return "-".to_owned();
    };
    let list = |key: &str, sign: char| -> Vec<String> {
        let names: Vec<&str> = drift
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut shown: Vec<String> = names
            .iter()
            .take(DRIFT_NAMES)
            .map(|n| format!("{sign}{}", clean(n).chars().take(24).collect::<String>()))
            .collect();
        if names.len() > DRIFT_NAMES {
            shown.push(format!("{sign}{} more", names.len() - DRIFT_NAMES));
        }
        shown
    };
    let mut parts = list("added", '+');
    if let Some(n) = drift.get("unnamed_added").and_then(Value::as_u64).filter(|n| *n > 0) {
        parts.push(format!("+{n} unnamed"));
    }
    parts.extend(list("missing", '-'));
    if parts.is_empty() {
        return "-".to_owned();
    }
    parts.join(" ")
}

/// `start in 12s (cooldown)`, `stop in 40s`, `start (queue)`, or `-`.
fn next(step: Option<&Value>, now_ms: u64) -> String {
    let Some(step) = step.filter(|s| s.is_object()) else {
        return "-".to_owned();
    };
    let mut out = step
        .get("action")
        .and_then(Value::as_str)
        .map_or_else(|| "?".to_owned(), clean);
    if let Some(at) = step.get("at").and_then(Value::as_u64) {
        out.push_str(&format!(" in {}", span(at.saturating_sub(now_ms))));
    }
    if let Some(cause) = step.get("waiting_for").and_then(Value::as_str) {
        out.push_str(&format!(" ({})", clean(cause).replace('_', " ")));
    }
    out
}

/// `3m 12s ago`, rounded to whole seconds.
fn ago(at_ms: u64, now_ms: u64) -> String {
    format!("{} ago", span(now_ms.saturating_sub(at_ms)))
}

fn span(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms.div_ceil(1000))).to_string()
}

/// A value from the sidecar, kept to one printable line so it cannot break the table or the terminal.
fn clean(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Prints the tables of the sidecar at `url` (once, or every `watch` until interrupted). The URL and token come from the flags and environment, else from the configuration when it loads (a
/// configuration this machine cannot validate, e.g. TLS files of the sidecar's host, must not stop a status read).
pub fn command(file: Option<&Path>, url: Option<&str>, watch: Option<Duration>) -> ExitCode {
    let (url, token) = match target(file, url) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let work = async { status(&url, token.as_deref(), watch, shutdown::on_signals(TIMEOUT)).await };
    block_on(work, "error", |_| EXIT_FAILURE)
}

/// The running sidecar's base URL and API token, for the commands that call its HTTP API (`status`, `reload`): the
/// URL from `url`, else the configured `server.listen` (on loopback when it is a wildcard address); the token from
/// CDC_SERVER__TOKEN, else the configuration's `server.token`. Exits 2 when the variable is not UTF-8.
pub(super) fn target(file: Option<&Path>, url: Option<&str>) -> Result<(String, Option<String>), ExitCode> {
    let config = match Config::load(file) {
        Ok(config) => Some(config),
        Err(e) => {
            // Only worth saying when a file was named: without one, the defaults are all there is to read.
            if let Some(file) = file {
                eprintln!("warning: not using {} for the URL and token: {e}", file.display());
            }
            None
        }
    };
    let url = url.map(str::to_owned).unwrap_or_else(|| {
        let listen = config
            .as_ref()
            .map_or_else(|| ServerConfig::default().listen, |c| c.server.listen);
        format!("http://{}", probe_address(listen))
    });
    let token = match std::env::var(TOKEN_ENV) {
        Ok(token) => Some(token).filter(|t| !t.is_empty()),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("error: environment variable {TOKEN_ENV} is not valid UTF-8");
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    }
    .or_else(|| config.and_then(|c| c.server.token.map(|t| t.expose().to_owned())));
    Ok((url, token))
}

/// Runs the command: prints once, or with `watch` every `every` until interrupted (errors then print and the
/// next refresh tries again). Returns the error of a single read.
pub async fn status(
    base: &str,
    token: Option<&str>,
    watch: Option<Duration>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), StatusError> {
    let client = crate::flink::http_client(TIMEOUT).map_err(|e| StatusError::Unreachable {
        url: base.to_owned(),
        reason: crate::logging::chain(&e).to_string(),
    })?;
    let Some(every) = watch else {
        let (tables, role) = fetch_page(&client, base, token).await?;
        print!("{}{}", render(&tables, now_ms()), role_text(role));
        return Ok(());
    };
    // Fail fast on a URL that can never work, instead of refreshing an error forever.
    tables_url(base)?;
    loop {
        let page = match fetch_page(&client, base, token).await {
            Ok((tables, role)) => format!("{}{}", render(&tables, now_ms()), role_text(role)),
            Err(e) => format!("error: {}\n", crate::logging::chain(&e)),
        };
        // Home and clear, then the page: one write, so the screen does not flicker between the two.
        print!(
            "\x1b[H\x1b[2J{page}\nrefreshing every {}; Ctrl-C to stop\n",
            humantime::format_duration(every)
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The role line and its newline, or nothing.
fn role_text(role: Option<String>) -> String {
    role.map(|line| format!("{line}\n")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_an_aligned_table_with_relative_times() {
        let now = 1_000_000_000;
        let tables = [
            json!({"table": "faculty", "state": "running", "paused": false, "job_id": "0123abcd",
                   "job_since": now - 192_000, "last_change_at": now - 5_000, "lag": 0, "running_share": 0.25,
                   "next": {"action": "stop", "at": now + 40_000, "waiting_for": null}}),
            json!({"table": "program", "state": "pending", "paused": true, "job_id": null,
                   "last_change_at": now - 1_000, "next": {"action": "start", "at": null,
                   "waiting_for": "concurrency_limit"}}),
            json!({"table": "evil\u{1b}[2J\nname", "state": 7}),
        ];
        let text = render(&tables, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("TABLE  "), "{text}");
        assert!(
            lines[1].starts_with("faculty      running           0123abcd  3m 12s ago     5s ago       0    25.0%"),
            "{text}"
        );
        assert!(lines[1].ends_with("stop in 40s"), "{text}");
        assert!(lines[2].contains("pending (paused)"), "{text}");
        assert!(lines[2].ends_with("start (concurrency limit)"), "{text}");
        assert!(
            lines[3].starts_with("evil[2Jname  -"),
            "control characters dropped: {text}"
        );
        // Every column starts at the same offset on every line.
        let state_at = lines[0].find("STATE").expect("STATE");
        assert!(
            lines[1..].iter().all(|l| l[state_at - 2..state_at].trim().is_empty()),
            "{text}"
        );
    }

    #[test]
    fn schema_drift_shows_a_few_fields_of_each_kind_and_a_drift_pause() {
        let tables = [
            json!({"table": "course", "state": "paused", "drift_paused": true,
                   "schema_drift": {"added": ["a", "b\u{1b}[2J", "c", "d"], "missing": ["gone"], "since": 1}}),
            json!({"table": "room", "state": "idle", "schema_drift": null}),
            json!({"table": "class", "state": "pending", "drift_paused": true,
                   "schema_drift": {"added": [], "missing": [], "unnamed_added": 2, "since": 1}}),
        ];
        let text = render(&tables, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("SCHEMA DRIFT"), "{text}");
        assert!(lines[1].contains("+a +b[2J +c +1 more -gone"), "{text}");
        assert!(lines[2].contains("idle"), "{text}");
        assert!(
            lines[3].contains("pending (drift)") && lines[3].contains("+2 unnamed"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_list_says_so() {
        assert!(render(&[], 0).contains("no table has seen a change"));
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(matches!(tables_url("ftp://x"), Err(StatusError::Url { .. })));
        assert!(matches!(tables_url("localhost:8080"), Err(StatusError::Url { .. })));
        assert_eq!(
            tables_url("http://h:1/prefix/").expect("ok").as_str(),
            "http://h:1/prefix/tables"
        );
    }

    #[tokio::test]
    async fn presents_the_token_and_reports_refusals_and_silence_in_one_line() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 4096];
            let n = socket.read(&mut request).await.expect("read");
            let body = b"{\"error_code\":401,\"message\":\"missing or wrong bearer token\"}";
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.expect("write");
            socket.write_all(body).await.expect("write");
            String::from_utf8_lossy(&request[..n]).to_string()
        });
        let client = crate::flink::http_client(TIMEOUT).expect("client");
        let error = fetch_tables(&client, &format!("http://{addr}"), Some("s3cret"))
            .await
            .expect_err("401");
        let request = server.await.expect("server");
        assert!(
            request.to_ascii_lowercase().contains("authorization: bearer s3cret"),
            "{request}"
        );
        assert_eq!(
            error.to_string(),
            format!("the sidecar at http://{addr}/tables answered 401: missing or wrong bearer token")
        );
        // Nothing listens on the port any more.
        let error = fetch_tables(&client, &format!("http://{addr}"), None)
            .await
            .expect_err("refused");
        assert!(
            error.to_string().starts_with(&format!(
                "cannot reach the sidecar at http://{addr}/tables: connection refused"
            )),
            "{error}"
        );
    }
}
