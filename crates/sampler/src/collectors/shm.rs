//! Shared memory: `SHM_INFO` for the totals, a `SHM_STAT_ANY` walk for each segment.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "shm";

fn shm_totals(
    segments: u64,
    pages: u64,
    resident_bytes: u64,
    swapped_bytes: u64,
    items: Vec<Segment>,
) -> SharedMemory {
    let orphans = items.iter().filter(|s| s.is_orphaned());
    SharedMemory {
        segments,
        bytes: saturating_sum(items.iter().map(|s| s.size_bytes)),
        pages,
        resident_bytes,
        swapped_bytes,
        orphaned_segments: orphans.clone().count() as u64,
        orphaned_bytes: saturating_sum(orphans.map(|s| s.size_bytes)),
        destroyed_attached_segments: items.iter().filter(|s| s.destroyed && s.attached > 0).count() as u64,
        items,
    }
}

impl Sampler {
    pub(crate) fn shared_memory(&mut self, warnings: &mut Vec<String>) -> Outcome<SharedMemory> {
        let page = self.page_size;
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/shm", procfs::parse_shm, warnings).map(|items| {
                if items.first().is_some_and(|s| s.resident_bytes.is_none()) {
                    warnings.push(
                        "/proc/sysvipc/shm has no rss/swap columns: resident and swapped bytes read as 0"
                            .into(),
                    );
                }
                shm_totals(
                    items.len() as u64,
                    saturating_sum(items.iter().map(|s| s.size_bytes.div_ceil(page))),
                    saturating_sum(items.iter().filter_map(|s| s.resident_bytes)),
                    saturating_sum(items.iter().filter_map(|s| s.swapped_bytes)),
                    items,
                )
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::shm_info() {
            Ok(info) => info,
            Err(e) => return self.fallback("shmctl(SHM_INFO)", e, from_text, warnings),
        };
        let i = info.value;
        let segments = i.used_ids as u64;
        let (pages, rss, swp) = (sys::ulong(i.shm_tot), sys::ulong(i.shm_rss), sys::ulong(i.shm_swp));
        let totals =
            |items| shm_totals(segments, pages, rss.saturating_mul(page), swp.saturating_mul(page), items);
        let mut outcome = match walk(info.max_index, segments, sys::shm_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => return self.items_from_text("sysvipc/shm", procfs::parse_shm, totals, warnings),
            Err(e) => return self.fallback("shmctl(SHM_STAT_ANY)", e, from_text, warnings),
        };
        if self.config.segment_memory {
            if let Some(shm) = outcome.value.as_mut() {
                match self.parse_file("sysvipc/shm", procfs::parse_shm, warnings) {
                    Ok(text_items) => {
                        let memory: HashMap<i32, (Option<u64>, Option<u64>)> =
                            text_items.iter().map(|s| (s.id, (s.resident_bytes, s.swapped_bytes))).collect();
                        for seg in &mut shm.items {
                            if let Some(&(rss, swap)) = memory.get(&seg.id) {
                                (seg.resident_bytes, seg.swapped_bytes) = (rss, swap);
                            }
                        }
                        outcome.origin = Origin::Mixed;
                    }
                    Err(e) => warnings.push(format!("per-segment memory unavailable: {e}")),
                }
            }
        }
        outcome
    }
}
