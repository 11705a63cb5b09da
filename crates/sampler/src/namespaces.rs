//! Every IPC namespace on the host: which exist (from the processes under procfs), what owns
//! each (container, pod, systemd unit, from `/proc/PID/cgroup`), and a visit to one that
//! samples it from inside.
//!
//! A visit opens `/proc/PID/ns/ipc` through a live process, checks that it is still the
//! namespace that was discovered, moves this thread into it (`setns`), runs the sample, moves
//! back, and closes the descriptor. Nothing is held between visits: an open namespace
//! descriptor would keep a dead container's namespace, and every object in it, alive.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The host's initial IPC namespace, the same inode on every Linux system.
pub const INIT_IPC_NAMESPACE: u64 = 4026531839;

/// What owns a namespace, as far as its processes tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The namespace's inode number (what `ipc_namespace` labels carry, in decimal).
    pub inode: u64,
    /// The host's namespace: PID 1's under procfs ([`host_namespace`]).
    pub host: bool,
    /// Docker, containerd (cri-containerd), CRI-O or Podman container id.
    pub container_id: Option<String>,
    /// Kubernetes pod UID, and its name and namespace when the kubelet's log folders say.
    pub pod_uid: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    /// The systemd unit of the oldest process (a service, or a container's scope).
    pub unit: Option<String>,
    /// The namespace's anchor: its oldest process whose parent is outside the namespace (a
    /// container's init), else its oldest; its pid and command name.
    pub pid: u32,
    pub comm: String,
    /// When the anchor started (Unix seconds; 0 if unknown). With the inode it tells two
    /// namespaces apart: the kernel reuses the inodes of ended namespaces.
    pub started: i64,
    /// The anchor's start in clock ticks after boot, exact where `started` is rounded.
    #[serde(skip)]
    pub start_ticks: u64,
}

