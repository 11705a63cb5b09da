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

/// The option number the allocator setting uses is the purge delay's: its default is 1,000 ms
/// in mimalloc v3 (10 in v2); no option next to it has either.
#[cfg(feature = "mimalloc")]
#[test]
fn the_purge_delay_option_is_the_one_set() {
    // SAFETY: mi_option_get takes an option number and reads a setting.
    let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        assert!(delay == 1000 || delay == 10, "{delay}");
    }
}

#[test]
fn shared_words_read_what_the_file_holds_and_see_later_writes() {
    use std::io::{Seek, Write};
    use std::os::fd::AsFd;
    let path = std::env::temp_dir().join(format!("ipcwatch-shared-words-{}", std::process::id()));
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let words: Vec<u8> = [7u64, u64::MAX].iter().flat_map(|w| w.to_ne_bytes()).collect();
    file.write_all(&words).unwrap();
    let shared = SharedWords::map(file.as_fd(), 2).unwrap();
    assert_eq!((shared.load(0), shared.load(1), shared.load(2)), (Some(7), Some(u64::MAX), None));
    // A write through the file shows in the mapping: it is shared, not a copy.
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.write_all(&42u64.to_ne_bytes()).unwrap();
    assert_eq!(shared.load(0), Some(42));
    assert!(SharedWords::map(file.as_fd(), 0).is_err());
}

#[test]
fn procmap_query_has_the_kernels_layout_and_number() {
    // include/uapi/linux/fs.h (Linux 6.11): 104 bytes; _IOWR('f', 17, ...) = 0xC0686611.
    assert_eq!(size_of::<ProcmapQuery>(), 104);
    assert_eq!(std::mem::offset_of!(ProcmapQuery, inode), 64);
    assert_eq!(std::mem::offset_of!(ProcmapQuery, dev_major), 72);
    assert_eq!(std::mem::offset_of!(ProcmapQuery, vma_name_addr), 88);
    assert_eq!(PROCMAP_QUERY, 0xC068_6611);
}

#[test]
fn file_mappings_agree_with_the_maps_text() {
    use std::os::unix::fs::MetadataExt;
    // This test binary maps itself: its device and inode are among its file mappings, and
    // the set is the one /proc/self/maps prints.
    let maps = std::fs::File::open("/proc/self/maps").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    match file_mappings(&maps, |dev, ino| {
        seen.insert((dev, ino));
    }) {
        Ok(()) => {}
        // A kernel before 6.11: the caller reads the text; nothing to compare.
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => return,
        Err(e) => panic!("{e}"),
    }
    let exe = std::fs::metadata("/proc/self/exe").unwrap();
    assert!(seen.contains(&(exe.dev(), exe.ino())), "{seen:?}");
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let from_text: std::collections::BTreeSet<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, ino) = (f.nth(3)?, f.next()?.parse::<u64>().ok()?);
            let (maj, min) = dev.split_once(':')?;
            let dev = libc::makedev(u32::from_str_radix(maj, 16).ok()?, u32::from_str_radix(min, 16).ok()?);
            (ino != 0).then_some((dev, ino))
        })
        .collect();
    assert_eq!(seen, from_text);
}

#[test]
fn stat_at_follows_a_descriptors_link() {
    use std::os::unix::fs::MetadataExt;
    let fds = std::fs::File::open("/proc/self/fd").unwrap();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let name = std::ffi::CString::new(std::os::fd::AsRawFd::as_raw_fd(&file).to_string()).unwrap();
    let exe = file.metadata().unwrap();
    assert_eq!(stat_at(&fds, &name).unwrap(), (exe.dev(), exe.ino()));
}
