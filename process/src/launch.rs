//! What to start: everything that makes one `islab server` invocation.

use std::ffi::OsString;
use std::path::PathBuf;

/// How to start one node. The flags `--id`, `--listen` and `--data-dir` come from the fields;
/// everything else is in `args`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `islab` binary.
    pub exe: PathBuf,
    pub id: u64,
    /// The address it listens on (and, unless `args` say otherwise, advertises).
    pub addr: String,
    pub data_dir: PathBuf,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// More `islab server` flags.
    pub args: Vec<String>,
    /// Environment variables set for the node.
    pub env: Vec<(OsString, OsString)>,
    /// Variables of this process's environment whose names start with this are not passed
    /// on (the playground drops `ISLAB_`, so its flags say everything about the node).
    pub env_remove_prefix: Option<String>,
    /// Runs the node in its own process group, so a terminal's Ctrl-C does not reach it.
    pub own_process_group: bool,
    /// Has the kernel send the node SIGTERM when the thread that spawned it exits
    /// (`PR_SET_PDEATHSIG`): for a parent that runs its nodes from its main thread.
    pub die_with_parent: bool,
}

impl Launch {
    /// A launch of `exe server --id id --listen addr --data-dir data_dir`, logging to `log`,
    /// with no extra flags or environment and both process options off.
    pub fn new(
        exe: impl Into<PathBuf>,
        id: u64,
        addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Launch {
        Launch {
            exe: exe.into(),
            id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            log: log.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove_prefix: None,
            own_process_group: false,
            die_with_parent: false,
        }
    }

    /// Sets variable `name` for the node (the last value set wins).
    pub fn env(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> &mut Launch {
        let name = name.into();
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
        self
    }
}