impl Identity {
    /// What owns the namespace, as label name and value, where known.
    pub fn owner(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("container_id", &self.container_id),
            ("pod_uid", &self.pod_uid),
            ("pod", &self.pod),
            ("pod_namespace", &self.pod_namespace),
            ("unit", &self.unit),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// A discovered namespace: its identity and every pid seen in it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub identity: Identity,
    pub pids: Vec<u32>,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub namespaces: Vec<Found>,
    /// Processes whose namespace could not be read (no ptrace access: other users' processes
    /// without CAP_SYS_PTRACE).
    pub unreadable: usize,
    pub processes: usize,
}

/// The host's IPC namespace: PID 1's under `procfs`. In a pod (`hostPID`, the host's /proc
/// at `--path.procfs`) that is the node's, not the pod's own; on a plain host it is the
/// initial namespace. `None` when PID 1's namespace cannot be read (no ptrace access to it).
pub fn host_namespace(procfs: &Path) -> Option<u64> {
    parse_ns_link(&std::fs::read_link(procfs.join("1/ns/ipc")).ok()?)
}

/// The calling thread's IPC namespace.
pub fn own_namespace() -> Option<u64> {
    std::fs::metadata(HOME).ok().map(|m| m.ino())
}

/// This process's pid as `procfs` numbers it: `procfs/self`. `None` when `procfs` belongs
/// to a PID namespace this process is not in (its pids mean nothing to `pidfd_open` then).
pub fn pid_in(procfs: &Path) -> Option<u32> {
    std::fs::read_link(procfs.join("self")).ok()?.to_str()?.parse().ok()
}

/// `ipc:[4026531839]` (a `/proc/PID/ns/ipc` link) as 4026531839.
pub fn parse_ns_link(link: &Path) -> Option<u64> {
    parse_link(link, "ipc:[")
}

/// The inode in a mount namespace link (`mnt:[4026531841]`).
pub fn parse_mnt_link(link: &Path) -> Option<u64> {
    parse_link(link, "mnt:[")
}

/// The IPC namespace of process `pid`, from its `ns/ipc` link under the procfs in `path` (a
/// buffer reused across processes, left as it was found).
fn ipc_namespace_of(path: &mut PathBuf, pid: impl AsRef<std::ffi::OsStr>) -> Option<u64> {
    path.push(pid.as_ref());
    path.push("ns/ipc");
    let link = std::fs::read_link(&*path);
    path.pop();
    path.pop();
    path.pop();
    parse_ns_link(&link.ok()?)
}

fn parse_link(link: &Path, prefix: &str) -> Option<u64> {
    link.to_str()?.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

/// Finds the IPC namespaces of every process under `procfs`. `pod_logs` is the kubelet's
/// `/var/log/pods` (its folders name pods by UID), read if it exists.
pub fn scan(procfs: &Path, pod_logs: &Path) -> io::Result<Scan> {
    scan_known(procfs, pod_logs, &[], true, &|_| None)
}

/// A process's start (clock ticks after boot) and parent, from `/proc/PID/stat`.
fn start_and_parent(dir: &Path, text: &mut String) -> Option<(u64, u32)> {
    crate::read_text(&dir.join("stat"), text).ok()?;
    parse_start_and_parent(text)
}

/// The start (field 22) and parent (field 4) in `/proc/PID/stat` text.
pub fn parse_start_and_parent(text: &str) -> Option<(u64, u32)> {
    let mut f = fields_after_comm(text)?;
    let ppid = f.nth(1)?.parse().ok()?;
    let start = f.nth(17)?.parse().ok()?;
    Some((start, ppid))
}

/// Field 22 of /proc/PID/stat (`starttime`, in clock ticks after boot).
pub fn start_ticks(stat: &str) -> Option<u64> {
    fields_after_comm(stat)?.nth(19)?.parse().ok()
}

/// Fields 3 on of /proc/PID/stat: the command name in field 2 may hold spaces and
/// parentheses, so they are counted after its last `)`.
fn fields_after_comm(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// The boot time (`btime`, seconds since the epoch) in /proc/stat text.
pub fn boot_time(stat: &str) -> Option<i64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The anchor among a namespace's processes (pid, start ticks, parent pid): the oldest whose
/// parent is outside the namespace (a container's init, a service's main process), else the
/// oldest. A process that joined later (`nsenter`) never wins over one that was there first,
/// whatever its pid: pids wrap.
pub fn choose_anchor(procs: &[(u32, u64, u32)]) -> Option<u32> {
    let inside = |ppid: u32| procs.iter().any(|(p, ..)| *p == ppid);
    let oldest = |outside: bool| {
        procs
            .iter()
            .filter(|(_, _, ppid)| !outside || !inside(*ppid))
            .min_by_key(|(pid, start, _)| (*start, *pid))
    };
    oldest(true).or_else(|| oldest(false)).map(|(pid, ..)| *pid)
}

/// [`scan`], keeping the anchor of namespaces already known (`known`) while it lives: a
/// process that joins later never takes its place. An anchor that is gone is replaced by
/// [`choose_anchor`]. The anchor's command name and cgroup (container, pod, unit) are read
/// again when `refresh` (a process may exec or move); otherwise a kept anchor keeps the
/// identity known, and a scan of a thousand known namespaces reads one stat file each.
///
/// `alive(inode)`: what an anchor's pidfd says of the known anchor (`None`: no pidfd), which
/// spares reading its start time.
pub fn scan_known(
    procfs: &Path,
    pod_logs: &Path,
    known: &[&Identity],
    refresh: bool,
    alive: &dyn Fn(u64) -> Option<bool>,
) -> io::Result<Scan> {
    let known: HashMap<u64, &Identity> = known.iter().map(|k| (k.inode, *k)).collect();
    let mut scan = Scan::default();
    let mut members: HashMap<u64, Vec<u32>> = HashMap::new();
    // One path buffer for every process: a scan of thousands allocates once.
    let mut path = procfs.to_path_buf();
    for entry in std::fs::read_dir(procfs)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        scan.processes += 1;
        let Some(inode) = ipc_namespace_of(&mut path, &name) else {
            scan.unreadable += 1;
            continue;
        };
        members.entry(inode).or_default().push(pid);
    }
    let mut pods: Option<HashMap<String, (String, String)>> = None;
    let mut text = String::new();
    let host = host_namespace(procfs).unwrap_or(INIT_IPC_NAMESPACE);
    let boot = std::fs::read_to_string(procfs.join("stat")).ok().and_then(|s| boot_time(&s));
    let ticks = crate::objects::clock_ticks().max(1);
    for (inode, mut procs) in members {
        procs.sort_unstable();
        // The known anchor, if it is still the same process in this namespace.
        let kept = known.get(&inode).and_then(|k| {
            let alive = procs.binary_search(&k.pid).is_ok()
                && alive(inode).unwrap_or_else(|| {
                    start_and_parent(&procfs.join(k.pid.to_string()), &mut text).map(|(s, _)| s)
                        == Some(k.start_ticks)
                });
            alive.then_some((k.pid, k.start_ticks))
        });
        if let (Some(_), false) = (kept, refresh) {
            let identity = (*known[&inode]).clone();
            scan.namespaces.push(Found { identity, pids: procs });
            continue;
        }
        let (pid, start_ticks) = match kept {
            Some(a) => a,
            None => {
                // New, or its anchor is gone: every process's start and parent, once.
                let stats: Vec<(u32, u64, u32)> = procs
                    .iter()
                    .filter_map(|p| {
                        start_and_parent(&procfs.join(p.to_string()), &mut text).map(|(s, pp)| (*p, s, pp))
                    })
                    .collect();
                match choose_anchor(&stats) {
                    Some(a) => (a, stats.iter().find(|(p, ..)| *p == a).map_or(0, |(_, s, _)| *s)),
                    None => (procs[0], 0),
                }
            }
        };
        let dir = procfs.join(pid.to_string());
        text.clear();
        let comm = crate::read_text(&dir.join("comm"), &mut text)
            .map(|_| text.trim().to_string())
            .unwrap_or_default();
        text.clear();
        let cgroup = crate::read_text(&dir.join("cgroup"), &mut text)
            .map(|_| identify_cgroup(&text))
            .unwrap_or_default();
        // The kubelet's folders are read once a scan, and only if a pod is seen.
        let pod =
            cgroup.pod_uid.as_ref().and_then(|u| pods.get_or_insert_with(|| pod_names(pod_logs)).get(u));
        let (pod, pod_namespace) = match pod {
            Some((ns, name)) => (Some(name.clone()), Some(ns.clone())),
            None => (None, None),
        };
        let identity = Identity {
            inode,
            host: inode == host,
            container_id: cgroup.container_id,
            pod_uid: cgroup.pod_uid,
            pod,
            pod_namespace,
            unit: cgroup.unit,
            pid,
            comm,
            started: boot.filter(|_| start_ticks > 0).map_or(0, |b| b + (start_ticks / ticks) as i64),
            start_ticks,
        };
        scan.namespaces.push(Found { identity, pids: procs });
    }
    scan.namespaces.sort_by_key(|f| f.identity.inode);
    Ok(scan)
}

/// What a process's cgroup path says about its owner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub unit: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads `/proc/PID/cgroup` (v1 or v2 lines `N:controllers:/path`): the container id of
/// Docker (`docker-ID.scope`, `/docker/ID`), containerd (`cri-containerd-ID.scope`), CRI-O
/// (`crio-ID.scope`) and Podman (`libpod-ID.scope`); a Kubernetes pod UID (`pod<uid>`, with
/// dashes or the underscores systemd slices use); and the systemd unit.
///
/// A process can name its own cgroups (`systemd-run --user --scope --unit docker-ID`, or a
/// container with cgroup delegation), so a runtime's name counts only where that runtime
/// puts it (docs/metrics.md, "Who owns a namespace"):
/// - Docker: `docker-ID.scope` directly under `system.slice`, or `ID` directly under `docker`;
/// - Podman: `libpod-ID.scope` directly under `machine.slice`, or, rootless, directly under
///   `user@UID.service/user.slice`;
/// - Kubernetes: a pod's slice (`kubepods[-QOS]-pod<uid>.slice`) directly under
///   `kubepods.slice` or `kubepods-QOS.slice` (cgroupfs: `pod<uid>` under `kubepods`,
///   `burstable` or `besteffort`), and a container (`cri-containerd-ID.scope`,
///   `crio-ID.scope`, `docker-ID.scope`, or a bare `ID` with cgroupfs) directly under it;
/// - nothing else inside a user's tree (`user.slice`, `user-UID.slice`, `user@UID.service`).
///
/// The daemon may see paths relative to its own cgroup namespace (`/../../kubepods...` in a
/// pod): the parent of the first component after the `..` is then the common ancestor, which
/// the path does not name, and the component is taken on its own.
pub fn identify_cgroup(text: &str) -> CgroupIdentity {
    let mut id = CgroupIdentity::default();
    // The unified hierarchy (0::) is preferred for the unit, then v1's name=systemd; ids are
    // taken from whichever line has them.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_by_key(|l| {
        if l.starts_with("0::") {
            0
        } else if l.contains(":name=systemd:") {
            1
        } else {
            2
        }
    });
    for line in lines {
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        let raw: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let relative = raw.first() == Some(&"..");
        let parts: Vec<&str> = raw.into_iter().filter(|p| *p != "..").collect();
        let unit = parts
            .iter()
            .rev()
            .find(|p| (p.ends_with(".service") || p.ends_with(".scope")) && !p.starts_with("session-"));
        if id.unit.is_none() {
            id.unit = unit.map(|u| u.to_string());
        }
        let user_tree = parts.iter().position(|p| {
            *p == "user.slice"
                || (p.starts_with("user-") && p.ends_with(".slice"))
                || (p.starts_with("user@") && p.ends_with(".service"))
        });
        // The component before `i`; `None` at the top of a path relative to our own cgroup.
        let parent = |i: usize| -> Option<&str> {
            match i {
                0 if relative => None,
                0 => Some(""),
                i => Some(parts[i - 1]),
            }
        };
        let under = |i: usize, ok: &dyn Fn(&str) -> bool| parent(i).is_none_or(ok);
        // Where this line's pod slice was recognised: a pod's containers are its children.
        let mut pod_at: Option<usize> = None;
        for (i, part) in parts.iter().enumerate() {
            if let Some(u) = user_tree {
                // Only rootless Podman's place: user@UID.service/user.slice/libpod-ID.scope.
                let rootless = i >= 2
                    && i > u
                    && parts[i - 1] == "user.slice"
                    && parts[i - 2].starts_with("user@")
                    && parts[i - 2].ends_with(".service");
                if id.container_id.is_none() && rootless {
                    id.container_id = runtime_id(part, &["libpod-"]);
                }
                continue;
            }
            if pod_at.is_none() {
                if let Some(uid) = pod_uid_of(part) {
                    let kube_parent = |p: &str| {
                        p.starts_with("kubepods") || ((p == "burstable" || p == "besteffort") && i >= 2)
                    };
                    if under(i, &kube_parent) {
                        id.pod_uid.get_or_insert(uid);
                        pod_at = Some(i);
                        continue;
                    }
                }
            }
            if id.container_id.is_some() {
                continue;
            }
            let in_pod = |_: &str| pod_at.is_some_and(|at| at + 1 == i);
            let found =
                if under(i, &|p| p == "system.slice") { runtime_id(part, &["docker-"]) } else { None }
                    .or_else(|| under(i, &|p| p == "docker").then(|| runtime_id(part, &[""])).flatten())
                    .or_else(|| {
                        under(i, &|p| p == "machine.slice").then(|| runtime_id(part, &["libpod-"])).flatten()
                    })
                    .or_else(|| {
                        under(i, &in_pod)
                            .then(|| runtime_id(part, &["cri-containerd-", "crio-", "docker-", ""]))
                            .flatten()
                    });
            id.container_id = found;
        }
    }
    id
}

