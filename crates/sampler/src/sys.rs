//! The only place ipcwatch talks to the kernel through raw calls.
//!
//! Every `unsafe` block of the project lives here, each with a `SAFETY:` line. The rest of the
//! crate sees small safe functions returning plain Rust values.
//!
//! libc lacks `SHM_INFO`, `SHM_STAT_ANY`, `MSG_STAT_ANY`, `struct shm_info` and `struct shminfo`
//! for Linux, so they are defined here with the kernel's layout (checked by the tests below).

use std::io;
use std::mem::MaybeUninit;

use crate::snapshot::{Key, MessageQueue, Segment, SemaphoreArray};

pub const SHM_INFO: libc::c_int = 14;
pub const SHM_STAT_ANY: libc::c_int = 15;
pub const MSG_STAT_ANY: libc::c_int = 13;
/// Mode bit the kernel sets on a segment removed while still attached.
pub const SHM_DEST: u32 = 0o1000;
/// Mode bit of a segment locked in memory with `SHM_LOCK`.
pub const SHM_LOCKED: u32 = 0o2000;

/// `struct shm_info` from `<linux/shm.h>` (what `shmctl(SHM_INFO)` fills).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ShmInfo {
    pub used_ids: libc::c_int,
    pub shm_tot: libc::c_ulong,
    pub shm_rss: libc::c_ulong,
    pub shm_swp: libc::c_ulong,
    pub swap_attempts: libc::c_ulong,
    pub swap_successes: libc::c_ulong,
}

/// `struct shminfo` from `<linux/shm.h>` (what `shmctl(IPC_INFO)` fills; glibc's is the same size).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ShmLimitsRaw {
    pub shmmax: libc::c_ulong,
    pub shmmin: libc::c_ulong,
    pub shmmni: libc::c_ulong,
    pub shmseg: libc::c_ulong,
    pub shmall: libc::c_ulong,
    pub unused: [libc::c_ulong; 4],
}

/// What an `*_INFO` call returns: the struct plus the highest index in use.
pub struct Info<T> {
    pub max_index: i32,
    pub value: T,
}

/// `unsigned long` as u64: a no-op on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub fn ulong(v: libc::c_ulong) -> u64 {
    v as u64
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `semctl(0, 0, cmd, &seminfo)` for `SEM_INFO` or `IPC_INFO`.
pub fn seminfo(cmd: libc::c_int) -> io::Result<Info<libc::seminfo>> {
    let mut buf = MaybeUninit::<libc::seminfo>::zeroed();
    // SAFETY: for SEM_INFO/IPC_INFO the fourth argument is `union semun` whose `__buf` member is a
    // pointer to a seminfo; we pass that pointer (same ABI as the pointer-sized union) to a buffer
    // large enough for the kernel to fill, and read it back only after success.
    let ret = check(unsafe { libc::semctl(0, 0, cmd, buf.as_mut_ptr()) })?;
    // SAFETY: the buffer was zero-initialised and seminfo is plain integers, so any content is valid.
    Ok(Info { max_index: ret, value: unsafe { buf.assume_init() } })
}

/// `msgctl(0, cmd, &msginfo)` for `MSG_INFO` or `IPC_INFO`.
pub fn msginfo(cmd: libc::c_int) -> io::Result<Info<libc::msginfo>> {
    let mut buf = MaybeUninit::<libc::msginfo>::zeroed();
    // SAFETY: MSG_INFO/IPC_INFO write a struct msginfo through the msqid_ds pointer argument; the
    // buffer is a zeroed msginfo, which is what the kernel writes (and no more).
    let ret = check(unsafe { libc::msgctl(0, cmd, buf.as_mut_ptr().cast()) })?;
    // SAFETY: zero-initialised plain integers.
    Ok(Info { max_index: ret, value: unsafe { buf.assume_init() } })
}

