//! Every limit `Limits` declares is read from this machine's kernel, by the syscalls and by
//! the /proc text fallback alike: the check behind CONTRIBUTING.md's "Adding a kernel limit"
//! (a limit declared but never read stays `None` and fails here). Reading limits changes
//! nothing, so the test runs in whatever IPC namespace it finds itself in.

use std::path::Path;

use ipcwatch_sampler::{Limits, Sampler, SamplerConfig, Source};

fn limits(source: Source) -> Limits {
    Sampler::new(SamplerConfig {
        procfs: Path::new("/proc").to_path_buf(),
        source,
        segment_memory: false,
        semaphore_detail: false,
        posix: false,
    })
    .snapshot()
    .limits
}

#[test]
fn every_limit_is_read_by_syscall_and_by_text() {
    for source in [Source::Auto, Source::Procfs] {
        let l = limits(source);
        let missing: Vec<&str> = l.named().filter(|(_, v)| v.is_none()).map(|(n, _)| n).collect();
        assert!(missing.is_empty(), "{source:?}: not read: {missing:?} ({l:?})");
        assert!(!l.any_missing());
    }
    assert_eq!(limits(Source::Auto), limits(Source::Procfs), "the two ways disagree");
}
