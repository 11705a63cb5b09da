//! System V IPC calls: the `*_INFO` totals and limits, the `*_STAT_ANY` walks, one object by id, removal.

use std::io;
use std::mem::MaybeUninit;

use super::*;
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