/// `ID` from `PREFIX-ID.scope` (or `ID` with the empty prefix), for a 64-hex-digit id.
fn runtime_id(part: &str, prefixes: &[&str]) -> Option<String> {
    let stem = part.strip_suffix(".scope").unwrap_or(part);
    if stem.starts_with("libpod-conmon-") {
        return None;
    }
    prefixes.iter().find_map(|p| stem.strip_prefix(p)).filter(|c| is_container_id(c)).map(str::to_string)
}

/// The pod UID a cgroup component names: `pod<uid>` (cgroupfs) or
/// `kubepods-burstable-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(part: &str) -> Option<String> {
    let slice = part.strip_suffix(".slice").unwrap_or(part);
    let candidates = [Some(slice), slice.rsplit_once('-').map(|(_, last)| last)];
    candidates.into_iter().flatten().find_map(|c| {
        let uid = c.strip_prefix("pod")?.replace('_', "-");
        (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
    })
}

/// Pod UID -> (namespace, name), from the kubelet's `/var/log/pods/<ns>_<pod>_<uid>` folders.
pub fn pod_names(pod_logs: &Path) -> HashMap<String, (String, String)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(pod_logs) else { return out };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.rsplitn(2, '_');
        let (Some(uid), Some(rest)) = (parts.next(), parts.next()) else { continue };
        if let Some((ns, pod)) = rest.split_once('_') {
            out.insert(uid.to_string(), (ns.to_string(), pod.to_string()));
        }
    }
    out
}

