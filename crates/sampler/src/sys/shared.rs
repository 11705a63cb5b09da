//! A read-only shared mapping of a file's first bytes as 64-bit words, for counters another
//! side (a BPF program, through a `BPF_F_MMAPABLE` array) writes while we read: a read is a
//! load from memory, where a map lookup is a syscall.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct SharedWords {
    start: NonNull<AtomicU64>,
    words: usize,
    mapped: usize,
}

// SAFETY: the mapping is owned by this value alone and only read through atomics, which
// any thread may do.
unsafe impl Send for SharedWords {}
// SAFETY: as above: `&SharedWords` only loads atomically.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// Maps the first `words` 64-bit words of `fd` (from offset 0), read-only and shared.
    pub fn map(fd: BorrowedFd<'_>, words: usize) -> io::Result<SharedWords> {
        let bytes = words.checked_mul(8).filter(|&b| b > 0).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: asks the kernel for a new mapping at an address of its choosing; nothing of
        // ours is overwritten, and the result is checked before use.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(addr.cast::<AtomicU64>()).ok_or(io::ErrorKind::Other)?;
        Ok(SharedWords { start, words, mapped: bytes })
    }

    /// Word `index`, as last written (`None` past the end).
    pub fn load(&self, index: usize) -> Option<u64> {
        if index >= self.words {
            return None;
        }
        // SAFETY: `index` is within the `words` mapped, page-aligned (so 8-byte aligned)
        // words, which live as long as `self`; the writer changes them concurrently, which an
        // atomic load allows.
        Some(unsafe { self.start.add(index).as_ref() }.load(Ordering::Relaxed))
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; no reference into it outlives `self`.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.mapped) };
    }
}
