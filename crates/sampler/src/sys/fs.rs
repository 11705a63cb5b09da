//! Files reached without following a container's symlinks: `O_PATH` walks, mount ids, statfs.

use std::io;
use std::mem::MaybeUninit;

use super::*;

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
