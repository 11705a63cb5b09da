//! POSIX message queues: a private mqueue mount, and each queue's attributes.

use std::io;
use std::mem::MaybeUninit;

use super::*;

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
