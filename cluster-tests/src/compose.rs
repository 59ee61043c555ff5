//! The real container deployment under test: the top-level `docker-compose.yml`, run as a
//! compose project of its own, with Docker as the fault injector (kill, pause, network
//! disconnect).
//!
//! Each [`ComposeCluster`] is the project `islab-test-<pid>-<name>` on three free host ports
//! (passed to the compose file as `ISLAB_NODE1_PORT`..`ISLAB_NODE3_PORT`), so tests never meet
//! a cluster a user runs on 7379-7381. Its `Drop` runs `down -v`: containers, network and
//! volumes go away even when the test panics. Clusters are brought up one at a time (a global
//! lock held for a cluster's life): three containers per test is what a 2-core box carries
//! while failover deadlines hold.
//!
//! Docker is required, not optional: without a usable engine and compose the tests panic
//! saying so, they do not skip. The image (`islab:local`, or `$ISLAB_IMAGE`) is built with
//! `deploy/build-image.sh` if it is missing; CI builds it before the tests.
//!
//! From the host, nodes are reached on `127.0.0.1:<port>`, but they name each other (leader
//! hints, members) by the address they advertise, `nodeN:7379`; every client made here carries
//! the address map from those names to the host ports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use islab_client::{Client, ClientConfig, StatusResponse};
use tokio::process::Command;
use tokio::sync::{Mutex, MutexGuard};

use crate::{free_port, wait_for};

/// Compose projects brought up by this process, one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How long one docker or compose command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// The nodes of the compose file.
pub const NODES: [u64; 3] = [1, 2, 3];

/// A running compose project of the top-level `docker-compose.yml`.
pub struct ComposeCluster {
    pub project: String,
    /// Host port of node `i + 1`.
    pub ports: [u16; 3],
    /// The project's network (read once: a disconnected container no longer shows it).
    network: String,
    /// Container ids of nodes 1..3 (compose is slow to ask; the ids change only on `down`).
    containers: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

static TOOLS: OnceLock<Tools> = OnceLock::new();

/// How to run compose here: the `docker compose` plugin if it works, else `docker-compose`.
struct Tools {
    compose: Vec<String>,
    image: String,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cluster-tests sits in the workspace")
        .to_path_buf()
}

/// Checks Docker and compose once and builds the image if it is missing; panics, loudly, if
/// any of that is impossible.
fn tools() -> &'static Tools {
    TOOLS.get_or_init(|| {
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
        };
        let ok = |o: &std::io::Result<Output>| o.as_ref().is_ok_and(|o| o.status.success());
        let info = run("docker", &["info", "--format", "{{.ServerVersion}}"]);
        if !ok(&info) {
            let why = match &info {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            panic!(
                "the compose tests need a Docker engine and `docker info` failed: {why}\n\
                 (these tests do not skip: a machine that runs ./scripts/test must have Docker)"
            );
        }
        let compose: Vec<String> = if ok(&run("docker", &["compose", "version"])) {
            vec!["docker".into(), "compose".into()]
        } else if ok(&run("docker-compose", &["version"])) {
            vec!["docker-compose".into()]
        } else {
            panic!("the compose tests need `docker compose` or `docker-compose`; neither works");
        };
        sweep_leftovers();
        let image = std::env::var("ISLAB_IMAGE").unwrap_or_else(|_| "islab:local".into());
        if !ok(&run("docker", &["image", "inspect", &image])) {
            eprintln!("image {image} is missing: running deploy/build-image.sh");
            let status = std::process::Command::new(workspace_root().join("deploy/build-image.sh"))
                .env("ISLAB_IMAGE", &image)
                .stdin(Stdio::null())
                .status()
                .expect("running deploy/build-image.sh");
            assert!(status.success(), "deploy/build-image.sh failed: {status}");
        }
        let revision = run(
            "docker",
            &[
                "image",
                "inspect",
                "--format",
                "{{index .Config.Labels \"org.opencontainers.image.revision\"}} {{.Created}}",
                &image,
            ],
        );
        if let Ok(o) = revision {
            let text = String::from_utf8_lossy(&o.stdout);
            tracing::info!(%image, built = %text.trim(), compose = ?compose, "docker ready");
        }
        Tools { compose, image }
    })
}