/// `shmctl(0, SHM_INFO, &shm_info)`.
pub fn shm_info() -> io::Result<Info<ShmInfo>> {
    let mut buf = ShmInfo::default();
    // SAFETY: SHM_INFO writes a struct shm_info (layout above, tested) through the pointer.
    let ret = check(unsafe { libc::shmctl(0, SHM_INFO, (&mut buf as *mut ShmInfo).cast()) })?;
    Ok(Info { max_index: ret, value: buf })
}

/// `shmctl(0, IPC_INFO, &shminfo)`.
pub fn shm_limits() -> io::Result<Info<ShmLimitsRaw>> {
    let mut buf = ShmLimitsRaw::default();
    // SAFETY: IPC_INFO writes a struct shminfo (layout above, tested) through the pointer.
    let ret = check(unsafe { libc::shmctl(0, libc::IPC_INFO, (&mut buf as *mut ShmLimitsRaw).cast()) })?;
    Ok(Info { max_index: ret, value: buf })
}

/// Objects that vanish between the INFO call and the stat of their index are not errors.
fn vanished(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIDRM))
}

/// `semctl(index, 0, SEM_STAT_ANY)`: the array at `index`, or `None` if the slot is empty.
pub fn sem_stat_any(index: i32) -> io::Result<Option<SemaphoreArray>> {
    let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: SEM_STAT_ANY takes `union semun` whose `buf` member points to a semid_ds; we pass a
    // pointer to a zeroed one, which the kernel fills on success.
    let ret = unsafe { libc::semctl(index, 0, libc::SEM_STAT_ANY, ds.as_mut_ptr()) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if vanished(&err) { Ok(None) } else { Err(err) };
    }
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let ds = unsafe { ds.assume_init() };
    Ok(Some(SemaphoreArray {
        key: Key(ds.sem_perm.__key),
        id: ret,
        owner: ds.sem_perm.uid,
        creator: ds.sem_perm.cuid,
        mode: u32::from(ds.sem_perm.mode) & 0o777,
        semaphores: ulong(ds.sem_nsems),
        last_op_time: ds.sem_otime,
        changed_time: ds.sem_ctime,
    }))
}

/// `msgctl(index, MSG_STAT_ANY)`: the queue at `index`, or `None` if the slot is empty.
pub fn msg_stat_any(index: i32) -> io::Result<Option<MessageQueue>> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: MSG_STAT_ANY fills the msqid_ds the pointer designates; it is zeroed and ours.
    let ret = unsafe { libc::msgctl(index, MSG_STAT_ANY, ds.as_mut_ptr()) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if vanished(&err) { Ok(None) } else { Err(err) };
    }
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let ds = unsafe { ds.assume_init() };
    Ok(Some(MessageQueue {
        key: Key(ds.msg_perm.__key),
        id: ret,
        owner: ds.msg_perm.uid,
        creator: ds.msg_perm.cuid,
        mode: u32::from(ds.msg_perm.mode) & 0o777,
        messages: ds.msg_qnum,
        bytes: ds.__msg_cbytes,
        capacity_bytes: Some(ds.msg_qbytes),
        last_send_pid: ds.msg_lspid,
        last_recv_pid: ds.msg_lrpid,
        last_send_time: ds.msg_stime,
        last_recv_time: ds.msg_rtime,
        changed_time: ds.msg_ctime,
    }))
}

/// `shmctl(index, SHM_STAT_ANY)`: the segment at `index`, or `None` if the slot is empty.
pub fn shm_stat_any(index: i32) -> io::Result<Option<Segment>> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: SHM_STAT_ANY fills the shmid_ds the pointer designates; it is zeroed and ours.
    let ret = unsafe { libc::shmctl(index, SHM_STAT_ANY, ds.as_mut_ptr()) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return if vanished(&err) { Ok(None) } else { Err(err) };
    }
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let ds = unsafe { ds.assume_init() };
    let mut seg = Segment::new(
        Key(ds.shm_perm.__key),
        ret,
        ds.shm_perm.uid,
        u32::from(ds.shm_perm.mode),
        ds.shm_segsz as u64,
        ds.shm_nattch,
        ds.shm_cpid,
        ds.shm_lpid,
    );
    seg.attach_time = ds.shm_atime;
    seg.detach_time = ds.shm_dtime;
    seg.changed_time = ds.shm_ctime;
    Ok(Some(seg))
}

