//! Semaphores: `SEM_INFO` for the totals, a `SEM_STAT_ANY` walk for each array.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "sem";

impl Sampler {
    pub(crate) fn semaphores(&mut self, warnings: &mut Vec<String>) -> Outcome<Semaphores> {
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/sem", procfs::parse_sem, warnings).map(|items| Semaphores {
                arrays: items.len() as u64,
                semaphores: saturating_sum(items.iter().map(|a| a.semaphores)),
                items,
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::seminfo(libc::SEM_INFO) {
            Ok(info) => info,
            Err(e) => return self.fallback("semctl(SEM_INFO)", e, from_text, warnings),
        };
        let arrays = info.value.semusz as u64;
        let totals = |items| Semaphores { arrays, semaphores: info.value.semaem as u64, items };
        if !self.config.semaphore_detail {
            return Outcome::ok(totals(Vec::new()), Origin::Syscall);
        }
        match walk(info.max_index, arrays, sys::sem_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => self.items_from_text("sysvipc/sem", procfs::parse_sem, totals, warnings),
            Err(e) => self.fallback("semctl(SEM_STAT_ANY)", e, from_text, warnings),
        }
    }
}