/// Removes what test processes that died without their `Drop` (killed by a CI timeout, say)
/// left behind: containers, networks and volumes of `islab-test-<pid>-…` projects whose
/// process is gone. Projects of live processes (a test run beside this one) are left alone.
fn sweep_leftovers() {
    const PROJECT: &str = "com.docker.compose.project";
    let list = |args: &[&str]| -> Vec<String> {
        std::process::Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let label = format!("label={PROJECT}");
    let format = format!("{{{{.Label \"{PROJECT}\"}}}}");
    let mut projects: Vec<String> = [
        list(&["ps", "-a", "--filter", &label, "--format", &format]),
        list(&["network", "ls", "--filter", &label, "--format", &format]),
        list(&["volume", "ls", "--filter", &label, "--format", &format]),
    ]
    .concat();
    projects.sort();
    projects.dedup();
    for project in projects {
        let Some(pid) = project
            .strip_prefix("islab-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || PathBuf::from(format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("removing {project}, left behind by test process {pid}");
        let filter = format!("label={PROJECT}={project}");
        let containers = list(&["ps", "-a", "-q", "--filter", &filter]);
        let networks = list(&["network", "ls", "-q", "--filter", &filter]);
        let volumes = list(&["volume", "ls", "-q", "--filter", &filter]);
        for (verb, ids) in [
            (&["rm", "-f", "-v"][..], containers),
            (&["network", "rm"][..], networks),
            (&["volume", "rm", "-f"][..], volumes),
        ] {
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(verb)
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; panics if it cannot be run or
/// does not finish.
async fn output(mut command: Command, what: &str) -> Output {
    command.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("running {what}: {e}"),
        Err(_) => panic!("{what} did not finish within {COMMAND_TIMEOUT:?}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `docker <args>`; panics naming the command and its output if it fails.
pub async fn docker(args: &[&str]) -> String {
    let mut command = Command::new("docker");
    command.args(args);
    let what = format!("docker {}", args.join(" "));
    let o = output(command, &what).await;
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl ComposeCluster {
    /// Brings up the project `islab-test-<pid>-<name>` (waiting for its turn), waits until the
    /// init job has succeeded, and returns it.
    pub async fn up(name: &str) -> ComposeCluster {
        let turn = ONE_AT_A_TIME.lock().await;
        tools();
        let project = format!("islab-test-{}-{name}", std::process::id());
        let mut cluster = ComposeCluster {
            project,
            ports: [0; 3],
            network: String::new(),
            containers: Vec::new(),
            _turn: turn,
        };
        for attempt in 1..=3 {
            cluster.ports = [free_port(), free_port(), free_port()];
            let o = cluster.compose(&["up", "-d"]).await;
            if o.status.success() {
                break;
            }
            let why = text(&o);
            let taken = why.contains("already allocated") || why.contains("address already in use");
            // A port taken between choosing it and binding it: clean up, choose others.
            cluster.compose(&["down", "-v", "--remove-orphans"]).await;
            assert!(taken && attempt < 3, "compose up failed: {why}");
            tracing::warn!(%why, "a host port was taken meanwhile; trying others");
        }
        cluster.wait_for_init().await;
        cluster.containers = cluster.find_containers().await;
        cluster.network = docker(&[
            "inspect",
            "--format",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
            cluster.container(1),
        ])
        .await;
        tracing::info!(project = %cluster.project, ports = ?cluster.ports, network = %cluster.network, "compose cluster up");
        cluster
    }

    /// `compose -p <project> -f docker-compose.yml <args>` with this cluster's ports and image.
    pub async fn compose(&self, args: &[&str]) -> Output {
        let tools = tools();
        let mut command = Command::new(&tools.compose[0]);
        command
            .args(&tools.compose[1..])
            .args(["-p", &self.project, "-f"])
            .arg(workspace_root().join("docker-compose.yml"))
            .args(args)
            .env("ISLAB_IMAGE", &tools.image)
            // One data shard: "the leader" of these fault tests is that shard's (group 1).
            .env("ISLAB_SHARDS", "1");
        for (i, port) in self.ports.iter().enumerate() {
            command.env(format!("ISLAB_NODE{}_PORT", i + 1), port.to_string());
        }
        output(command, &format!("compose {}", args.join(" "))).await
    }

    /// Like [`ComposeCluster::compose`], and the command must succeed.
    async fn compose_ok(&self, args: &[&str]) -> String {
        let o = self.compose(args).await;
        assert!(
            o.status.success(),
            "compose {} failed: {}",
            args.join(" "),
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `docker compose down` (volumes kept), then `up -d` again on the same ports; waits for
    /// the init job (which finds the cluster already initialised).
    pub async fn down_and_up(&mut self) {
        self.compose_ok(&["down"]).await;
        self.compose_ok(&["up", "-d"]).await;
        self.wait_for_init().await;
        self.containers = self.find_containers().await;
    }

    /// Waits (120 s) until the one-shot init job has exited, and asserts it succeeded.
    async fn wait_for_init(&self) {
        let id = wait_for(
            "the init job's container",
            Duration::from_secs(60),
            || async {
                let id = self.compose_ok(&["ps", "-a", "-q", "init"]).await;
                if id.is_empty() {
                    Err("not created yet".to_string())
                } else {
                    Ok(id)
                }
            },
        )
        .await;
        let state = wait_for("the init job to exit", Duration::from_secs(120), || async {
            let state = docker(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &id,
            ])
            .await;
            if state.starts_with("exited") {
                Ok(state)
            } else {
                Err(state)
            }
        })
        .await;
        let logs = self.logs("init").await;
        assert_eq!(state, "exited 0", "the init job failed:\n{logs}");
        tracing::info!(init = %logs.trim(), "init job done");
    }

    /// The last lines of a service's logs.
    pub async fn logs(&self, service: &str) -> String {
        text(
            &self
                .compose(&["logs", "--no-color", "--tail", "60", service])
                .await,
        )
    }

    /// The container id of node `id`'s service.
    pub fn container(&self, id: u64) -> &str {
        &self.containers[(id - 1) as usize]
    }

    async fn find_containers(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for id in NODES {
            let container = self.compose_ok(&["ps", "-a", "-q", &service(id)]).await;
            assert!(!container.is_empty(), "no container for node {id}");
            ids.push(container);
        }
        ids
    }

    /// `docker <verb> <node id's container> [args]`, e.g. kill, start, pause, unpause.
    pub async fn docker_node(&self, verb: &str, id: u64) {
        let container = self.container(id);
        docker(&[verb, container]).await;
    }

    /// Cuts node `id` off the project's network (its host port stops answering too).
    pub async fn disconnect(&self, id: u64) {
        let container = self.container(id);
        docker(&["network", "disconnect", &self.network, container]).await;
    }

    /// Puts node `id` back on the network under its service name, which the others dial.
    pub async fn reconnect(&self, id: u64) {
        let container = self.container(id);
        let alias = service(id);
        docker(&[
            "network",
            "connect",
            "--alias",
            &alias,
            &self.network,
            container,
        ])
        .await;
    }

    /// Runs `islab <args>` inside node `id`'s container (no network needed to get there);
    /// returns whether it succeeded and its output. The command is killed after `timeout`.
    pub async fn exec_islab(&self, id: u64, args: &[&str], timeout: Duration) -> (bool, String) {
        let container = self.container(id);
        let mut command = Command::new("docker");
        command
            .args(["exec", container, "islab"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(o)) => (o.status.success(), text(&o)),
            Ok(Err(e)) => panic!("docker exec: {e}"),
            Err(_) => (false, format!("no result within {timeout:?}")),
        }
    }

    /// The host address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[(id - 1) as usize])
    }

    /// Every node's host address.
    pub fn endpoints(&self) -> Vec<String> {
        NODES.iter().map(|id| self.addr(*id)).collect()
    }

    /// `nodeN:7379` (what the nodes advertise) → `127.0.0.1:<host port>`.
    pub fn address_map(&self) -> BTreeMap<String, String> {
        NODES
            .iter()
            .map(|id| (format!("{}:7379", service(*id)), self.addr(*id)))
            .collect()
    }

    /// A client of these endpoints from the host, with the address map and a deadline long
    /// enough to ride out an election on a loaded machine.
    pub fn client_of(&self, endpoints: Vec<String>) -> Client {
        let config = ClientConfig {
            deadline: Duration::from_secs(30),
            request_timeout: Duration::from_secs(3),
            address_map: self.address_map(),
            ..ClientConfig::new(endpoints)
        };
        Client::with_config(config).expect("client")
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        self.client_of(self.endpoints())
    }

    /// The status of node `id`: one attempt, so a stopped, paused or cut-off node answers
    /// with an error at once.
    pub async fn status(&self, id: u64) -> Result<StatusResponse, String> {
        let addr = self.addr(id);
        let config = ClientConfig {
            max_attempts: Some(1),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            ..ClientConfig::new([addr.clone()])
        };
        Client::with_config(config)
            .map_err(|e| e.to_string())?
            .admin()
            .with_deadline(Duration::from_secs(2))
            .status_of(&addr)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits (60 s) until the nodes in `ids` that answer agree on one leader among them;
    /// returns its id.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        wait_for(
            "one leader that the answering nodes agree on",
            Duration::from_secs(60),
            || async {
                let mut leaders = Vec::new();
                let mut claimed = None;
                for id in ids {
                    let Ok(s) = self.status(*id).await else {
                        continue;
                    };
                    let g = crate::data_group(&s)?;
                    leaders.push(g.leader_id);
                    if g.role == "leader" {
                        claimed = Some(s.node_id);
                    }
                }
                let leader = claimed.ok_or(format!("nobody claims leadership: {leaders:?}"))?;
                if ids.contains(&leader) && leaders.iter().all(|l| *l == leader) {
                    Ok(leader)
                } else {
                    Err(format!("leaders seen: {leaders:?}, claimed by {leader}"))
                }
            },
        )
        .await
    }

    /// [`ComposeCluster::leader_among`] every node.
    pub async fn leader(&self) -> u64 {
        self.leader_among(&NODES).await
    }

    /// Waits (120 s) until all three nodes answer and have applied the same index, at least
    /// `min`; returns it.
    pub async fn converged(&self, min: u64) -> u64 {
        wait_for(
            "all three nodes applied the same index",
            Duration::from_secs(120),
            || async {
                let mut applied = Vec::new();
                for id in NODES {
                    let s = self
                        .status(id)
                        .await
                        .map_err(|e| format!("node {id}: {e}"))?;
                    applied.push(crate::data_group(&s)?.applied_index);
                }
                if applied[0] >= min && applied.iter().all(|a| *a == applied[0]) {
                    Ok(applied[0])
                } else {
                    Err(format!("applied indexes {applied:?}, want >= {min}"))
                }
            },
        )
        .await
    }
}

/// The compose service of node `id`.
pub fn service(id: u64) -> String {
    format!("node{id}")
}

impl Drop for ComposeCluster {
    /// `down -v --remove-orphans` (after unpausing, which a paused container needs to stop),
    /// printing the nodes' logs first if the test failed.
    fn drop(&mut self) {
        let Some(tools) = TOOLS.get() else {
            return; // nothing was ever started
        };
        let compose = |args: &[&str]| {
            let mut command = std::process::Command::new(&tools.compose[0]);
            command
                .args(&tools.compose[1..])
                .args(["-p", &self.project, "-f"])
                .arg(workspace_root().join("docker-compose.yml"))
                .args(args)
                .env("ISLAB_IMAGE", &tools.image)
                .stdin(Stdio::null());
            for (i, port) in self.ports.iter().enumerate() {
                command.env(format!("ISLAB_NODE{}_PORT", i + 1), port.to_string());
            }
            command.output()
        };
        if std::thread::panicking()
            && let Ok(o) = compose(&["logs", "--no-color", "--tail", "80"])
        {
            eprintln!("--- logs of {}:\n{}", self.project, text(&o));
        }
        if let Ok(o) = compose(&["ps", "-a", "-q"]) {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["unpause", id])
                    .stderr(Stdio::null())
                    .stdout(Stdio::null())
                    .status();
            }
        }
        match compose(&["down", "-v", "--remove-orphans", "--timeout", "10"]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("compose down -v of {} failed: {}", self.project, text(&o)),
            Err(e) => eprintln!("compose down -v of {}: {e}", self.project),
        }
    }
}
