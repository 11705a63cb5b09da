//! Which `/dev/shm` files anything still uses: a file no process of its mount namespace maps
//! or holds open is left over (a crashed PostgreSQL's dynamic shared memory, a pod's leaked
//! segments) and fills the tmpfs for nobody. Checked on the census's clock: reading every
//! process's maps costs about 1 µs per mapping.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ipcwatch_sampler::posix::{open_dev_shm, ShmFile};
use serde::Serialize;

/// Files reported by name per namespace (the biggest).
pub const LARGEST_FILES: usize = 5;

/// A namespace's `/dev/shm` files, as the census sees them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DevShmFiles {
    pub mnt_namespace: u64,
    /// The biggest files, with whether anything uses them.
    pub largest: Vec<ShmFileUse>,
    /// Files no process of the mount namespace maps or holds open, and their bytes.
    pub unused_files: u64,
    pub unused_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShmFileUse {
    #[serde(flatten)]
    pub file: ShmFile,
    pub in_use: bool,
}

/// Every process under `procfs`, grouped by mount namespace inode.
pub fn processes_by_mount_namespace(procfs: &Path) -> HashMap<u64, Vec<u32>> {
    let mut out: HashMap<u64, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir(procfs) else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(mnt) = mount_namespace(procfs, pid) {
            out.entry(mnt).or_default().push(pid);
        }
    }
    out
}

pub use ipcwatch_sampler::posix::mount_namespace_of as mount_namespace;

/// The (device, inode) of every `/dev/shm` file that one of `pids` maps or holds open.
fn in_use(procfs: &Path, pids: &[u32], dev: u64, text: &mut String) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    // glibc's dev_t encoding, as /proc/PID/maps prints it (hex major:minor).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let wanted = format!("{major:02x}:{minor:02x}");
    for pid in pids {
        let base = procfs.join(pid.to_string());
        if ipcwatch_sampler::read_text(&base.join("maps"), text).is_ok() {
            // `addr perms offset dev inode path`: a /dev/shm mapping has its device.
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(d), Some(ino)) = (f.nth(3), f.next()) else { continue };
                if d == wanted {
                    if let Ok(ino) = ino.parse::<u64>() {
                        inodes.insert(ino);
                    }
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            use std::os::unix::fs::MetadataExt;
            for fd in fds.flatten() {
                if let Ok(m) = std::fs::metadata(fd.path()) {
                    if m.dev() == dev {
                        inodes.insert(m.ino());
                    }
                }
            }
        }
    }
    inodes
}

/// The `/dev/shm` that `pid` sees, with the files `pids` (its mount namespace's processes)
/// use. `None` if it cannot be read.
pub fn dev_shm_files(procfs: &Path, pid: u32, mnt_namespace: u64, pids: &[u32]) -> Option<DevShmFiles> {
    let files = open_dev_shm(procfs, pid, &mut Default::default()).and_then(|d| d.list()).ok()?;
    let mut out = DevShmFiles { mnt_namespace, ..Default::default() };
    let Some(dev) = files.first().map(|f| f.dev) else { return Some(out) };
    let mut text = String::new();
    let used = in_use(procfs, pids, dev, &mut text);
    let mut all: Vec<ShmFileUse> =
        files.into_iter().map(|f| ShmFileUse { in_use: used.contains(&f.ino), file: f }).collect();
    for f in all.iter().filter(|f| !f.in_use) {
        out.unused_files += 1;
        out.unused_bytes = out.unused_bytes.saturating_add(f.file.bytes);
    }
    all.sort_by(|a, b| b.file.bytes.cmp(&a.file.bytes).then_with(|| a.file.name.cmp(&b.file.name)));
    all.truncate(LARGEST_FILES);
    out.largest = all;
    Some(out)
}
