//! The bounded fuzz run of the test suite: every target, a fixed seed, a few thousand
//! mutations each; no input may panic. The long run is `cargo run --release -p ipcwatch-fuzz`
//! (README). IPCWATCH_FUZZ_ITERATIONS changes the count.

#[test]
fn no_input_panics_any_parser() {
    let iterations =
        std::env::var("IPCWATCH_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    for target in ipcwatch_fuzz::TARGETS {
        let report = ipcwatch_fuzz::run(target, iterations, 0x5eed);
        assert_eq!(report.executions, iterations + target.seeds.len() as u64);
        assert!(
            report.panics.is_empty(),
            "{}: {} panics, first: {} on {:?}",
            target.name,
            report.panic_count,
            report.panics[0].1,
            String::from_utf8_lossy(&report.panics[0].0)
        );
    }
}

#[test]
fn mutations_reach_past_the_seeds() {
    // The property is only as good as the inputs: they must differ from the seeds and grow deep.
    let target = ipcwatch_fuzz::TARGETS.iter().find(|t| t.name == "rules").expect("the rules target");
    let mut rng = ipcwatch_fuzz::Rng::new(7);
    let mut out = Vec::new();
    let (mut changed, mut deep) = (0, 0);
    for _ in 0..2_000 {
        ipcwatch_fuzz::mutate(target, &mut rng, &mut out);
        changed += usize::from(!target.seeds.iter().any(|s| s.as_bytes() == out.as_slice()));
        deep += usize::from(out.iter().filter(|b| **b == b'(').count() > 150);
    }
    assert!(changed > 1_900, "{changed}");
    assert!(deep > 10, "{deep}");
}
