//! Creates and drives IPC objects for tests and benchmarks (feature `testkit`); never used by
//! the daemon, which only reads.

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

/// Makes this process undumpable: without CAP_SYS_PTRACE nobody can then read its
/// /proc/PID/ns, maps or fd, as with another user's process.
pub fn set_undumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
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

/// One `semtimedop` of -1 on semaphore `num` of array `id`, waiting at most `timeout`:
/// `Ok(true)` if it got the semaphore, `Ok(false)` if the wait timed out (EAGAIN).
pub fn sem_wait(id: i32, num: u16, timeout: std::time::Duration) -> io::Result<bool> {
    let mut op = libc::sembuf { sem_num: num, sem_op: -1, sem_flg: 0 };
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: one sembuf and one timespec, both ours; glibc's semtimedop takes them by pointer.
    let ret = unsafe { libc::syscall(libc::SYS_semtimedop, id, &mut op as *mut libc::sembuf, 1usize, &ts) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(false),
        _ => Err(err),
    }
}

/// Sends one message of `size` bytes, waiting while the queue is full (no IPC_NOWAIT).
pub fn msg_send_wait(id: i32, size: usize) -> io::Result<()> {
    let header = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; header + size];
    buf[..header].copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
    // SAFETY: buf holds a c_long mtype followed by `size` bytes of text, as msgsnd requires.
    super::check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), size, 0) }).map(drop)
}

/// Receives one message of at most `size` bytes without waiting: `Ok(false)` if none.
pub fn msg_receive(id: i32, size: usize) -> io::Result<bool> {
    let header = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; header + size];
    // SAFETY: buf has room for a c_long mtype and `size` bytes of text.
    let ret =
        unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), size, 0, libc::IPC_NOWAIT | libc::MSG_NOERROR) };
    if ret >= 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOMSG) => Ok(false),
        _ => Err(err),
    }
}

/// Tries `semget(IPC_PRIVATE)`, `msgget(IPC_PRIVATE)` or `shmget(IPC_PRIVATE, size)` (kind
/// `sem`, `msg`, `shm`) `count` times: how many were made, and the errno of each refusal.
pub fn try_create(kind: &str, count: usize, size: usize) -> io::Result<(usize, Vec<i32>)> {
    let (mut made, mut refused) = (0, Vec::new());
    for _ in 0..count {
        let r = match kind {
            "sem" => sem_create(0, size.max(1) as i32),
            "msg" => msg_create(0),
            "shm" => shm_create(0, size.max(1)),
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match r {
            Ok(_) => made += 1,
            Err(e) => refused.push(e.raw_os_error().unwrap_or(0)),
        }
    }
    Ok((made, refused))
}

/// One `semop` of `delta` on semaphore `num` of array `id`, waiting as the kernel decides.
pub fn sem_op(id: i32, num: u16, delta: i16) -> io::Result<()> {
    let mut op = libc::sembuf { sem_num: num, sem_op: delta, sem_flg: 0 };
    // SAFETY: one sembuf, ours, and the count passed is 1.
    super::check(unsafe { libc::semop(id, &mut op, 1) }).map(drop)
}

/// Sends one message of type `mtype` with `size` bytes of text, waiting while the queue is full.
pub fn msg_send_type(id: i32, mtype: i64, size: usize) -> io::Result<()> {
    let header = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; header + size];
    buf[..header].copy_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    // SAFETY: buf holds a c_long mtype followed by `size` bytes of text, as msgsnd requires.
    super::check(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), size, 0) }).map(drop)
}

/// Receives one message of type `mtype` (at most `size` bytes), waiting until one comes.
pub fn msg_receive_type(id: i32, mtype: i64, size: usize) -> io::Result<()> {
    let header = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; header + size];
    // SAFETY: buf has room for a c_long mtype and `size` bytes of text.
    let ret = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), size, mtype as libc::c_long, 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
