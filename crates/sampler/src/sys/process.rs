//! The calling thread and other processes: namespaces, pidfds, capabilities, users, clocks, memory.

use std::io;
use std::mem::MaybeUninit;

use super::*;

/// The page size SHMALL and `shm_tot` are counted in.
pub fn page_size() -> u64 {
    sysconf_or(libc::_SC_PAGESIZE, 4096)
}

/// `sysconf(name)`, or `default` where the system does not say.
fn sysconf_or(name: libc::c_int, default: u64) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        default
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

/// Clock ticks per second, the unit of a process's start time in `/proc/PID/stat`.
pub fn clock_ticks() -> u64 {
    sysconf_or(libc::_SC_CLK_TCK, 100)
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

/// Hands memory freed by a big, rare pass back to the system (the allocator keeps freed
/// pages otherwise, and the resident size would keep the peak): mimalloc's where the binary
/// allocates with it (feature `mimalloc`), else glibc's.
pub fn release_free_memory() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect takes a bool and only frees pages the allocator holds unused.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(not(feature = "mimalloc"), target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages; it takes an integer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// mimalloc's `mi_option_purge_delay`: 15 in both its v2 and v3 headers (libmimalloc-sys
/// exports no constant for it; a test checks its default, 1,000 ms in the v3 it builds).
#[cfg(feature = "mimalloc")]
pub(crate) const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes the allocator hand pages back to the system as soon as they are free, not after its
/// delay (1 s, and 10 s for whole arenas, in mimalloc v3): with it, about 2 MB more stayed
/// resident at 1,000 namespaces, and the peak was 2.5 MB higher, for no CPU measurably saved.
pub fn purge_freed_memory_at_once() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_option_set takes an option number and a value; it only changes a setting.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// CLOCK_BOOTTIME in nanoseconds: the clock the eBPF probes stamp events with
/// (`bpf_ktime_get_boot_ns`), so they can be put on the wall clock.
pub fn boot_clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which we own.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if ret != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Raises this process's soft limit on open files to its hard limit, as a server that holds
/// a descriptor per watched namespace should (systemd and container runtimes commonly give
/// 1,024 soft with a far higher hard limit). Returns the soft limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct, which `lim` is.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct, which `raised` is.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) })?;
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(lim.rlim_cur)
}

/// `struct procmap_query` (include/uapi/linux/fs.h, Linux 6.11): 104 bytes.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProcmapQuery {
    pub(crate) size: u64,
    pub(crate) query_flags: u64,
    pub(crate) query_addr: u64,
    pub(crate) vma_start: u64,
    pub(crate) vma_end: u64,
    pub(crate) vma_flags: u64,
    pub(crate) vma_page_size: u64,
    pub(crate) vma_offset: u64,
    pub(crate) inode: u64,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) vma_name_size: u32,
    pub(crate) build_id_size: u32,
    pub(crate) vma_name_addr: u64,
    pub(crate) build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
pub(crate) const PROCMAP_QUERY: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<ProcmapQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;
/// `PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_FILE_BACKED_VMA`: the first mapping of
/// a file at or after the address.
const NEXT_FILE_MAPPING: u64 = 0x10 | 0x20;

/// Calls `each(device, inode)` for every file mapping of the process whose /proc/PID/maps
/// `maps` is, asked one mapping at a time with `PROCMAP_QUERY`: the kernel formats no text
/// and resolves no path, which is most of what reading the maps costs.
/// ENOTTY: a kernel before 6.11 (read the text instead); ESRCH: the process has no memory
/// (a kernel thread, a zombie, or it ended).
pub fn file_mappings(maps: &impl std::os::fd::AsRawFd, mut each: impl FnMut(u64, u64)) -> io::Result<()> {
    let mut addr = 0u64;
    loop {
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: NEXT_FILE_MAPPING,
            query_addr: addr,
            ..Default::default()
        };
        // SAFETY: PROCMAP_QUERY reads and fills the struct of the size it states; with
        // vma_name_size and build_id_size 0 the kernel writes nowhere else.
        if unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY, &mut q) } < 0 {
            let e = io::Error::last_os_error();
            // ENOENT: no mapping at or after `addr`, so all were seen.
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(e) };
        }
        each(libc::makedev(q.dev_major, q.dev_minor), q.inode);
        // Each answer ends past the address asked, so the walk ends; a kernel that answered
        // otherwise is not believed.
        if q.vma_end <= addr {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "PROCMAP_QUERY did not advance"));
        }
        addr = q.vma_end;
    }
}

/// The device and inode of the file `name` in directory `dir` leads to, following a link:
/// an entry of /proc/PID/fd is the open file's. Relative to the open directory, so
/// /proc/PID/fd is not looked up again for every descriptor.
pub fn stat_at(dir: &impl std::os::fd::AsRawFd, name: &std::ffi::CStr) -> io::Result<(u64, u64)> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstatat reads the NUL-terminated `name` and fills the zeroed stat buffer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), 0) })?;
    // SAFETY: zero-initialised plain integers, filled by the kernel.
    let st = unsafe { st.assume_init() };
    Ok((st.st_dev, st.st_ino))
}
