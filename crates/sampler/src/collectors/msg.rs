//! Message queues: `MSG_INFO` for the totals, a `MSG_STAT_ANY` walk for each queue.

use crate::*;

/// The collector's name in its report and in `ipcwatch_collector_success`.
pub(crate) const NAME: &str = "msg";

impl Sampler {
    pub(crate) fn message_queues(&mut self, warnings: &mut Vec<String>) -> Outcome<MessageQueues> {
        let from_text = |s: &mut Self, warnings: &mut Vec<String>| {
            s.parse_file("sysvipc/msg", procfs::parse_msg, warnings).map(|items| MessageQueues {
                queues: items.len() as u64,
                messages: saturating_sum(items.iter().map(|q| q.messages)),
                bytes: saturating_sum(items.iter().map(|q| q.bytes)),
                full_queues: 0,
                items,
            })
        };
        if self.config.source == Source::Procfs {
            return from_text(self, warnings)
                .map_or_else(Outcome::failed, |v| Outcome::ok(v, Origin::Procfs));
        }
        let info = match sys::msginfo(libc::MSG_INFO) {
            Ok(info) => info,
            Err(e) => return self.fallback("msgctl(MSG_INFO)", e, from_text, warnings),
        };
        let queues = info.value.msgpool as u64;
        let totals = |items: Vec<MessageQueue>| MessageQueues {
            queues,
            messages: info.value.msgmap as u64,
            bytes: info.value.msgtql as u64,
            full_queues: items.iter().filter(|q| q.is_full()).count() as u64,
            items,
        };
        match walk(info.max_index, queues, sys::msg_stat_any) {
            Ok(Some(items)) => Outcome::ok(totals(items), Origin::Syscall),
            Ok(None) => self.items_from_text("sysvipc/msg", procfs::parse_msg, totals, warnings),
            Err(e) => self.fallback("msgctl(MSG_STAT_ANY)", e, from_text, warnings),
        }
    }
}