/// The page size SHMALL and `shm_tot` are counted in.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps > 0 {
        ps as u64
    } else {
        4096
    }
}

/// Moves the calling thread into the IPC namespace `ns` (an open `/proc/PID/ns/ipc`). Only
/// this thread moves; the caller returns it to its own namespace the same way.
pub fn enter_ipc_namespace(ns: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag; `ns` (a namespace file or a pidfd) is
    // open for the whole call.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWIPC) }).map(drop)
}

/// A pidfd for `pid`: it names that process for good (a reused pid cannot stand in for it)
/// and, unlike a namespace file, does not keep the process's namespaces alive.
pub fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether the process a pidfd names is alive (signal 0: nothing is sent).
pub fn pidfd_alive(fd: &impl std::os::fd::AsRawFd) -> bool {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null siginfo and
    // flags; signal 0 only checks that the process exists.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), 0, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Keeps only the capabilities in `keep` (bit numbers as in `<linux/capability.h>`) in the
/// calling thread's effective, permitted and inheritable sets, and clears its ambient set.
/// Other threads keep theirs: capabilities are per thread.
/// `PR_SET_NO_NEW_PRIVS` for the calling thread and every thread and child it creates after:
/// no exec can grant privileges again (a root process's exec otherwise regains every
/// capability in the bounding set; setuid and file capabilities are ignored).
pub fn no_new_privileges() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

pub fn keep_thread_capabilities(keep: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills the header and two Data structs (version 3), which we own.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) };
    check(ret as libc::c_int)?;
    for (i, d) in data.iter_mut().enumerate() {
        let mask = (keep >> (32 * i)) as u32;
        d.effective &= mask;
        d.permitted &= mask;
        d.inheritable = 0;
    }
    // SAFETY: capset reads the header and the two Data structs we pass; pid 0 is this thread.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(ret as libc::c_int)?;
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    check(ret).map(drop)
}

/// The user name of `uid` through NSS (`getpwuid_r`), or `None` when none resolves.
pub fn user_name(uid: u32) -> Option<String> {
    let mut pwd = MaybeUninit::<libc::passwd>::zeroed();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer designates memory we own for the duration of the call, and `buf.len()`
    // is the true size of `buf`.
    let rc = unsafe { libc::getpwuid_r(uid, pwd.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success `result` points to `pwd`, whose `pw_name` is a NUL-terminated string
    // inside `buf`, which is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr((*result).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The pid of the last process to operate on each semaphore of array `id` (`semctl GETPID`, one
/// call per semaphore: the kernel has no call that returns them all), appended to `out`.
/// Needs read permission on the array, or CAP_IPC_OWNER.
pub fn semaphore_pids(id: i32, nsems: u64, out: &mut Vec<i32>) -> io::Result<()> {
    for num in 0..nsems.min(i32::MAX as u64) as libc::c_int {
        // SAFETY: GETPID takes no `union semun` argument; semctl reads only integers.
        out.push(check(unsafe { libc::semctl(id, num, libc::GETPID) })?);
    }
    Ok(())
}

/// Clock ticks per second, the unit of a process's start time in `/proc/PID/stat`.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Whether process `pid` exists in the caller's pid namespace: `kill(pid, 0)` sends nothing
/// and, unlike /proc, is not hidden by `hidepid`/`ProtectProc`. `None` when it cannot tell.
pub fn process_exists(pid: i32) -> Option<bool> {
    if pid <= 0 {
        return Some(false);
    }
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return Some(true);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Some(false),
        Some(libc::EPERM) => Some(true),
        _ => None,
    }
}

/// The object whose id is `id`, found by `*_STAT_ANY` on its index (an id is its index plus a
/// sequence number times 32768), so no permission on the object is needed. `None` when that
/// slot is empty or now holds a different object.
pub fn stat_by_id<T>(
    id: i32,
    stat: fn(i32) -> io::Result<Option<T>>,
    id_of: fn(&T) -> i32,
) -> io::Result<Option<T>> {
    if id < 0 {
        return Ok(None);
    }
    Ok(stat(id % 32768)?.filter(|o| id_of(o) == id))
}

/// `IPC_RMID` of one object.
pub fn remove(kind: crate::Kind, id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer; a null pointer is what the kernel expects.
    let ret = unsafe {
        match kind {
            crate::Kind::Semaphores => libc::semctl(id, 0, libc::IPC_RMID),
            crate::Kind::MessageQueue => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            crate::Kind::SharedMemory => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    check(ret).map(drop)
}

/// Hands memory freed by a big, rare pass back to the system (glibc keeps freed heap pages
/// otherwise, and the resident size would keep the peak).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns unused heap pages; it takes an integer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What `statfs` says of a filesystem, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// `f_type`: tmpfs is 0x01021994, mqueue 0x19800202.
    pub kind: i64,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub inodes: u64,
    pub free_inodes: u64,
}

/// `statfs(path)`.
pub fn statfs(path: &std::path::Path) -> io::Result<FsUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut buf = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `buf` a zeroed statfs the kernel fills.
    check(unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) })?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    Ok(fs_usage(&unsafe { buf.assume_init() }))
}

