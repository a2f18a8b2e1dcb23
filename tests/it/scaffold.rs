//! `cdc-orchestrator scaffold` against a real Postgres holding the university schema (compose/postgres/init.sql,
//! what scripts/e2e-local.sh loads), started on a free loopback port with password (SCRAM) authentication so that
//! the password's path is the real one: the generated templates declare what the shipped ones declare (and are
//! them, byte for byte), `--check` passes on them and names the table and column after an ALTER TABLE, unmappable
//! types and a keyless table are refused by name, and the password never appears in the output.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cdc_orchestrator::scaffold::declared;

use crate::support;

const PASSWORD: &str = "scaffold-s3cret-pw";
const TABLES: [&str; 12] = [
    "class",
    "course",
    "faculty",
    "lecturer",
    "payment",
    "program",
    "registration",
    "room",
    "student_detail",
    "student_enrollment",
    "student_fee",
    "students",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn postgres_bin() -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (apt-get install postgresql): /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    bins.sort();
    bins.pop().expect("PostgreSQL's initdb under /usr/lib/postgresql/*/bin")
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

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A scratch Postgres with database `sourcedb` holding the university schema; stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        Self::start_with(false)
    }

    /// With `tls`, the server offers TLS with a certificate for 127.0.0.1 signed by a fresh CA, `<dir>/ca.pem`.
    fn start_with(tls: bool) -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("pg dir");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
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
        check(
            "chown",
            &Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .output()
                .expect("chown"),
        );
        check(
            "initdb",
            &as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                ])
                .args(["--locale=C", "--pwfile"])
                .arg(&pwfile)
                .output()
                .expect("initdb"),
        );
        let port = support::free_port();
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
        let pg = Postgres { dir, bin, port };
        pg.psql("postgres", &["-c", "CREATE DATABASE sourcedb"]);
        let init = repo().join("compose/postgres/init.sql");
        pg.psql("sourcedb", &["-f", init.to_str().expect("utf-8 path")]);
        pg
    }

    fn psql(&self, database: &str, args: &[&str]) -> String {
        let out = Command::new("psql")
            .args([
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
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        check(&format!("psql {args:?}"), &out);
        text(&out.stdout)
    }

    /// The URL without the password (it comes from PGPASSWORD).
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/sourcedb", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Runs `scaffold` from the repository's folder (the connector's default path is relative to it).
fn scaffold(args: &[&str], password_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdc-orchestrator"));
    cmd.current_dir(repo())
        .arg("scaffold")
        .args(args)
        .env_remove("PGPASSWORD");
    if let Some(password) = password_env {
        cmd.env("PGPASSWORD", password);
    }
    let out = cmd.output().expect("run cdc-orchestrator scaffold");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
    out
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn generated_tables_are_the_shipped_ones_and_check_passes_on_them() {
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().expect("out dir");
    let out_dir = scratch.path().join("tables");
    let out = scaffold(
        &["--postgres", &pg.url(), "--out", out_dir.to_str().expect("utf-8")],
        Some(PASSWORD),
    );
    check("scaffold", &out);
    for table in TABLES {
        let shipped = std::fs::read_to_string(repo().join(format!("flink-sql/tables/{table}.sql"))).expect("shipped");
        let generated = std::fs::read_to_string(out_dir.join(format!("{table}.sql"))).expect("generated");
        // What they declare: columns, types, keys and conversions.
        assert_eq!(
            declared::parse(&generated).expect("generated parses"),
            declared::parse(&shipped).expect("shipped parses"),
            "{table}"
        );
        // And the shipped files are the command's output, marked as generated.
        assert_eq!(
            generated, shipped,
            "{table}: flink-sql/tables/{table}.sql is not what scaffold generates"
        );
        assert!(
            shipped.starts_with("-- Generated by `cdc-orchestrator scaffold`"),
            "{table}"
        );
        let jdbc = std::fs::read_to_string(scratch.path().join(format!("jdbc-sink/{table}.sql"))).expect("jdbc");
        assert!(jdbc.contains(&format!("CREATE TABLE \"{table}\" (")), "{jdbc}");
        assert!(jdbc.contains("PRIMARY KEY ("), "{jdbc}");
    }
    // The JDBC sink's tables are what the sink database accepts.
    pg.psql("postgres", &["-c", "CREATE DATABASE sinkdb"]);
    for table in TABLES {
        let jdbc = scratch.path().join(format!("jdbc-sink/{table}.sql"));
        pg.psql("sinkdb", &["-f", jdbc.to_str().expect("utf-8")]);
    }
    let ok = scaffold(&["--postgres", &pg.url(), "--check"], Some(PASSWORD));
    check("scaffold --check on flink-sql/tables", &ok);
    assert!(text(&ok.stdout).contains("match the catalog"), "{}", text(&ok.stdout));
}

#[test]
fn check_names_the_table_and_column_of_an_added_or_changed_column() {
    let pg = Postgres::start();
    pg.psql("sourcedb", &["-c", "ALTER TABLE course ADD COLUMN nickname TEXT"]);
    pg.psql(
        "sourcedb",
        &["-c", "ALTER TABLE room ALTER COLUMN capacity TYPE BIGINT"],
    );
    let out = scaffold(&["--postgres", &pg.url(), "--check"], Some(PASSWORD));
    assert_eq!(code(&out), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "table `course`, column `nickname`: in the catalog (source type STRING) but not in the file's source"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("table `course`, column `nickname`: not written by the INSERT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("table `room`, column `capacity`: source type INT in the file, BIGINT from the catalog"),
        "{stdout}"
    );
    assert!(!stdout.contains("`faculty`"), "only the changed tables: {stdout}");
    assert!(text(&out.stderr).contains("difference(s)"), "{}", text(&out.stderr));
}

#[test]
fn unmappable_columns_and_a_keyless_table_are_refused_by_name() {
    let pg = Postgres::start();
    pg.psql(
        "sourcedb",
        &[
            "-c",
            "CREATE TABLE places (id INT PRIMARY KEY, spot POINT, days DATE[], amount NUMERIC(10,2)); \
             CREATE TABLE audit_log (at TIMESTAMP, what TEXT)",
        ],
    );
    let out = scaffold(
        &[
            "--postgres",
            &pg.url(),
            "--tables",
            "places,audit_log,nowhere",
            "--out",
            "/nonexistent/never-written",
        ],
        Some(PASSWORD),
    );
    assert_eq!(code(&out), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("table `places`, column `spot` (point): a geometric type"),
        "{stderr}"
    );
    assert!(
        stderr.contains("table `places`, column `days` (date[]): an array of date"),
        "{stderr}"
    );
    assert!(!stderr.contains("`amount`"), "{stderr}");
    assert!(stderr.contains("table `audit_log`: has no primary key"), "{stderr}");
    assert!(
        stderr.contains("table `nowhere`: no such table in schema public"),
        "{stderr}"
    );
}

#[test]
fn every_common_type_maps_under_the_shipped_connector_settings() {
    let pg = Postgres::start();
    pg.psql(
        "sourcedb",
        &[
            "-c",
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE DOMAIN percent AS NUMERIC(5,2); \
             CREATE TABLE kinds (k UUID PRIMARY KEY, n NUMERIC, n2 NUMERIC(10,3), s SMALLINT, b BIGINT, r REAL, \
               d DOUBLE PRECISION, f BOOLEAN, c CHAR(3), v VARCHAR, t TEXT, j JSON, jb JSONB, by BYTEA, \
               ts TIMESTAMP(6), tsz TIMESTAMPTZ, dt DATE, tm TIME, tmz TIMETZ, iv INTERVAL, arr INT[], \
               tags TEXT[], m mood, p percent)",
        ],
    );
    let scratch = tempfile::tempdir().expect("out dir");
    let out_dir = scratch.path().join("tables");
    let out = scaffold(
        &[
            "--postgres",
            &pg.url(),
            "--tables",
            "kinds",
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
        Some(PASSWORD),
    );
    check("scaffold kinds", &out);
    let generated = std::fs::read_to_string(out_dir.join("kinds.sql")).expect("kinds.sql");
    let d = declared::parse(&generated).expect("parses");
    let source: Vec<(&str, &str)> = d.source.iter().map(|(c, t)| (c.as_str(), t.as_str())).collect();
    assert_eq!(
        source,
        [
            ("k", "STRING"),
            ("n", "STRING"),
            ("n2", "DECIMAL(10,3)"),
            ("s", "SMALLINT"),
            ("b", "BIGINT"),
            ("r", "FLOAT"),
            ("d", "DOUBLE"),
            ("f", "BOOLEAN"),
            ("c", "STRING"),
            ("v", "STRING"),
            ("t", "STRING"),
            ("j", "STRING"),
            ("jb", "STRING"),
            ("by", "BYTES"),
            ("ts", "BIGINT"),
            ("tsz", "STRING"),
            ("dt", "INT"),
            ("tm", "INT"),
            ("tmz", "STRING"),
            ("iv", "BIGINT"),
            ("arr", "ARRAY<INT>"),
            ("tags", "ARRAY<STRING>"),
            ("m", "STRING"),
            ("p", "DECIMAL(5,2)"),
        ]
    );
    assert_eq!(d.sink_key, ["k"]);
    let sink = |c: &str| {
        d.sink
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, t)| t.clone())
            .expect("column")
    };
    assert_eq!(sink("k"), "STRING NOT NULL");
    assert_eq!(sink("ts"), "TIMESTAMP(3)");
    assert_eq!(sink("tsz"), "TIMESTAMP_LTZ(6)");
    assert_eq!(sink("dt"), "DATE");
    assert_eq!(sink("tm"), "TIME(3)");
    // The JDBC sink's table is accepted by Postgres (the enum is text there: the sink database has no such type).
    pg.psql("postgres", &["-c", "CREATE DATABASE sinkdb"]);
    let jdbc = scratch.path().join("jdbc-sink/kinds.sql");
    pg.psql("sinkdb", &["-f", jdbc.to_str().expect("utf-8")]);
}

#[test]
fn the_password_comes_from_the_url_or_pgpassword_and_is_never_printed() {
    let pg = Postgres::start();
    let in_url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/sourcedb", pg.port);
    // In the URL (PGPASSWORD, wrong, is not used: the URL's password wins).
    let out = scaffold(&["--postgres", &in_url, "--check"], Some("not-the-password"));
    check("password in the URL", &out);
    // A wrong password: the error names the server and the user, not the password.
    let wrong = format!("postgres://postgres:{PASSWORD}x@127.0.0.1:{}/sourcedb", pg.port);
    let out = scaffold(&["--postgres", &wrong, "--check"], None);
    assert_eq!(code(&out), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot connect to postgres://postgres@127.0.0.1:{}/sourcedb",
            pg.port
        )),
        "{stderr}"
    );
    assert!(stderr.contains("password authentication failed"), "{stderr}");
    // As a URL parameter too.
    let param = format!(
        "postgres://postgres@127.0.0.1:{}/sourcedb?password={PASSWORD}x",
        pg.port
    );
    let out = scaffold(&["--postgres", &param, "--check"], None);
    assert_eq!(code(&out), Some(1));
    // No password at all.
    let out = scaffold(&["--postgres", &pg.url(), "--check"], None);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts connections (the kernel's backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/sourcedb");
    let out = scaffold(&["--postgres", &url, "--check", "--timeout", "1s"], Some(PASSWORD));
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot connect to") || stderr.contains("no answer within"),
        "{stderr}"
    );
    drop(silent);
}

#[test]
fn tls_is_used_and_the_server_certificate_verified() {
    let pg = Postgres::start_with(true);
    let ca = pg.dir.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let url = |mode: &str| format!("postgres://postgres@127.0.0.1:{}/sourcedb?sslmode={mode}", pg.port);
    // Required, and verified against the CA given.
    let out = scaffold(
        &["--postgres", &url("require"), "--check", "--ca-file", ca],
        Some(PASSWORD),
    );
    check("sslmode=require with the CA", &out);
    // Without the CA the handshake happens and the certificate is refused, required or merely offered (prefer,
    // the default): the server's answer is never read over an unverified channel.
    for mode in ["require", "prefer"] {
        let out = scaffold(&["--postgres", &url(mode), "--check"], Some(PASSWORD));
        assert_eq!(code(&out), Some(1), "{mode}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("certificate"), "{mode}: {stderr}");
    }
    // Disabled: plain TCP, no certificate asked.
    let out = scaffold(&["--postgres", &url("disable"), "--check"], Some(PASSWORD));
    check("sslmode=disable", &out);
}
