//! The SysV limits: `IPC_INFO`, or /proc/sys/kernel as a fallback.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "limits";

fn note_call_failure<T>(errors: &mut Vec<Error>, call: &'static str, failed: Option<io::Result<T>>) {
    if let Some(Err(source)) = failed {
        errors.push(Error::Call { call, source });
    }
}

/// How often a watched namespace's SysV limits (three IPC_INFO calls) are read again: only a
/// write to its /proc/sys/kernel changes them, and Netdata reads them once a minute. A
/// one-shot sample (no [`Sampler::set_target`]) reads them every time.
pub const LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Sampler {
    pub(crate) fn limits(&mut self) -> Outcome<Limits> {
        let mut limits =
            Limits { semvmx: Some(SEMVMX), semaem: Some(SEMAEM), shmmin: Some(SHMMIN), ..Default::default() };
        let mut errors: Vec<Error> = Vec::new();
        let mut used_text = false;
        let auto = self.config.source == Source::Auto;

        match auto.then(|| sys::seminfo(libc::IPC_INFO)) {
            Some(Ok(i)) => {
                let v = i.value;
                limits.semmsl = Some(v.semmsl as u64);
                limits.semmns = Some(v.semmns as u64);
                limits.semopm = Some(v.semopm as u64);
                limits.semmni = Some(v.semmni as u64);
                limits.semvmx = Some(v.semvmx as u64);
                limits.semaem = Some(v.semaem as u64);
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "semctl(IPC_INFO)", failed);
                match self.read_parsed("sys/kernel/sem", procfs::parse_sem_limits) {
                    Ok([msl, mns, opm, mni]) => {
                        (limits.semmsl, limits.semmns, limits.semopm, limits.semmni) =
                            (Some(msl), Some(mns), Some(opm), Some(mni))
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        match auto.then(|| sys::msginfo(libc::IPC_INFO)) {
            Some(Ok(i)) => {
                limits.msgmni = Some(i.value.msgmni as u64);
                limits.msgmax = Some(i.value.msgmax as u64);
                limits.msgmnb = Some(i.value.msgmnb as u64);
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "msgctl(IPC_INFO)", failed);
                limits.msgmni = self.number("sys/kernel/msgmni", &mut errors);
                limits.msgmax = self.number("sys/kernel/msgmax", &mut errors);
                limits.msgmnb = self.number("sys/kernel/msgmnb", &mut errors);
            }
        }
        match auto.then(sys::shm_limits) {
            Some(Ok(i)) => {
                limits.shmmni = Some(sys::ulong(i.value.shmmni));
                limits.shmmax = Some(sys::ulong(i.value.shmmax));
                limits.shmall = Some(sys::ulong(i.value.shmall));
                limits.shmmin = Some(sys::ulong(i.value.shmmin));
            }
            failed => {
                used_text = true;
                note_call_failure(&mut errors, "shmctl(IPC_INFO)", failed);
                limits.shmmni = self.number("sys/kernel/shmmni", &mut errors);
                limits.shmmax = self.number("sys/kernel/shmmax", &mut errors);
                limits.shmall = self.number("sys/kernel/shmall", &mut errors);
            }
        }
        let origin = match (auto, used_text) {
            (true, false) => Origin::Syscall,
            (true, true) => Origin::Mixed,
            (false, _) => Origin::Procfs,
        };
        // Partial limits are kept: a missing one is `None`, the others stay true values.
        let complete = !limits.any_missing();
        if !complete && errors.is_empty() {
            errors.push(Error::Incomplete("some limits could not be read"));
        }
        let error = match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        };
        Outcome { value: Some(limits), origin, error, complete }
    }

    /// Reads one number from a sysctl file, recording the error if it cannot.
    pub(crate) fn number(&mut self, rel: &str, errors: &mut Vec<Error>) -> Option<u64> {
        self.read_parsed(rel, procfs::parse_number).map_err(|e| errors.push(e)).ok()
    }
}
