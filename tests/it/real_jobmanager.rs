//! The JobManager client and the launcher's stop/adopt/list paths against a real Flink JobManager (and, for the
//! savepoint, a TaskManager) from the PyPI distribution `apache-flink-libraries`, which
//! `scripts/install-tools.sh` installs into `.tools/flink` (or set `FLINK_DIST` to a `pyflink` folder). Needs Java
//! 17. The SQL Gateway is not in that distribution, so the job is submitted with Flink's own CLI, pinned id and
//! name set exactly as the launcher sets them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cdc_orchestrator::flink::jobmanager::JobManager;
use cdc_orchestrator::flink::{
    Backoff, FlinkError, LaunchSettings, Launcher, SqlGatewayLauncher, Stopped, http_client,
};
use cdc_orchestrator::model::{JobId, JobState, job_id_for};
use tokio::process::{Child, Command};

use crate::support;

/// What Flink's own start scripts pass to Java 17 (its `env.java.opts.all` default).
const JAVA_OPENS: &[&str] = &[
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
];

fn flink_dist() -> PathBuf {
    let dist = std::env::var_os("FLINK_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/flink/pyflink"));
    assert!(
        dist.join("lib").is_dir(),
        "no Flink distribution at {}: run `scripts/install-tools.sh` (pip install --target .tools/flink \
         apache-flink-libraries) or set FLINK_DIST to a pyflink folder",
        dist.display()
    );
    dist
}

/// A JobManager (and optionally a TaskManager) in a scratch folder; both killed on drop.
struct RealFlink {
    dist: PathBuf,
    dir: tempfile::TempDir,
    rest_url: String,
    processes: Vec<Child>,
}

impl RealFlink {
    async fn start() -> RealFlink {
        let dist = flink_dist();
        let dir = tempfile::tempdir().expect("tempdir");
        let rest_port = support::free_port();
        let rpc_port = support::free_port();
        std::fs::create_dir_all(dir.path().join("conf")).expect("conf dir");
        let config = format!(
            "jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {rpc_port}\njobmanager.bind-host: 127.0.0.1\n\
             jobmanager.memory.process.size: 1024m\nrest.address: 127.0.0.1\nrest.bind-address: 127.0.0.1\n\
             rest.port: {rest_port}\nblob.server.port: \"0\"\ntaskmanager.numberOfTaskSlots: 2\n\
             taskmanager.bind-host: 127.0.0.1\ntaskmanager.host: 127.0.0.1\ntaskmanager.memory.process.size: 1024m\n\
             parallelism.default: 1\n"
        );
        // Flink 1.19+ reads config.yaml, older releases flink-conf.yaml; flat `key: value` lines suit both.
        for file in ["config.yaml", "flink-conf.yaml"] {
            std::fs::write(dir.path().join("conf").join(file), &config).expect("write config");
        }
        let mut flink = RealFlink {
            dist,
            rest_url: format!("http://127.0.0.1:{rest_port}"),
            dir,
            processes: Vec::new(),
        };
        let jm = flink.java(
            &["-Xmx512m", "-Xms256m"],
            "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
            &[],
            "jobmanager",
        );
        flink.processes.push(jm);
        let client = JobManager::new(http_client(Duration::from_secs(2)).expect("http"), &flink.rest_url).expect("jm");
        for _ in 0..240 {
            if client.overview().await.is_ok() {
                return flink;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "the JobManager did not answer within 60 s; see {}",
            flink.log("jobmanager").display()
        );
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.out"))
    }

    fn java(&self, jvm: &[&str], class: &str, args: &[String], log: &str) -> Child {
        let out = std::fs::File::create(self.log(log)).expect("log file");
        let classpath = format!("{}/lib/*", self.dist.display());
        Command::new("java")
            .args(JAVA_OPENS)
            .args(jvm)
            .arg(format!(
                "-Dlog.file={}",
                self.dir.path().join(format!("{log}.log")).display()
            ))
            .args(["-cp", &classpath, class, "--configDir"])
            .arg(self.dir.path().join("conf"))
            .args(args)
            .env("FLINK_CONF_DIR", self.dir.path().join("conf"))
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("run java (Java 17 is needed)")
    }

    /// Starts a TaskManager with the memory settings Flink's own scripts compute.
    async fn start_taskmanager(&mut self) {
        let classpath = format!("{0}/bin/bash-java-utils.jar:{0}/lib/*", self.dist.display());
        let out = Command::new("java")
            .args([
                "-cp",
                &classpath,
                "org.apache.flink.runtime.util.bash.BashJavaUtils",
                "GET_TM_RESOURCE_PARAMS",
            ])
            .arg("--configDir")
            .arg(self.dir.path().join("conf"))
            .output()
            .await
            .expect("run BashJavaUtils");
        let text = String::from_utf8_lossy(&out.stdout);
        let results: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("BASH_JAVA_UTILS_EXEC_RESULT:"))
            .collect();
        assert_eq!(results.len(), 2, "BashJavaUtils: {text}");
        let jvm: Vec<&str> = results[0].split_whitespace().collect();
        let dynamic: Vec<String> = results[1].split_whitespace().map(str::to_owned).collect();
        let tm = self.java(
            &jvm,
            "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
            &dynamic,
            "taskmanager",
        );
        self.processes.push(tm);
    }