/// What entering other namespaces takes: CAP_SYS_ADMIN for setns, CAP_SYS_PTRACE to see the
/// namespaces of other users' processes.
pub const VISIT_CAPABILITIES: u64 = (1 << 21) | (1 << 19);

/// The effective capability set in a `/proc/.../status` text (its `CapEff:` line; 0 if none).
pub fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Keeps only `keep` of the calling thread's capabilities (and no ambient ones); the other
/// threads are unaffected. The sampler thread keeps [`VISIT_CAPABILITIES`]; the rest of the
/// daemon keeps none.
pub fn keep_thread_capabilities(keep: u64) -> io::Result<()> {
    crate::sys::keep_thread_capabilities(keep)
}

/// Sets no_new_privs for the calling thread and all it starts after (call it before any
/// thread): the programs the daemon runs (exec notifiers) can never gain capabilities, even
/// when the daemon runs as root.
pub fn no_new_privileges() -> io::Result<()> {
    crate::sys::no_new_privileges()
}

/// Why a visit failed.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    #[error("no process of the namespace is left")]
    Gone,
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot enter the namespace: {0} (CAP_SYS_ADMIN is needed)")]
    Enter(io::Error),
    #[error("cannot return to the daemon's own namespace: {0}")]
    Return(io::Error),
}

