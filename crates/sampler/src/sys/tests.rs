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