    /// Builds tests/data/flink-job into a jar.
    async fn build_job(&self) -> PathBuf {
        let classes = self.dir.path().join("classes");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flink-job/IdleJob.java");
        let classpath = format!("{}/lib/*", self.dist.display());
        let out = Command::new("javac")
            .args(["-cp", &classpath, "-d"])
            .arg(&classes)
            .arg(&source)
            .output()
            .await
            .expect("run javac");
        assert!(out.status.success(), "javac: {}", String::from_utf8_lossy(&out.stderr));
        let jar = self.dir.path().join("idle-job.jar");
        let out = Command::new("jar")
            .args(["cfe"])
            .arg(&jar)
            .arg("IdleJob")
            .arg("-C")
            .arg(&classes)
            .arg(".")
            .output()
            .await
            .expect("run jar");
        assert!(out.status.success(), "jar: {}", String::from_utf8_lossy(&out.stderr));
        jar
    }

    /// Submits the job detached, with the name and pinned id the launcher would set.
    async fn submit(&self, jar: &Path, table: &str, job_id: &JobId) {
        let classpath = format!("{}/lib/*", self.dist.display());
        let out = Command::new("java")
            .args(JAVA_OPENS)
            .args([
                "-Xmx256m",
                "-cp",
                &classpath,
                "org.apache.flink.client.cli.CliFrontend",
                "run",
                "-d",
            ])
            .arg(format!("-Dpipeline.name=cdc-{table}"))
            .arg(format!("-D$internal.pipeline.job-id={job_id}"))
            .arg("-Drest.address=127.0.0.1")
            .arg(jar)
            .env("FLINK_CONF_DIR", self.dir.path().join("conf"))
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run the Flink CLI");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(job_id.as_str()),
            "flink run: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn launcher(flink: &RealFlink, stop_timeout: Duration) -> SqlGatewayLauncher {
    // No SQL Gateway in this distribution: a closed port. Adoption must not need it.
    let gateway = format!("http://127.0.0.1:{}", support::free_port());
    let settings = LaunchSettings {
        savepoint_dir: format!("file://{}/savepoints", flink.dir.path().display()),
        checkpoint_interval: Duration::from_secs(10),
        start_timeout: Duration::from_secs(60),
        stop_timeout,
        poll: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
    };
    SqlGatewayLauncher::new(&gateway, &flink.rest_url, Duration::from_secs(10), settings).expect("launcher")
}

async fn wait_for_tasks(rest_url: &str, job_id: &JobId) {
    // Task metrics exist only once the task runs on a TaskManager.
    for _ in 0..240 {
        if let Ok(Some(vertices)) = support::source_progress::job_vertices(rest_url, job_id).await
            && let Some(vertex) = vertices.first()
            && support::source_progress::vertex_metrics(rest_url, job_id, &vertex.id, &[])
                .await
                .is_ok_and(|m| !m.is_empty())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the job's task did not start within 60 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_launcher_lists_adopts_stops_and_cancels_real_flink_jobs() {
    let mut flink = RealFlink::start().await;
    let jar = flink.build_job().await;
    let faculty = job_id_for("faculty", 1);
    let program = job_id_for("program", 1);
    flink.submit(&jar, "faculty", &faculty).await;
    flink.submit(&jar, "program", &program).await;
    let l = launcher(&flink, Duration::from_secs(5));
    let jm = l.jobmanager();

    // Real wire format: overview rows, job detail, 404 bodies.
    let jobs = l.list_jobs().await.expect("list");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.state == JobState::Running), "{jobs:?}");
    let detail = jm.job(&faculty).await.expect("detail").expect("known job");
    assert_eq!(detail.name, "cdc-faculty");
    let vertices = support::source_progress::job_vertices(&flink.rest_url, &faculty)
        .await
        .expect("vertices")
        .expect("known job");
    assert!(vertices[0].name.starts_with("Source: "), "{vertices:?}");
    let unknown = JobId::parse(&"0".repeat(32)).expect("id");
    assert_eq!(jm.job(&unknown).await.expect("404 is None"), None);
    assert_eq!(jm.job_status(&unknown).await.expect("not found is None"), None);
    assert!(!jm.cancel(&unknown).await.expect("404 is false"));
    match jm.savepoint_status(&faculty, &"f".repeat(32)).await {
        Err(FlinkError::Api {
            status: 404,
            root_cause,
            ..
        }) => {
            assert!(root_cause.contains("There is no savepoint operation"), "{root_cause}")
        }
        other => panic!("expected a 404 API error, got {other:?}"),
    }