fn fs_usage(b: &libc::statfs) -> FsUsage {
    let unit = b.f_frsize.max(b.f_bsize) as u64;
    // The statfs fields' widths differ between architectures; these casts are not no-ops
    // everywhere.
    #[allow(clippy::unnecessary_cast)]
    FsUsage {
        kind: b.f_type as i64,
        size_bytes: (b.f_blocks as u64).saturating_mul(unit),
        free_bytes: (b.f_bfree as u64).saturating_mul(unit),
        inodes: b.f_files as u64,
        free_inodes: b.f_ffree as u64,
    }
}

/// `path` opened `O_PATH`: a handle on it that asks its file system nothing (no `open`).
pub fn open_path(path: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `c` is a NUL-terminated path; the result is a new descriptor or -1.
    let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// File `name` (one component) in directory `dir`, opened for reading without blocking and
/// without following a symlink. Under /proc/sys a path lookup compares the name with every IPC
/// namespace's entry of the same name; a lookup relative to an open directory pays that once.
pub fn open_file_at(dir: &impl std::os::fd::AsRawFd, name: &str) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat reads the NUL-terminated `c`; the result is a new descriptor or -1.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Directory `name` (one component) under `dir`, opened `O_PATH`, refusing any symlink and
/// any way out of `dir` (`RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`): a container's link cannot
/// lead the walk to the host's files.
pub fn open_child_dir(dir: &impl std::os::fd::AsRawFd, name: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
    // struct open_how (the kernel's, 24 bytes); libc's is non-exhaustive.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads the NUL-terminated `c` and the `how` struct of the size given,
    // and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), c.as_ptr(), &how, std::mem::size_of::<OpenHow>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat2 and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The id of the mount `fd` is on: the never-reused 64-bit one (Linux 6.8+) if `unique`,
/// else the one /proc/PID/mountinfo shows. Read with `AT_STATX_DONT_SYNC`, so the file
/// system (a FUSE server) is not asked.
pub fn mount_id(fd: &impl std::os::fd::AsRawFd, unique: bool) -> io::Result<u64> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let want = if unique { STATX_MNT_ID_UNIQUE } else { libc::STATX_MNT_ID };
    // SAFETY: an empty path with AT_EMPTY_PATH names `fd` itself; `buf` is a zeroed statx
    // the kernel fills.
    check(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            want,
            buf.as_mut_ptr(),
        )
    })?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let s = unsafe { buf.assume_init() };
    if s.stx_mask & want == 0 {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "statx gives no such mount id"));
    }
    Ok(s.stx_mnt_id)
}

