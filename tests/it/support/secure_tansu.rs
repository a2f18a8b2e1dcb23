//! A real tansu broker that requires SASL SCRAM: the crates.io build with SQLite storage
//! (`scripts/install-tools.sh tansu-secure`), where users can be stored before authentication is required.
//!
//! The broker starts once without `--authentication` (in a temporary folder of its own, `--storage-engine
//! sqlite://tansu.db` relative to it: tansu 0.6 refuses an absolute `sqlite:///` path), `tansu user create` stores
//! each user's SCRAM credentials, and the broker restarts on the same port with `--authentication`: from then on
//! every request but ApiVersions, SaslHandshake and SaslAuthenticate needs a completed SCRAM exchange.
//!
//! TLS is not tansu's: 0.6.0's CLI puts `--cert` and `--key` in one clap group, which makes them mutually
//! exclusive (checked by `tansu_0_6_cannot_take_a_certificate_and_its_key` in `secured_broker`). A test that wants
//! TLS puts [`super::tls_proxy`] in front and has the broker advertise the proxy ([`SecureBroker::advertising`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::free_port;

/// A SCRAM mechanism as `tansu user create --mechanism` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scram {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Scram {
    fn tansu_name(self) -> &'static str {
        match self {
            Scram::Sha256 => "scram256",
            Scram::Sha512 => "scram512",
        }
    }
}

/// A user the broker knows: name, password and the mechanism its credentials were stored for.
#[derive(Debug, Clone, Copy)]
pub struct User {
    /// The user name.
    pub name: &'static str,
    /// The password.
    pub password: &'static str,
    /// The mechanism.
    pub mechanism: Scram,
}

/// The SCRAM-SHA-512 user of [`SecureBroker::start`].
pub const SCRAM_512: User = User {
    name: "cdc-sidecar",
    password: "sidecar-pw-3f9a",
    mechanism: Scram::Sha512,
};

/// The SCRAM-SHA-256 user of [`SecureBroker::start`].
pub const SCRAM_256: User = User {
    name: "cdc-jobs",
    password: "jobs-pw-71c2",
    mechanism: Scram::Sha256,
};

/// The tansu build with SQLite storage: `TANSU_SECURE_BIN`, or where `scripts/install-tools.sh tansu-secure`
/// puts it. `None` (after saying so on stderr) when it is missing on a developer's machine; a missing binary fails
/// the test where the suite must run everything (`REQUIRE_REAL_FLINK`, set by scripts/test.sh, or `CI`).
pub fn secure_tansu_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("TANSU_SECURE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/tansu-libsql/bin/tansu"),
        PathBuf::from,
    );
    if bin.is_file() {
        return Some(bin);
    }
    let message = format!(
        "SKIPPED: secured-broker test: no tansu with SQLite storage at {} (build it with \
         `scripts/install-tools.sh tansu-secure`, about 10 min once per machine, or set TANSU_SECURE_BIN)",
        bin.display()
    );
    assert!(
        std::env::var_os("REQUIRE_REAL_FLINK").is_none() && std::env::var_os("CI").is_none(),
        "{message}"
    );
    eprintln!("{message}");
    None
}

/// A running tansu that requires SCRAM; killed (and its folder removed, unless the test failed) on drop.
pub struct SecureBroker {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl SecureBroker {
    /// A broker knowing [`SCRAM_512`] and [`SCRAM_256`], advertising its own address; `None` when the binary is
    /// missing and the test may skip ([`secure_tansu_bin`]).
    pub fn start() -> Option<SecureBroker> {
        SecureBroker::with_users(&[SCRAM_512, SCRAM_256], None)
    }

    /// A broker knowing [`SCRAM_512`] and [`SCRAM_256`] that tells clients (in metadata) to connect to
    /// `advertised`: a proxy in front of it.
    pub fn advertising(advertised: &str) -> Option<SecureBroker> {
        SecureBroker::with_users(&[SCRAM_512, SCRAM_256], Some(advertised))
    }

    /// A broker knowing `users`, advertising `advertised` (or its own address).
    pub fn with_users(users: &[User], advertised: Option<&str>) -> Option<SecureBroker> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let bin = secure_tansu_bin()?;
        let dir = std::env::temp_dir().join(format!(
            "cdc-secure-tansu-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the broker's folder");
        let mut broker = SecureBroker {
            bin,
            child: None,
            port: 0,
            dir,
        };
        // A port that was free a moment ago may be taken by the time tansu binds it: a few tries.
        for _ in 0..5 {
            broker.port = free_port();
            if broker.spawn(false, advertised) {
                break;
            }
        }
        assert!(
            broker.child.is_some(),
            "tansu did not start; log:\n{}",
            broker.log_text()
        );
        for user in users {
            broker.create_user(user);
        }
        broker.kill();
        assert!(
            broker.spawn(true, advertised),
            "tansu did not restart with --authentication on port {}; log:\n{}",
            broker.port,
            broker.log_text()
        );
        Some(broker)
    }

    /// Starts tansu on `self.port` (with `--authentication` when `authenticate`), its cwd the broker's folder;
    /// true once the port accepts, false if the process exited first.
    fn spawn(&mut self, authenticate: bool, advertised: Option<&str>) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("open the tansu log");
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if authenticate {
            cmd.arg("--authentication");
        }
        let child = cmd
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill();
        false
    }

    /// `tansu user create` against the broker while it runs without `--authentication`.
    fn create_user(&self, user: &User) {
        let mut child = Command::new(&self.bin)
            .current_dir(&self.dir)
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--mechanism", user.mechanism.tansu_name(), user.name, user.password])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} user create: {e}", self.bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for tansu user create") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("tansu user create {} did not finish within 30 s", user.name);
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        assert!(
            status.success(),
            "tansu user create {} ({:?}) failed ({status}): {err}",
            user.name,
            user.mechanism
        );
    }

    /// `127.0.0.1:<port>`, the broker's own address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's folder (its SQLite database and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's log (both runs, stdout and stderr).
    pub fn log(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        self.kill();
        // A failing test keeps the folder (the log names it in the panic message of whoever reads it).
        if std::thread::panicking() {
            eprintln!("secured tansu's folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
