//! A scratch Postgres for tests: `initdb` in a temporary folder, started on a free loopback port, stopped on drop.
//! Run as user postgres when the test runs as root (initdb refuses root). Used by `scaffold` (the catalog client,
//! SCRAM, TLS) and `flink_local` (the JDBC sink's database).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The newest `/usr/lib/postgresql/*/bin` with an `initdb`, if PostgreSQL is installed.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    bins.sort();
    bins.pop()
}

/// A program's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails the test, with the program's output, unless it succeeded.
pub fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs a Postgres tool as user postgres when the test runs as root (initdb refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0");
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A running scratch Postgres; user `postgres`.
pub struct ScratchPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its loopback port.
    pub port: u16,
    password: Option<String>,
}

impl ScratchPostgres {
    /// Starts one. With `password`, connections over TCP authenticate with it (SCRAM-SHA-256); without, they are
    /// trusted. With `tls`, the server also offers TLS with a certificate for 127.0.0.1 signed by a fresh CA,
    /// written to `<dir>/ca.pem`.
    pub fn start(password: Option<&str>, tls: bool) -> ScratchPostgres {
        let bin =
            postgres_bin().expect("PostgreSQL's initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let dir = tempfile::tempdir().expect("pg dir");
        let mut ssl = String::new();
        if tls {
            let ca_key = rcgen::KeyPair::generate().expect("CA key");
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
            let leaf_key = rcgen::KeyPair::generate().expect("server key");
            let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
                .expect("server params")
                .signed_by(&leaf_key, &ca)
                .expect("server certificate");
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca.pem");
            std::fs::write(dir.path().join("server.crt"), leaf.pem()).expect("server.crt");
            let key = dir.path().join("server.key");
            std::fs::write(&key, leaf_key.serialize_pem()).expect("server.key");
            // Postgres refuses a key others can read.
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod key");
            ssl = format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.path().display()
            );
        }
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args(["-U", "postgres"]);
        match password {
            Some(password) => {
                let pwfile = dir.path().join("pw");
                std::fs::write(&pwfile, password).expect("pwfile");
                initdb
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile"])
                    .arg(pwfile);
            }
            None => {
                initdb.arg("--auth=trust");
            }
        }
        initdb.args(["-E", "UTF8", "--locale=C"]);
        // The scratch folder must be the postgres user's when the test runs as root.
        check(
            "chown",
            &Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .output()
                .expect("chown"),
        );
        check("initdb", &initdb.output().expect("initdb"));
        let port = super::free_port();
        check(
            "pg_ctl start",
            &as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .arg("-l")
                .arg(dir.path().join("postgres.log"))
                .arg("-o")
                .arg(format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}{ssl}",
                    dir.path().display()
                ))
                .args(["-w", "start"])
                .output()
                .expect("pg_ctl"),
        );
        ScratchPostgres {
            dir,
            bin,
            port,
            password: password.map(str::to_owned),
        }
    }

    /// Its folder (`ca.pem` is there with TLS).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `psql` on `database` over TCP with `args` (`-c SQL`, `-f FILE`) and returns the rows, `|`-separated,
    /// one per line.
    pub fn psql(&self, database: &str, args: &[&str]) -> String {
        let mut psql = Command::new("psql");
        psql.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", database])
        .args(args);
        if let Some(password) = &self.password {
            psql.env("PGPASSWORD", password);
        }
        let out = psql.output().expect("psql");
        check(&format!("psql {args:?}"), &out);
        text(&out.stdout)
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