/// Removes `name` from directory `dir` if it is still the regular file (`dev`, `ino`) that
/// was judged: checked with `fstatat` (no symlink followed) just before `unlinkat`.
pub fn unlink_if_same(
    dir: &impl std::os::fd::AsRawFd,
    name: &std::ffi::OsStr,
    dev: u64,
    ino: u64,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
    if name.as_bytes().contains(&b'/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a single file name"));
    }
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `c` is NUL-terminated, `st` a zeroed stat the kernel fills; no symlink followed.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let st = unsafe { st.assume_init() };
    if st.st_dev != dev || st.st_ino != ino || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "another file has its name now"));
    }
    // SAFETY: `c` is a NUL-terminated single name relative to the open directory.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

/// `fstatfs(fd)`: only for a descriptor on a file system known to answer (tmpfs, mqueue).
pub fn fstatfs(fd: &impl std::os::fd::AsRawFd) -> io::Result<FsUsage> {
    let mut buf = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `buf` is a zeroed statfs the kernel fills for the open descriptor.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) })?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    Ok(fs_usage(&unsafe { buf.assume_init() }))
}

/// `O_PATH` directory `fd` opened again for reading (listing): only for a file system known
/// to answer.
pub fn reopen_dir(fd: &impl std::os::fd::AsRawFd) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: "." relative to the directory descriptor; the result is a new descriptor or -1.
    let new = check(unsafe {
        libc::openat(fd.as_raw_fd(), c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
    })?;
    // SAFETY: `new` was just returned by openat and is owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(new) })
}

/// A private, detached mount of the calling thread's IPC namespace's mqueue filesystem
/// (`fsopen`/`fsconfig`/`fsmount`): a directory descriptor, attached to no mount point. It
/// keeps the namespace's queues (and their owners' charges) alive while open, so callers
/// close it before they return.
pub fn mqueue_mount() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY_NOSUID_NODEV_NOEXEC: libc::c_uint = 0x1 | 0x2 | 0x4 | 0x8;
    let fd = |ret: libc::c_long| -> io::Result<std::os::fd::OwnedFd> {
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just returned to us and nobody else owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(ret as libc::c_int) })
    };
    // SAFETY: fsopen takes a NUL-terminated filesystem name and flags.
    let fs = fd(unsafe { libc::syscall(libc::SYS_fsopen, c"mqueue".as_ptr(), FSOPEN_CLOEXEC) })?;
    use std::os::fd::AsRawFd;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux argument.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsmount takes the filesystem context descriptor and two flag words.
    fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY_NOSUID_NODEV_NOEXEC,
        )
    })
}

/// One POSIX queue read through its directory: `openat` + `fstat` + `mq_getsetattr` +
/// `close`, with no path walk. Returns (owner uid, mode, max messages, message size, messages).
pub fn mqueue_at(
    dir: &impl std::os::fd::AsRawFd,
    name: &std::ffi::OsStr,
) -> io::Result<(u32, u32, u64, u64, u64)> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
    // SAFETY: a directory descriptor we hold open, a NUL-terminated name, and flags.
    let fd = check(unsafe {
        libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK)
    })?;
    // SAFETY: the descriptor openat just returned, owned from here on (closed on drop).
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    let (max, size, cur) = mqueue_attributes(&file)?;
    Ok((meta.uid(), meta.mode() & 0o777, max, size, cur))
}

/// `mq_open(name, O_RDONLY)` in the calling thread's IPC namespace (whatever is mounted
/// where): `name` without its leading `/`. Opening changes no time stamp.
pub fn mqueue_open(name: &std::ffi::OsStr) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))?;
    // SAFETY: a NUL-terminated name and flags; without O_CREAT the mode and attributes are
    // not read.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mq_open,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned to us and nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(ret as libc::c_int) })
}

/// A POSIX queue's attributes from a plain `open()` descriptor of its file
/// (`mq_getsetattr(fd, NULL, &attr)`): unlike reading the file, it changes no time stamp.
/// Returns (max messages, message size, messages queued).
pub fn mqueue_attributes(file: &impl std::os::fd::AsRawFd) -> io::Result<(u64, u64, u64)> {
    let mut attr = MaybeUninit::<libc::mq_attr>::zeroed();
    // SAFETY: a null new-attribute pointer only reads; `attr` is a zeroed mq_attr we own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            file.as_raw_fd(),
            std::ptr::null::<libc::mq_attr>(),
            attr.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let a = unsafe { attr.assume_init() };
    Ok((a.mq_maxmsg.max(0) as u64, a.mq_msgsize.max(0) as u64, a.mq_curmsgs.max(0) as u64))
}

