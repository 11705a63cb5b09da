//! The only place ipcwatch talks to the kernel through raw calls.
//!
//! Every `unsafe` block of the project lives here, each with a `SAFETY:` line. The rest of the
//! crate sees small safe functions returning plain Rust values.
//!
//! libc lacks `SHM_INFO`, `SHM_STAT_ANY`, `MSG_STAT_ANY`, `struct shm_info` and `struct shminfo`
//! for Linux, so they are defined here with the kernel's layout (checked by the tests below).
//!
//! One file per domain: `ipc` (System V), `process`, `fs`, `mqueue`, `shared` (memory another
//! side writes); `testkit` (creating
//! objects) is for tests and benchmarks only.

mod fs;
mod ipc;
mod mqueue;
mod process;
mod shared;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(test)]
mod tests;

pub use fs::*;
pub use ipc::*;
pub use mqueue::*;
pub use process::*;
pub use shared::SharedWords;

use std::io;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