/// Visits namespaces from the calling thread, which it always brings back home: the
/// thread's own namespace is opened just before each visit and closed just after, so no
/// namespace descriptor is held between visits.
pub struct Visitor {
    procfs: PathBuf,
    pub home_inode: u64,
    /// Whether `procfs` numbers processes as this process's PID namespace does: only then
    /// does a pid from it name the same process to `pidfd_open`.
    same_pids: bool,
}

/// The calling thread's namespace.
const HOME: &str = "/proc/thread-self/ns/ipc";

/// The visiting thread's own namespace, open for one round of visits.
pub struct Home(File);

/// A pidfd on a process of a watched namespace. It keeps the process's identity, not its
/// namespace: when the process exits the namespace can go, and entering through the anchor
/// fails (the visitor then tries the namespace's other pids).
#[derive(Debug)]
pub struct Anchor(std::os::fd::OwnedFd);

impl Anchor {
    /// Whether its process still runs: then its pid is still that process (a pidfd names one
    /// process for good), and a scan need not read its start time to know.
    pub fn is_alive(&self) -> bool {
        crate::sys::pidfd_alive(&self.0)
    }
}

impl Visitor {
    pub fn new(procfs: &Path) -> io::Result<Visitor> {
        let home_inode = std::fs::metadata(HOME)?.ino();
        let same_pids = pid_in(procfs) == Some(std::process::id());
        Ok(Visitor { procfs: procfs.to_path_buf(), home_inode, same_pids })
    }

    /// The calling thread's namespace, to return to after visits: open it for a round of
    /// visits (one tick), and drop it after, so nothing is held between rounds.
    pub fn home(&self) -> Result<Home, VisitError> {
        File::open(HOME).map(Home).map_err(VisitError::Return)
    }