/// Creates and drives IPC objects for tests and benchmarks (feature `testkit`); never used by
/// the daemon, which only reads.
#[cfg(feature = "testkit")]
pub mod testkit {
    use std::io;

    fn id(ret: libc::c_int) -> io::Result<i32> {
        super::check(ret)
    }

    /// `semget(key, nsems, IPC_CREAT|IPC_EXCL|0600)`; key 0 is IPC_PRIVATE.
    pub fn sem_create(key: i32, nsems: i32) -> io::Result<i32> {
        // SAFETY: semget takes only integers.
        id(unsafe { libc::semget(key, nsems, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })
    }

    pub fn msg_create(key: i32) -> io::Result<i32> {
        // SAFETY: msgget takes only integers.
        id(unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })
    }

    pub fn shm_create(key: i32, size: usize) -> io::Result<i32> {
        // SAFETY: shmget takes only integers.
        id(unsafe { libc::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) })
    }

    /// A segment with no swap reservation (`SHM_NORESERVE`), so it can be absurdly large.
    pub fn shm_create_noreserve(key: i32, size: usize) -> io::Result<i32> {
        const SHM_NORESERVE: libc::c_int = 0o10000;
        // SAFETY: shmget takes only integers.
        id(unsafe { libc::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | SHM_NORESERVE | 0o600) })
    }

    /// Sends one message of `size` bytes without waiting; `Ok(false)` when the queue is full.
    pub fn msg_send(id: i32, size: usize) -> io::Result<bool> {
        let header = std::mem::size_of::<libc::c_long>();
        let mut buf = vec![0u8; header + size];
        buf[..header].copy_from_slice(&(1 as libc::c_long).to_ne_bytes()); // mtype 1
                                                                           // SAFETY: buf holds a c_long mtype followed by `size` bytes of text, as msgsnd requires.
        let ret = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), size, libc::IPC_NOWAIT) };
        if ret == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EAGAIN) {
            Ok(false)
        } else {
            Err(err)
        }
    }

    /// Sets a queue's capacity (`msg_qbytes`) with IPC_SET.
    pub fn msg_set_capacity(id: i32, bytes: u64) -> io::Result<()> {
        // SAFETY: zeroed msqid_ds is valid plain data; IPC_STAT fills it, IPC_SET reads it.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer designates our msqid_ds.
        super::check(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
        ds.msg_qbytes = bytes;
        // SAFETY: as above.
        super::check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
    }

    /// Attaches a segment and writes `touch` bytes so they become resident; returns the address.
    pub fn shm_attach(id: i32, touch: usize) -> io::Result<usize> {
        // SAFETY: a null address lets the kernel choose where to map the segment.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is at least as large as the segment, and callers pass touch <= size.
        unsafe { std::ptr::write_bytes(addr.cast::<u8>(), 1, touch) };
        Ok(addr as usize)
    }

    pub fn shm_detach(addr: usize) -> io::Result<()> {
        // SAFETY: addr came from shm_attach; after this no reference into the mapping remains.
        super::check(unsafe { libc::shmdt(addr as *const libc::c_void) }).map(drop)
    }

    /// IPC_RMID of a semaphore array, queue or segment (`kind` = "sem", "msg" or "shm").
    pub fn remove(kind: &str, id: i32) -> io::Result<()> {
        let kind = match kind {
            "sem" => crate::Kind::Semaphores,
            "msg" => crate::Kind::MessageQueue,
            "shm" => crate::Kind::SharedMemory,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "kind is sem, msg or shm")),
        };
        super::remove(kind, id)
    }

    /// `mq_open(name, O_CREAT|O_EXCL|O_RDWR, 0600, {maxmsg, msgsize})`, closed at once: the
    /// queue lives on until unlinked. `name` starts with `/`.
    pub fn mq_create(name: &str, maxmsg: i64, msgsize: i64) -> io::Result<()> {
        let c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        // SAFETY: mq_attr is plain integers.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = maxmsg;
        attr.mq_msgsize = msgsize;
        // SAFETY: a NUL-terminated name, flags, a mode and a pointer to our mq_attr.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_mq_open,
                c.as_ptr().add(1), // the syscall takes the name without its leading slash
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                0o600 as libc::mode_t,
                &mut attr as *mut libc::mq_attr,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor mq_open just returned, closed once.
        unsafe { libc::close(fd as libc::c_int) };
        Ok(())
    }

    /// Sends one message of `size` bytes to queue `name` (`mq_timedsend` without waiting).
    pub fn mq_send(name: &str, size: usize) -> io::Result<()> {
        let c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        // SAFETY: a NUL-terminated name (without its slash) and flags; no attributes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_mq_open,
                c.as_ptr().add(1),
                libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                0,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let msg = vec![7u8; size];
        // SAFETY: `msg` is `size` bytes; a null timeout with O_NONBLOCK never waits.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mq_timedsend,
                fd,
                msg.as_ptr(),
                size,
                0 as libc::c_uint,
                std::ptr::null::<libc::timespec>(),
            )
        };
        let err = io::Error::last_os_error();
        // SAFETY: the descriptor opened above, closed once.
        unsafe { libc::close(fd as libc::c_int) };
        if ret < 0 {
            Err(err)
        } else {
            Ok(())
        }
    }

    /// Maps `path` shared and closes it: the mapping alone keeps the file in use (as
    /// PostgreSQL's dynamic shared memory does). Stays mapped until the process ends.
    pub fn map_file(path: &str) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len().max(1) as usize;
        // SAFETY: a new shared mapping of a file we opened; the kernel chooses the address and
        // nothing in this process ever dereferences it.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `mq_unlink(name)`.
    pub fn mq_unlink(name: &str) -> io::Result<()> {
        let c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        // SAFETY: a NUL-terminated name without its leading slash.
        let ret = unsafe { libc::syscall(libc::SYS_mq_unlink, c.as_ptr().add(1)) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// One `semop` of +1 on semaphore `num` of array `id`: records the caller as its last pid.
    pub fn sem_post(id: i32, num: u16) -> io::Result<()> {
        let mut op = libc::sembuf { sem_num: num, sem_op: 1, sem_flg: 0 };
        // SAFETY: one sembuf, ours, and the count passed is 1.
        super::check(unsafe { libc::semop(id, &mut op, 1) }).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    // Sizes of the kernel's structs on 64-bit Linux (x86_64, aarch64), from <linux/shm.h>.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn shm_struct_layouts_match_the_kernel() {
        assert_eq!(size_of::<ShmInfo>(), 48);
        assert_eq!(std::mem::offset_of!(ShmInfo, shm_tot), 8);
        assert_eq!(size_of::<ShmLimitsRaw>(), 72);
        assert_eq!(std::mem::offset_of!(ShmLimitsRaw, shmall), 32);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn libc_structs_have_the_kernel_sizes() {
        assert_eq!(size_of::<libc::seminfo>(), 40);
        assert_eq!(size_of::<libc::msginfo>(), 32);
        assert_eq!(size_of::<libc::semid_ds>(), 104);
        assert_eq!(size_of::<libc::msqid_ds>(), 120);
        assert_eq!(size_of::<libc::shmid_ds>(), 112);
    }

    #[test]
    fn info_calls_work_unprivileged() {
        // Only reads counters of whatever namespace the test runs in; creates nothing.
        assert!(seminfo(libc::IPC_INFO).unwrap().value.semmni > 0);
        assert!(msginfo(libc::IPC_INFO).unwrap().value.msgmni > 0);
        assert!(shm_limits().unwrap().value.shmmni > 0);
        assert!(shm_info().is_ok());
        assert!(page_size() >= 4096);
    }

    #[test]
    fn root_resolves() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