    // A restarted sidecar adopts; a start of any generation adopts without submitting (no gateway here).
    let jobs = l.list_jobs().await.expect("list");
    let live_faculty = jobs.iter().find(|j| j.table == "faculty" && j.state.is_alive());
    assert_eq!(live_faculty.map(|j| &j.job_id), Some(&faculty));
    let started = l
        .start("faculty", 42, &["INSERT INTO x SELECT 1".to_owned()])
        .await
        .expect("adopt");
    assert!(started.adopted);
    assert_eq!(started.job_id, faculty);

    // No TaskManager yet: the savepoint cannot be taken, Flink says why, and the job is cancelled instead.
    match l.stop("program", &program).await.expect("stop") {
        Stopped::Cancelled { reason } => {
            assert!(reason.starts_with("savepoint failed: "), "{reason}");
            assert!(reason.contains("CheckpointException"), "{reason}");
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    assert_eq!(
        jm.job_status(&program).await.expect("status").expect("known"),
        JobState::Canceled
    );
    // Cancelling an ended job again is harmless (Flink answers 202 for a cancelled job, 409 for a finished one).
    jm.cancel(&program).await.expect("cancel again");

    // With a TaskManager the savepoint completes and the job finishes.
    flink.start_taskmanager().await;
    wait_for_tasks(&flink.rest_url, &faculty).await;
    let long_stop = launcher(&flink, Duration::from_secs(60));
    match long_stop.stop("faculty", &faculty).await.expect("stop") {
        Stopped::Savepoint { location } => {
            let path = location.trim_start_matches("file:");
            assert!(
                path.starts_with(&format!("{}/savepoints/savepoint-", flink.dir.path().display())),
                "{location}"
            );
            assert!(
                Path::new(path).join("_metadata").is_file(),
                "savepoint written to {path}"
            );
        }
        other => panic!("expected a savepoint, got {other:?}"),
    }
    // The dispatcher's answer: the cached `GET /jobs/<id>` may say RUNNING for up to `web.refresh-interval`.
    assert_eq!(
        jm.job_status(&faculty).await.expect("status").expect("known"),
        JobState::Finished
    );
    assert_eq!(
        l.stop("faculty", &faculty).await.expect("stop again"),
        Stopped::AlreadyStopped {
            state: Some(JobState::Finished)
        }
    );
    assert!(
        !jm.cancel(&faculty).await.expect("409 is false"),
        "a finished job cannot be cancelled"
    );
    let jobs = l.list_jobs().await.expect("list");
    assert!(jobs.iter().all(|j| !j.state.is_alive()), "{jobs:?}");
    // Newest first: each table's latest job comes first.
    let latest = |table: &str| jobs.iter().find(|j| j.table == table).map(|j| j.state.clone());
    assert_eq!(latest("faculty"), Some(JobState::Finished));
    assert_eq!(latest("program"), Some(JobState::Canceled));
}
