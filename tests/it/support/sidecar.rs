//! The real binary as a subprocess: the one place tests build its command line and environment, spawn
//! `cdc-orchestrator run`, capture its log and kill it on drop.
//!
//! Every test that runs the binary starts from [`command`] (one-shot subcommands such as `check`) or
//! [`Sidecar::builder`] (a long-running `run`), so none of the developer's `CDC_*` or credential variables leak
//! into a test, and a sidecar is never left behind by a failing test.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{LogLines, free_port, sql_env};

/// The binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_cdc-orchestrator");

/// A command of the real binary, run from the repository root, with none of the developer's `CDC_*` or
/// credential variables: a test sets every value it relies on.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    clean_env(&mut cmd);
    cmd
}

/// Runs `cmd` from the repository root without the developer's `CDC_*` or credential variables.
fn clean_env(cmd: &mut Command) {
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let credential = cdc_orchestrator::sql::CREDENTIALS.iter().any(|&(_, v)| v == name);
        if name.starts_with("CDC_") || credential {
            cmd.env_remove(&key);
        }
    }
}

/// How to start a [`Sidecar`]: its environment (applied in order, a later value of a key winning), an open-file
/// limit, and what to wait for before the test goes on.
#[must_use]
pub struct Builder {
    listen: String,
    env: Vec<(String, String)>,
    nofile: Option<(u32, u32)>,
    ready_log: Option<(String, Duration)>,
}

impl Builder {
    /// Sets `key` to `value` in the sidecar's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Builder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets every pair of `env`, in order.
    pub fn envs<K: Into<String>, V: Into<String>>(mut self, env: impl IntoIterator<Item = (K, V)>) -> Builder {
        self.env.extend(env.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Watches the broker at `bootstrap`.
    pub fn bootstrap(self, bootstrap: &str) -> Builder {
        self.env("CDC_KAFKA__BOOTSTRAP", bootstrap)
    }

    /// Watches a loopback address nothing listens on (a port that was just free): no change is ever seen.
    pub fn dead_broker(self) -> Builder {
        let bootstrap = format!("127.0.0.1:{}", free_port());
        self.bootstrap(&bootstrap)
    }

    /// Info logs, a broker nobody answers at, and quick Kafka timings (polls every 200 ms, topics every 500 ms,
    /// requests bounded by 2 s): the base of the tests that attack the HTTP surface or Flink, not Kafka.
    pub fn quick_without_kafka(self) -> Builder {
        self.env("CDC_LOG_LEVEL", "info").dead_broker().envs([
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
            ("CDC_KAFKA__REQUEST_TIMEOUT", "2s"),
        ])
    }

    /// Launches jobs with the dry-run launcher, which needs neither Flink nor credentials.
    pub fn dry_run(self) -> Builder {
        self.env("CDC_FLINK__LAUNCHER", "dry-run")
    }

    /// Launches jobs with the `sql-gateway` launcher through these two REST APIs (the fake Flink, or a hostile
    /// stand-in).
    pub fn flink(self, gateway_url: &str, jobmanager_url: &str) -> Builder {
        self.env("CDC_FLINK__LAUNCHER", "sql-gateway")
            .env("CDC_FLINK__SQL_GATEWAY_URL", gateway_url)
            .env("CDC_FLINK__JOBMANAGER_URL", jobmanager_url)
    }

    /// Sets the SQL templates' credential variables to stand-in values ([`sql_env`]).
    pub fn sql_credentials(self) -> Builder {
        self.envs(sql_env())
    }

    /// Runs the sidecar under this (soft, hard) open-file limit.
    pub fn nofile(mut self, soft: u32, hard: u32) -> Builder {
        self.nofile = Some((soft, hard));
        self
    }

    /// After its HTTP server is up, also waits (up to `timeout`) for a log line containing `needle`, e.g.
    /// `Kafka brokers answer`: changes produced before the watcher's first poll are lag, not new activity.
    pub fn ready_when_logged(mut self, needle: &str, timeout: Duration) -> Builder {
        self.ready_log = Some((needle.to_owned(), timeout));
        self
    }

    /// Spawns `cdc-orchestrator run` and waits until its HTTP server accepts connections (and the log line of
    /// [`Builder::ready_when_logged`], if any), failing the test with the log if it exits or takes over 15 s.
    pub fn start(self) -> Sidecar {
        let mut cmd = match self.nofile {
            Some((soft, hard)) => {
                let mut cmd = Command::new("sh");
                let script = format!("ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" run");
                cmd.args(["-c", &script, BIN]);
                clean_env(&mut cmd);
                cmd
            }
            None => command(&["run"]),
        };
        cmd.env("CDC_SERVER__LISTEN", &self.listen);
        cmd.envs(self.env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))));
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cdc-orchestrator run");
        let log = LogLines::capture(&mut child);
        let mut sidecar = Sidecar {
            child: Some(child),
            addr: self.listen,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&sidecar.addr).is_err() {
            let exited = sidecar.exited();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "sidecar HTTP never came up ({exited:?}); log:\n{}",
                sidecar.log.text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        if let Some((needle, timeout)) = &self.ready_log {
            sidecar.wait_for_log(needle, *timeout);
        }
        sidecar
    }
}

/// A running `cdc-orchestrator run`; killed on drop. Its stderr lines are collected as they come.
pub struct Sidecar {
    child: Option<Child>,
    addr: String,
    /// Its log so far.
    pub log: LogLines,
}

impl Sidecar {
    /// A sidecar listening on a free loopback port, with nothing else set yet.
    pub fn builder() -> Builder {
        Builder {
            listen: format!("127.0.0.1:{}", free_port()),
            env: Vec::new(),
            nofile: None,
            ready_log: None,
        }
    }

    /// `127.0.0.1:<port>`, where its HTTP server listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log so far, one line per line.
    pub fn log_text(&self) -> String {
        self.log.text()
    }

    /// How many log lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    /// Polls `done` until it holds, failing the test with `what` and the log after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "not within {timeout:?}: {what}; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        self.wait_for(&format!("log line {needle:?}"), timeout, || self.log.count(needle) > 0);
    }

    /// The process id.
    pub fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// Sends the signal `name` (`TERM`, `HUP`...) with `kill`, which keeps the tests free of libc bindings.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the process to exit: its status, or `None` if it still runs.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit: how long it took and the status.
    pub fn terminate(&mut self, limit: Duration) -> (Duration, ExitStatus) {
        self.signal("TERM");
        let sent = Instant::now();
        let status = self.exit_within(limit);
        let status = status.unwrap_or_else(|| panic!("no exit within {limit:?} of SIGTERM; log:\n{}", self.log.text()));
        (sent.elapsed(), status)
    }

    /// The peak resident set of the process, from `/proc/<pid>/status` (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    /// `GET path` on a fresh connection: the status code (0 if the answer is not HTTP) and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the sidecar");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