    /// Runs `f` inside namespace `inode`, entered through the first of `pids` that still
    /// lives in it. The namespace descriptor is closed before this returns.
    pub fn visit<T>(&self, inode: u64, pids: &[u32], f: impl FnOnce() -> T) -> Result<T, VisitError> {
        self.visit_from(&self.home()?, inode, pids, f)
    }

    /// An anchor on a process of namespace `inode`, if `pid` is in it: entering through it
    /// takes one `setns` and no path lookup. Checked after the pidfd is open, so the pid
    /// cannot have been reused in between.
    pub fn anchor(&self, inode: u64, pid: u32) -> Option<Anchor> {
        if !self.same_pids {
            return None;
        }
        let pidfd = crate::sys::pidfd_open(pid).ok()?;
        let link = std::fs::read_link(self.procfs.join(pid.to_string()).join("ns/ipc")).ok()?;
        (parse_ns_link(&link) == Some(inode)).then_some(Anchor(pidfd))
    }

    /// Runs `f` inside each of `targets` (inode, live pids, and an anchor if there is one)
    /// in turn, going from one namespace straight to the next and home once at the end:
    /// half the `setns` calls of single visits. Returns each target's result in order; `Err`
    /// only if this thread could not get home.
    pub fn visit_all<T>(
        &self,
        targets: &[(u64, &[u32], Option<&Anchor>)],
        mut f: impl FnMut() -> T,
    ) -> Result<Vec<Result<T, VisitError>>, VisitError> {
        // Opened only when a target is elsewhere: watching our own namespace alone opens
        // nothing.
        let mut home: Option<Home> = None;
        let mut away = false;
        let mut out = Vec::with_capacity(targets.len());
        for (inode, pids, anchor) in targets {
            if *inode == self.home_inode {
                if std::mem::take(&mut away) {
                    let h = home.as_ref().expect("opened before leaving");
                    crate::sys::enter_ipc_namespace(&h.0).map_err(VisitError::Return)?;
                }
                out.push(Ok(f()));
                continue;
            }
            if home.is_none() {
                home = Some(self.home()?);
            }
            // Through the anchor if its process lives; else through any live pid.
            let anchored = anchor.is_some_and(|a| crate::sys::enter_ipc_namespace(&a.0).is_ok());
            match if anchored { Ok(()) } else { self.enter(*inode, pids) } {
                Ok(()) => {
                    away = true;
                    out.push(Ok(f()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if let (true, Some(h)) = (away, &home) {
            crate::sys::enter_ipc_namespace(&h.0).map_err(VisitError::Return)?;
        }
        Ok(out)
    }

    /// Moves this thread into namespace `inode` through the first of `pids` still in it.
    fn enter(&self, inode: u64, pids: &[u32]) -> Result<(), VisitError> {
        let mut last = None;
        for pid in pids {
            let path = self.procfs.join(pid.to_string()).join("ns/ipc");
            match File::open(&path) {
                // The pid may have been reused by a process of another namespace.
                Ok(ns) if ns.metadata().map(|m| m.ino()).ok() == Some(inode) => {
                    return crate::sys::enter_ipc_namespace(&ns).map_err(VisitError::Enter);
                }
                Ok(_) => continue,
                // That process is gone: the next one may still be there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => last = Some(VisitError::Open { path, source }),
            }
        }
        Err(last.unwrap_or(VisitError::Gone))
    }

    /// [`Visitor::visit`] with the thread's namespace already open.
    pub fn visit_from<T>(
        &self,
        home: &Home,
        inode: u64,
        pids: &[u32],
        f: impl FnOnce() -> T,
    ) -> Result<T, VisitError> {
        if inode == self.home_inode {
            return Ok(f());
        }
        self.enter(inode, pids)?;
        let out = f();
        crate::sys::enter_ipc_namespace(&home.0).map_err(VisitError::Return)?;
        Ok(out)
    }
}

/// One namespace's sample, for `ipcwatch snapshot --all-namespaces`.
#[derive(Debug, Serialize)]
pub struct NamespaceSnapshot {
    pub namespace: Identity,
    /// `null` when the namespace could not be entered; `error` says why.
    pub snapshot: Option<crate::Snapshot>,
    pub error: Option<String>,
}

/// Samples every IPC namespace found under `procfs`, the caller's first. Without the
/// capabilities to enter the others, they are listed with the reason instead of a sample.
pub fn snapshot_all(config: crate::SamplerConfig, pod_logs: &Path) -> io::Result<Vec<NamespaceSnapshot>> {
    let visitor = Visitor::new(&config.procfs)?;
    let found = scan(&config.procfs, pod_logs)?;
    let mut sampler = crate::Sampler::new(config);
    let mut out: Vec<NamespaceSnapshot> = found
        .namespaces
        .into_iter()
        .map(|f| match visitor.visit(f.identity.inode, &f.pids, || sampler.snapshot()) {
            Ok(mut s) => {
                sampler.add_dev_shm(&mut s, f.identity.pid);
                NamespaceSnapshot { namespace: f.identity, snapshot: Some(s), error: None }
            }
            Err(e) => NamespaceSnapshot { namespace: f.identity, snapshot: None, error: Some(e.to_string()) },
        })
        .collect();
    out.sort_by_key(|n| (n.namespace.inode != visitor.home_inode, n.namespace.inode));
    Ok(out)
}

#[cfg(test)]
mod tests;

/// Notices new IPC namespaces between full scans, at the cost of the processes started since
/// the last look: the kernel's newest pid (the last field of `/proc/loadavg`) says which pids
/// are new, and only their `ns/ipc` links are read. A process that unshares right after it
/// starts is looked at again one check later. What it cannot judge (a pid counter that wrapped,
/// thousands of new pids) asks for a full scan; without loadavg it finds nothing, and the
/// periodic scans do the finding.
#[derive(Debug, Default)]
pub struct NewProcesses {
    /// The newest pid at the last look.
    last_pid: Option<u32>,
    /// Pids first seen at the last look, looked at once more.
    young: Vec<u32>,
    /// /proc/loadavg, kept open: one pread a tick.
    loadavg: Option<std::fs::File>,
    text: Vec<u8>,
}

/// Most new pids a check reads one by one; beyond, a full scan is cheaper.
pub const MAX_NEW_PIDS: u32 = 4096;

impl NewProcesses {
    /// Starts counting from now (call as a full scan begins: what starts after is new).
    pub fn reset(&mut self, procfs: &Path) {
        self.last_pid = self.newest_pid(procfs);
        self.young.clear();
    }

    /// The newest pid the kernel handed out in the reader's pid namespace (`/proc/loadavg`'s
    /// last field).
    fn newest_pid(&mut self, procfs: &Path) -> Option<u32> {
        use std::os::unix::fs::FileExt;
        if self.loadavg.is_none() {
            self.loadavg = std::fs::File::open(procfs.join("loadavg")).ok();
        }
        self.text.resize(128, 0);
        let n = self.loadavg.as_ref()?.read_at(&mut self.text, 0).ok()?;
        let text = std::str::from_utf8(&self.text[..n]).ok()?;
        text.split_whitespace().nth(4)?.parse().ok()
    }

    /// Whether a process started since the last look is in an IPC namespace `known` does not
    /// hold (then a full scan should run).
    pub fn found_new(&mut self, procfs: &Path, known: impl Fn(u64) -> bool) -> bool {
        // Without /proc/loadavg (a fixture tree) only the periodic scans find namespaces.
        let (Some(prev), Some(now)) = (self.last_pid, self.newest_pid(procfs)) else {
            self.reset(procfs);
            return false;
        };
        if now < prev || now - prev > MAX_NEW_PIDS {
            return true;
        }
        self.last_pid = Some(now);
        let again = std::mem::take(&mut self.young);
        let mut path = procfs.to_path_buf();
        let mut new = false;
        for (pid, first_look) in
            again.into_iter().map(|p| (p, false)).chain((prev + 1..=now).map(|p| (p, true)))
        {
            // A pid no longer (or not yet) there has no link.
            let Some(inode) = ipc_namespace_of(&mut path, pid.to_string()) else { continue };
            if !known(inode) {
                new = true;
            } else if first_look {
                self.young.push(pid);
            }
        }
        new
    }
}
