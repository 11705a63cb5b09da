//! Parser tests on text captured from a real kernel (6.18, x86_64) in a throw-away IPC
//! namespace holding: arrays of 7, 3 and 1 semaphores (keys 0, 0x80000001, 0xdeadbeef);
//! queue 0 (key 0x1234, capacity 4, four empty messages) and queue 1 (three 100-byte
//! messages); segments of 1 B (orphaned), 40,961 B (attached, 3 pages touched) and 1 MiB
//! (attached, then removed: SHM_DEST).

use super::*;

const SEM: &str = include_str!("../../tests/fixtures/kernel-6.18/sysvipc/sem");
const MSG: &str = include_str!("../../tests/fixtures/kernel-6.18/sysvipc/msg");
const SHM: &str = include_str!("../../tests/fixtures/kernel-6.18/sysvipc/shm");

#[test]
fn sem_rows_parse_with_signed_keys() {
    let p = parse_sem(SEM).unwrap();
    assert!(p.malformed.is_empty());
    let keys: Vec<String> = p.items.iter().map(|a| a.key.to_string()).collect();
    assert_eq!(keys, ["0x00000000", "0x80000001", "0xdeadbeef"]);
    let nsems: Vec<u64> = p.items.iter().map(|a| a.semaphores).collect();
    assert_eq!(nsems, [7, 3, 1]);
    assert_eq!(p.items[1].id, 1);
    assert_eq!(p.items[0].mode, 0o600);
    assert_eq!(p.items[0].last_op_time, 0);
    assert!(p.items[0].changed_time > 1_700_000_000);
}

#[test]
fn msg_rows_parse_without_capacity() {
    let p = parse_msg(MSG).unwrap();
    assert!(p.malformed.is_empty());
    assert_eq!(p.items.len(), 2);
    let q = &p.items[1];
    assert_eq!((q.id, q.messages, q.bytes, q.capacity_bytes), (1, 3, 300, None));
    assert_eq!(p.items[0].key.to_string(), "0x00001234");
    assert_eq!(p.items[0].messages, 4);
    assert!(q.last_send_pid > 0);
}

#[test]
fn shm_rows_parse_flags_and_memory() {
    let p = parse_shm(SHM).unwrap();
    assert!(p.malformed.is_empty());
    let [orphan, attached, removed] = &p.items[..] else { panic!("three segments expected") };
    assert_eq!((orphan.size_bytes, orphan.attached), (1, 0));
    assert!(orphan.is_orphaned());
    assert_eq!(attached.resident_bytes, Some(12288));
    assert!(removed.destroyed && !removed.locked && !removed.is_orphaned());
    assert_eq!(removed.mode, 0o600);
    assert_eq!(removed.resident_bytes, Some(1_048_576));
    assert_eq!(removed.swapped_bytes, Some(0));
}

#[test]
fn shm_without_rss_columns_parses_as_unknown_memory() {
    // Kernels before 2.6.37 end the row at ctime.
    let old: String =
        SHM.lines().map(|l| l.split_whitespace().take(14).collect::<Vec<_>>().join(" ") + "\n").collect();
    let p = parse_shm(&old).unwrap();
    assert_eq!(p.items.len(), 3);
    assert!(p.items.iter().all(|s| s.resident_bytes.is_none() && s.swapped_bytes.is_none()));
}

#[test]
fn columns_are_found_by_name_and_extra_columns_are_ignored() {
    let text = "key msqid extra perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime future\n\
                -559038737 5 x 666 10 2 1 0 100000 0 0 0 1 2 3 whatever\n";
    let p = parse_msg(text).unwrap();
    let q = &p.items[0];
    assert_eq!(q.key.to_string(), "0xdeadbeef");
    assert_eq!((q.id, q.mode, q.bytes, q.messages, q.owner), (5, 0o666, 10, 2, 100_000));
}

#[test]
fn malformed_lines_are_reported_not_fatal() {
    let mut text = SEM.to_string();
    text.push_str("         1          9   600\n"); // truncated row
    text.push_str("  garbage        x   600          1     0     0     0     0          0          0\n");
    text.push_str("         2         10   9z9          1     0     0     0     0          0          0\n");
    let p = parse_sem(&text).unwrap();
    assert_eq!(p.items.len(), 3, "the good rows still parse");
    assert_eq!(p.malformed.len(), 3);
    assert_eq!(p.malformed[0].line, 5);
    assert!(matches!(p.malformed[0].reason, ParseError::ShortRow { .. }), "{}", p.malformed[0].reason);
    assert_eq!(p.malformed[1].reason.to_string(), "`garbage` is not a valid key value");
    assert!(matches!(&p.malformed[2].reason, ParseError::BadOctal { text, .. } if text == "9z9"));
}

#[test]
fn a_file_with_the_wrong_header_is_an_error() {
    assert_eq!(parse_sem("").unwrap_err(), ParseError::Empty);
    assert!(matches!(parse_sem("hello world\n1 2\n"), Err(ParseError::UnexpectedHeader(_))));
    assert_eq!(parse_msg(SEM).unwrap_err(), ParseError::MissingColumn("msqid"));
}

#[test]
fn header_only_means_no_objects() {
    let header = SHM.lines().next().unwrap();
    assert!(parse_shm(header).unwrap().items.is_empty());
}

#[test]
fn sysctl_values() {
    assert_eq!(parse_sem_limits("250\t20\t32\t10\n").unwrap(), [250, 20, 32, 10]);
    assert!(parse_sem_limits("250 20\n").is_err());
    assert_eq!(parse_number("18446744073692774399\n").unwrap(), 18_446_744_073_692_774_399);
    assert!(parse_number("lots").is_err());
}
