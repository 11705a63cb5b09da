//! The maps' keys and values as `bpf/ipcwatch.bpf.c` lays them out. A change there is a
//! change here; the tests in `tests/` load the object and read real counts through these.

use ipcwatch_sampler::probes::{CallKind, Failure, WAIT_BUCKETS};
use ipcwatch_sampler::Key;

// `health`, a per-CPU array.
pub const HEALTH_SAMPLES_LOST: usize = 0;
pub const HEALTH_MAP_FULL: usize = 1;
pub const HEALTH_INFLIGHT_LOST: usize = 2;

// `changes`, an array of one struct change_line (a count, then padding to 64 bytes) per CPU.
pub const CHANGE_LINE_WORDS: usize = 8;

// `ns_stats`' value: struct ns_stats, as u64 words.
pub const SEM_WAIT: usize = 0;
pub const SEM_WAIT_NS: usize = SEM_WAIT + WAIT_BUCKETS;
pub const MSG_WAIT: usize = SEM_WAIT_NS + 1;
pub const MSG_WAIT_NS: usize = MSG_WAIT + WAIT_BUCKETS;
pub const MSG_REFUSED: usize = MSG_WAIT_NS + 1;
pub const STATS_LEN: usize = MSG_REFUSED + 1;

// `objects`' value: struct object_stats.
pub const OBJECT_WAIT_NS: usize = 0;
pub const OBJECT_WAITS: usize = 1;
pub const OBJECT_REFUSED: usize = 2;
pub const OBJECT_LEN: usize = 3;

/// `failures`' key: namespace << 32 | kind << 16 | errno.
pub fn failure_key(key: u64) -> (u64, u16, u16) {
    (key >> 32, (key >> 16) as u16, key as u16)
}

/// `objects`' key: namespace << 32 | (0 sem, 1 msg) << 31 | id.
pub fn object_key(key: u64) -> (u64, CallKind, i32) {
    let kind = if key & (1 << 31) == 0 { CallKind::Sem } else { CallKind::Msg };
    (key >> 32, kind, (key & 0x7FFF_FFFF) as i32)
}

/// struct failure: boot_ns u64, ns u32, pid u32, uid u32, kind u16, err u16, key s32,
/// pad u32, arg u64, comm[16].
pub const FAILURE_LEN: usize = 56;

pub fn parse_failure(raw: &[u8], now_unix_ms: i64, boot_now_ns: u64) -> Option<Failure> {
    if raw.len() < FAILURE_LEN {
        return None;
    }
    let u64_at = |o: usize| u64::from_ne_bytes(raw[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_ne_bytes(raw[o..o + 4].try_into().expect("4 bytes"));
    let u16_at = |o: usize| u16::from_ne_bytes(raw[o..o + 2].try_into().expect("2 bytes"));
    let boot_ns = u64_at(0);
    let ago_ms = boot_now_ns.saturating_sub(boot_ns) / 1_000_000;
    let comm = &raw[40..56];
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
    Some(Failure {
        time_ms: now_unix_ms - ago_ms as i64,
        ipc_namespace: u64::from(u32_at(8)),
        pid: u32_at(12),
        uid: u32_at(16),
        kind: CallKind::from_index(u16_at(20))?,
        errno: u16_at(22),
        key: Key(u32_at(24) as i32),
        size: u64_at(32),
        comm: String::from_utf8_lossy(comm).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_as_the_kernel_side_packs_them() {
        let ns = 4026531839u64;
        assert_eq!(failure_key(ns << 32 | 3 << 16 | 28), (ns, 3, 28));
        assert_eq!(object_key(ns << 32 | 1 << 31 | 65538), (ns, CallKind::Msg, 65538));
        assert_eq!(object_key(ns << 32 | 7), (ns, CallKind::Sem, 7));
    }

    #[test]
    fn a_failure_record_parses_and_a_short_one_does_not() {
        let mut raw = vec![0u8; FAILURE_LEN];
        raw[0..8].copy_from_slice(&5_000_000_000u64.to_ne_bytes());
        raw[8..12].copy_from_slice(&4026532178u32.to_ne_bytes());
        raw[12..16].copy_from_slice(&1234u32.to_ne_bytes());
        raw[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        raw[20..22].copy_from_slice(&0u16.to_ne_bytes());
        raw[22..24].copy_from_slice(&28u16.to_ne_bytes());
        raw[24..28].copy_from_slice(&0x5432_0001u32.to_ne_bytes());
        raw[32..40].copy_from_slice(&17u64.to_ne_bytes());
        raw[40..48].copy_from_slice(b"postgres");
        let f = parse_failure(&raw, 1_000_000, 7_000_000_000).expect("parses");
        assert_eq!(f.time_ms, 1_000_000 - 2_000);
        assert_eq!((f.ipc_namespace, f.pid, f.uid, f.errno, f.size), (4026532178, 1234, 1000, 28, 17));
        assert_eq!(
            (f.kind, f.comm.as_str(), f.key.to_string()),
            (CallKind::Sem, "postgres", "0x54320001".into())
        );
        assert!(parse_failure(&raw[..40], 0, 0).is_none());
        raw[20] = 9;
        assert!(parse_failure(&raw, 0, 0).is_none(), "an unknown kind is skipped");
    }
}
