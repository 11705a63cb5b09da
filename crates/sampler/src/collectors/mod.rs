//! One module per collector: what it reads, how, and under which name it reports.

pub(crate) mod devshm;
pub(crate) mod limits;
pub(crate) mod msg;
pub(crate) mod posix_queues;
pub(crate) mod sem;
pub(crate) mod shm;
