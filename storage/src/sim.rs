//! A simulated disk for power-loss and fault tests.
//!
//! [`SimFs`] keeps two images of every file: what was written, and what a completed
//! `fdatasync` covered. A file's creation or removal is durable only after a sync of its
//! directory. [`SimFs::power_loss`] returns the disk as it would be found after a power cut —
//! every byte not covered by a completed sync dropped — and leaves the old instance failing
//! every call, so a WAL still running on it can do no more harm. Faults can be armed: an
//! `fdatasync` that fails with EIO, and a capacity that makes writes fail with ENOSPC.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::{FileSystem, WalFile};

#[derive(Clone, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// The creation has been made durable by a directory sync.
    linked: bool,
}

#[derive(Default)]
struct Disk {
    files: HashMap<PathBuf, FileState>,
    /// Files removed since the last sync of their directory: they come back after a power loss.
    unlinked: HashMap<PathBuf, FileState>,
    dead: bool,
    fail_syncs_after: Option<u64>,
    syncs: u64,
    capacity: Option<u64>,
    /// Mutating calls left before the power goes (the last one may be torn).
    ops_left: Option<u64>,
    seed: u64,
}

impl Disk {
    fn check(&self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("simulated power loss: the disk is gone"));
        }
        Ok(())
    }

    /// Counts a mutating call against an armed power cut. Returns `Err` once the power is out;
    /// `Ok(true)` if this call is the one the power dies in (a write then lands partly).
    fn tick(&mut self) -> io::Result<bool> {
        self.check()?;
        match self.ops_left {
            None => Ok(false),
            Some(0) => {
                self.dead = true;
                Err(io::Error::other("simulated power loss"))
            }
            Some(n) => {
                self.ops_left = Some(n - 1);
                Ok(n == 1)
            }
        }
    }

    fn random(&mut self) -> u64 {
        // splitmix64: deterministic per seed, no dependency.
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn used(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }
}

/// An in-memory disk that can lose power. Cheap to clone (clones share the disk).
#[derive(Clone, Default)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Cuts the power: returns the disk as a restart would find it, and kills this instance.
    pub fn power_loss(&self) -> SimFs {
        let mut disk = self.disk.lock().unwrap();
        disk.dead = true;
        let mut files = HashMap::new();
        for (path, state) in disk.files.iter().chain(disk.unlinked.iter()) {
            if state.linked {
                let durable = state.durable.clone();
                files.insert(
                    path.clone(),
                    FileState {
                        data: durable.clone(),
                        durable,
                        linked: true,
                    },
                );
            }
        }
        SimFs {
            disk: Arc::new(Mutex::new(Disk {
                files,
                ..Disk::default()
            })),
        }
    }

    /// The next `n` syncs succeed; every one after them fails with EIO.
    pub fn fail_syncs_after(&self, n: u64) {
        let mut disk = self.disk.lock().unwrap();
        disk.fail_syncs_after = Some(disk.syncs + n);
    }

    /// Writes that would grow the disk past `bytes` fail with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.disk.lock().unwrap().capacity = bytes;
    }

    /// Arms a power cut: the `n`-th mutating call from now (write, sync, create, remove, …) is
    /// the last; a write that is the last lands only partly (a random prefix, chosen from
    /// `seed`), and every call after it fails.
    pub fn power_cut_after(&self, n: u64, seed: u64) {
        let mut disk = self.disk.lock().unwrap();
        disk.ops_left = Some(n);
        disk.seed = seed;
    }

    /// Whether an armed power cut has happened.
    pub fn is_dead(&self) -> bool {
        self.disk.lock().unwrap().dead
    }

    /// Completed `fdatasync` calls so far.
    pub fn syncs(&self) -> u64 {
        self.disk.lock().unwrap().syncs
    }

    /// Overwrites bytes of a file in both images (a bit flip that is "on the platter").
    pub fn corrupt(&self, path: &Path, offset: usize, bytes: &[u8]) {
        let mut disk = self.disk.lock().unwrap();
        let file = disk.files.get_mut(path).expect("no such simulated file");
        for (i, b) in bytes.iter().enumerate() {
            file.data[offset + i] = *b;
            if offset + i < file.durable.len() {
                file.durable[offset + i] = *b;
            }
        }
    }

    /// The current content of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.disk
            .lock()
            .unwrap()
            .files
            .get(path)
            .map(|f| f.data.clone())
    }
}

struct SimFile {
    disk: Arc<Mutex<Disk>>,
    path: PathBuf,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Disk) -> io::Result<T>) -> io::Result<T> {
        let mut disk = self.disk.lock().unwrap();
        disk.check()?;
        f(&mut disk)
    }
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl WalFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|disk| {
            let last = disk.tick()?;
            let buf = if last {
                let keep = (disk.random() % (buf.len() as u64 + 1)) as usize;
                &buf[..keep]
            } else {
                buf
            };
            let used = disk.used();
            let capacity = disk.capacity;
            let file = disk
                .files
                .get_mut(&self.path)
                .ok_or_else(|| missing(&self.path))?;
            let end = offset as usize + buf.len();
            let growth = end.saturating_sub(file.data.len()) as u64;
            if capacity.is_some_and(|c| used + growth > c) {
                return Err(io::Error::from_raw_os_error(28));
            }
            if file.data.len() < end {
                file.data.resize(end, 0);
            }
            file.data[offset as usize..end].copy_from_slice(buf);
            if last {
                disk.dead = true;
                return Err(io::Error::other("simulated power loss during a write"));
            }
            Ok(())
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|disk| {
            let file = disk
                .files
                .get(&self.path)
                .ok_or_else(|| missing(&self.path))?;
            let start = offset as usize;
            let end = start + buf.len();
            if end > file.data.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            buf.copy_from_slice(&file.data[start..end]);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|disk| {
            disk.tick()?;
            if disk.fail_syncs_after.is_some_and(|n| disk.syncs >= n) {
                return Err(io::Error::from_raw_os_error(5));
            }
            disk.syncs += 1;
            let file = disk
                .files
                .get_mut(&self.path)
                .ok_or_else(|| missing(&self.path))?;
            file.durable = file.data.clone();
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|disk| {
            disk.tick()?;
            let file = disk
                .files
                .get_mut(&self.path)
                .ok_or_else(|| missing(&self.path))?;
            file.data.resize(len as usize, 0);
            Ok(())
        })
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.disk.lock().unwrap().check()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.disk.lock().unwrap();
        disk.check()?;
        Ok(disk
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.disk.lock().unwrap();
        disk.check()?;
        disk.files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| missing(path))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let mut disk = self.disk.lock().unwrap();
        disk.tick()?;
        if disk.files.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                path.display().to_string(),
            ));
        }
        disk.unlinked.remove(path);
        disk.files.insert(path.to_path_buf(), FileState::default());
        Ok(Arc::new(SimFile {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let disk = self.disk.lock().unwrap();
        disk.check()?;
        if !disk.files.contains_key(path) {
            return Err(missing(path));
        }
        Ok(Arc::new(SimFile {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        disk.tick()?;
        let state = disk.files.remove(path).ok_or_else(|| missing(path))?;
        if state.linked {
            disk.unlinked.insert(path.to_path_buf(), state);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        disk.tick()?;
        for (path, state) in disk.files.iter_mut() {
            if path.parent() == Some(dir) {
                state.linked = true;
            }
        }
        disk.unlinked.retain(|p, _| p.parent() != Some(dir));
        Ok(())
    }
}
