//! A real `islab playground` for the client-command tests: started on free loopback ports in
//! a temporary directory, waited for on its `ready` line, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a playground may take to print `ready` (a loaded 2-core machine is slow, and the
/// wait ends at the line).
const READY_WITHIN: Duration = Duration::from_secs(45);

/// A running `islab playground` process. Dropped while running, it is killed with SIGKILL
/// (its nodes then get SIGTERM from the kernel: they were started with PR_SET_PDEATHSIG).
pub struct Playground {
    child: Child,
    pub dir: PathBuf,
    pub base_port: u16,
    /// `--endpoints` for the client commands.
    pub endpoints: String,
    /// Everything printed on stdout up to and including the `ready` line.
    pub banner: Vec<String>,
    /// Node pids, from the banner's `node <id>  <addr>  pid <pid>` lines.
    pub node_pids: Vec<u32>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// `n` consecutive loopback ports that were free a moment ago: a kernel-chosen port and the
/// ones after it, probed by binding them.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first.checked_add(n).is_none() {
            continue;
        }
        let rest: Vec<_> = (1..n)
            .map(|i| TcpListener::bind(("127.0.0.1", first + i)))
            .collect();
        if rest.iter().all(|r| r.is_ok()) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports found");
}

impl Playground {
    /// Starts a playground of `nodes` nodes in `dir` with `extra` flags, on free ports (tried
    /// again on others if a port was taken in the meantime), and waits for `ready`.
    pub fn start(dir: &Path, nodes: u16, extra: &[&str]) -> Playground {
        for _ in 0..3 {
            let base = free_ports(nodes);
            match Playground::start_on(dir, nodes, base, extra) {
                Ok(p) => return p,
                Err(why) if why.contains("cannot use 127.0.0.1:") => {
                    eprintln!("port taken meanwhile, trying others: {why}");
                }
                Err(why) => panic!("the playground did not start: {why}"),
            }
        }
        panic!("the playground found no free ports in 3 tries");
    }

    /// Starts a playground on `base_port` and waits for `ready`; `Err` carries its stderr if
    /// it exited first.
    pub fn start_on(
        dir: &Path,
        nodes: u16,
        base_port: u16,
        extra: &[&str],
    ) -> Result<Playground, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_islab"))
            .args(["playground", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir)
            .args(["--base-port", &base_port.to_string()])
            .args(extra)
            .env_remove("ISLAB_ENDPOINTS")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running islab playground");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut playground = Playground {
            child,
            dir: dir.to_path_buf(),
            base_port,
            endpoints: (0..nodes)
                .map(|i| format!("127.0.0.1:{}", base_port + i))
                .collect::<Vec<_>>()
                .join(","),
            banner: Vec::new(),
            node_pids: Vec::new(),
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match playground.lines.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.starts_with("ready");
                    playground.banner.push(line);
                    if ready {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the playground exited; its stderr says why.
                    let status = playground.child.wait().unwrap();
                    playground.read_all_stderr();
                    return Err(format!("{status}: {}", playground.stderr()));
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no ready line within {READY_WITHIN:?}; stdout so far: {:?}; stderr: {}",
                    playground.banner,
                    playground.stderr()
                ),
            }
        }
        playground.node_pids = playground
            .banner
            .iter()
            .filter_map(|l| {
                let rest = l.trim_start().strip_prefix("node ")?;
                let pid = rest.split("pid ").nth(1)?.split_whitespace().next()?;
                pid.parse().ok()
            })
            .collect();
        assert_eq!(
            playground.node_pids.len(),
            usize::from(nodes),
            "{:?}",
            playground.banner
        );
        Ok(playground)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the playground printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Once the playground has exited: waits until its stderr is read to the end.
    fn read_all_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }

    /// Runs `islab --endpoints <the nodes> args…`.
    pub fn islab(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_islab"))
            .args(["--endpoints", &self.endpoints])
            .args(args)
            .env_remove("ISLAB_ENDPOINTS")
            .env_remove("RUST_LOG")
            .output()
            .expect("running islab")
    }

    /// Sends SIGTERM and waits (at most `within`) for the playground to exit; returns its
    /// exit status and what it printed after `ready`.
    pub fn terminate(&mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the playground did not exit within {within:?} of SIGTERM; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.read_all_stderr();
        // The reader thread ends (and the channel with it) at the end of stdout.
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a process with this pid still exists (a collected one does not).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
