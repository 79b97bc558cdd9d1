//! Shared helpers of the backend integration tests: where the real services
//! are (started by `scripts/services.sh`), unique names per test, and the
//! rule for missing services: the test fails, naming the command that starts them.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

fn service(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        // A missing service fails the test instead of skipping it, so a run
        // without the services can never look green.
        _ => panic!(
            "{var} is not set: run the tests with `make test` (or `eval \"$(bash scripts/services.sh up)\"` first), which starts {what}"
        ),
    }
}

/// `DATABASE_URL` of the test PostgreSQL.
pub fn postgres_url() -> String {
    service("DATABASE_URL", "PostgreSQL")
}

/// `KAFKA_BOOTSTRAP` of the test broker.
pub fn kafka_bootstrap() -> String {
    service("KAFKA_BOOTSTRAP", "the Kafka broker")
}

/// CA of the test PostgreSQL's server certificate (`PG_TLS_CA`).
pub fn pg_tls_ca() -> String {
    service("PG_TLS_CA", "PostgreSQL with TLS")
}

/// Both services.
pub fn services() -> (String, String) {
    (postgres_url(), kafka_bootstrap())
}

/// A name no other test (or earlier run against the same services) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// The repository root (tests run in `workers/`).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_default()
}

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Offset, TopicPartitionList};
use taxistream_crds::pipeline::{Dataset, GroupBy, PgSslMode};
use taxistream_crds::sink::Consistency;
use taxistream_crds::worker_config::{
    AggregationConfig, CassandraConfig, KafkaConfig, PostgresConfig, SourceConfig, TopicsConfig,
    WorkerConfig,
};
use taxistream_worker::io::kafka::KafkaSettings;

/// Partitions of the test trips topic.
pub const TRIP_PARTITIONS: i32 = 3;

/// One isolated pipeline on the shared services: its own schema, topics and
/// consumer groups, and a rendered worker configuration file.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config: WorkerConfig,
    pub bootstrap: String,
    pub database_url: String,
}

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Consumed {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Pipeline {
    /// Creates the topics and writes the configuration.
    pub async fn new(
        database_url: &str,
        bootstrap: &str,
        window_seconds: u64,
        allowed_lateness_seconds: u64,
    ) -> Pipeline {
        Self::with_partitions(
            database_url,
            bootstrap,
            window_seconds,
            allowed_lateness_seconds,
            TRIP_PARTITIONS,
        )
        .await
    }

    /// As [`Pipeline::new`], with `trip_partitions` partitions of the trips topic.
    pub async fn with_partitions(
        database_url: &str,
        bootstrap: &str,
        window_seconds: u64,
        allowed_lateness_seconds: u64,
        trip_partitions: i32,
    ) -> Pipeline {
        let name = unique("p");
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("pg-url");
        std::fs::write(&url_file, format!("{database_url}\n")).unwrap();
        let topics = TopicsConfig {
            trips: format!("{name}.trips"),
            aggregates: format!("{name}.aggregates"),
            dead_letters: format!("{name}.dlq"),
        };
        let kafka = KafkaSettings::plain(bootstrap);
        kafka
            .ensure_topics(&[&topics.trips], trip_partitions, 1)
            .await
            .unwrap();
        kafka
            .ensure_topics(&[&topics.aggregates, &topics.dead_letters], 1, 1)
            .await
            .unwrap();
        let config = WorkerConfig {
            pipeline: format!("test/{name}"),
            source: SourceConfig {
                dataset: Dataset::Yellow,
                inputs: vec![],
                open_data: None,
                replay_speedup: None,
            },
            postgres: PostgresConfig {
                url_file: url_file.display().to_string(),
                schema: name.clone(),
                table: "trips".into(),
                ssl_mode: PgSslMode::Disable,
                ca_file: None,
            },
            kafka: KafkaConfig {
                bootstrap_servers: bootstrap.to_owned(),
                tls: None,
                sasl: None,
            },
            topics,
            aggregation: AggregationConfig {
                window_seconds,
                slide_seconds: window_seconds,
                allowed_lateness_seconds,
                group_by: GroupBy::PickupZone,
            },
            cassandra: CassandraConfig {
                contact_points: vec!["127.0.0.1:9042".into()],
                local_datacenter: "datacenter1".into(),
                keyspace: "taxistream".into(),
                table: name.clone(),
                ttl_seconds: 0,
                consistency: Consistency::LocalOne,
                tls: None,
                username_file: None,
                password_file: None,
            },
            metrics_port: 0,
        };
        let config_path = dir.path().join("worker.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
        Pipeline {
            dir,
            config_path,
            config,
            bootstrap: bootstrap.to_owned(),
            database_url: database_url.to_owned(),
        }
    }

    /// `taxistream-worker <stage> --config … <args>`, started in the background.
    pub fn spawn(&self, stage: &str, args: &[&str]) -> Child {
        self.spawn_with_env(stage, args, &[])
    }

    /// As [`Pipeline::spawn`], with extra environment variables.
    pub fn spawn_with_env(&self, stage: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_taxistream-worker"))
            .envs(env.iter().copied())
            .arg(stage)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("RUST_LOG", "info")
            // tansu 0.6 returns nothing when a fetch starts inside a record
            // batch (Apache Kafka returns the batch and the client skips
            // ahead), which is exactly what resuming from a checkpoint does.
            // One record per batch keeps every offset a batch boundary.
            .env("TAXISTREAM_KAFKA_PROPERTIES", "batch.num.messages=1")
            .env_remove("TAXISTREAM_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.log_path(stage)).unwrap(),
            ))
            .spawn()
            .unwrap()
    }

    pub fn log_path(&self, stage: &str) -> PathBuf {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        self.dir.path().join(format!("{n:02}-{stage}.log"))
    }

    /// Runs a stage to completion (`--exit-when-idle`), failing the test
    /// with its log when it fails.
    pub fn run(&self, stage: &str, args: &[&str]) {
        self.run_with_env(stage, args, &[]);
    }

    /// As [`Pipeline::run`], with extra environment variables.
    pub fn run_with_env(&self, stage: &str, args: &[&str], env: &[(&str, &str)]) {
        let mut all = vec!["--exit-when-idle"];
        all.extend_from_slice(args);
        let mut child = self.spawn_with_env(stage, &all, env);
        let status = wait_timeout(&mut child, Duration::from_secs(180));
        assert!(
            status.is_some_and(|s| s.success()),
            "{stage} failed ({status:?}); logs:\n{}",
            self.logs()
        );
    }

    /// Every stage log of this pipeline, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("== {}\n", f.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Every message of `topic` (all partitions, from the beginning), read
    /// until nothing new arrives for `quiet`.
    pub fn read_topic(&self, topic: &str, partitions: i32, quiet: Duration) -> Vec<Consumed> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Consumed {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        headers,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

/// Waits for `child` up to `limit`; kills it and returns `None` on timeout.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sends SIGKILL (no chance to checkpoint or commit) and reaps the process.
pub fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A real TLC sample shipped with the repository (`examples/data/`).
pub fn sample(name: &str) -> PathBuf {
    let p = repo_root().join("examples/data").join(name);
    assert!(p.exists(), "sample {name} not found in examples/data");
    p
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// `GET path` on a stage's probe server; (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The probe address a stage logged at start.
pub fn probe_addr(p: &Pipeline, stage: &str) -> Option<String> {
    let logs = p.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("stage starting") && l.contains(&format!("\"stage\":\"{stage}\"")))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let addr = v["fields"]["probe_addr"].as_str()?;
    Some(addr.replace("0.0.0.0", "127.0.0.1"))
}
