use ipcwatch_sampler::{Key, Limits, MessageQueue, MessageQueues, Semaphores, SharedMemory, Snapshot};

use super::*;

fn queue(id: i32, messages: u64, bytes: u64) -> MessageQueue {
    MessageQueue {
        key: Key(0),
        id,
        owner: 0,
        creator: 0,
        mode: 0o600,
        messages,
        bytes,
        capacity_bytes: Some(1000),
        last_send_pid: 0,
        last_recv_pid: 0,
        last_send_time: 0,
        last_recv_time: 0,
        changed_time: 0,
    }
}

/// One sample through the registry, with the queues chosen under its cap.
fn feed(r: &mut Registry, s: &Snapshot) {
    let choice = QueueChoice::choose(s, r.max_queue_dimensions(), |uid| uid.to_string().into());
    r.update(s, &choice);
}

fn snap(t: f64, arrays: u64, queues: Vec<MessageQueue>) -> Snapshot {
    Snapshot {
        timestamp: t,
        semaphores: Some(Semaphores { arrays, semaphores: arrays * 2, items: vec![] }),
        message_queues: Some(MessageQueues {
            queues: queues.len() as u64,
            items: queues,
            ..Default::default()
        }),
        shared_memory: Some(SharedMemory::default()),
        limits: Limits { semmni: Some(10), semmns: Some(20), ..Default::default() },
        ..Default::default()
    }
}

#[test]
fn netdata_charts_have_netdata_metadata() {
    let r = Registry::new(RegistryConfig::default());
    let c = r.chart("system.ipc_semaphores").unwrap();
    assert_eq!(
        (c.title, c.units, c.family, c.context),
        ("IPC Semaphores", "semaphores", "ipc semaphores", "system.ipc_semaphores")
    );
    assert_eq!((c.chart_type, c.priority), (ChartType::Area, 1203));
    assert_eq!(c.dimensions[0].id, "semaphores");
    let order: Vec<&str> = r.charts().take(6).map(|c| c.id).collect();
    assert_eq!(
        order,
        [
            "system.message_queue_messages",
            "system.message_queue_bytes",
            "system.ipc_semaphores",
            "system.ipc_semaphore_arrays",
            "system.shared_memory_segments",
            "system.shared_memory_bytes"
        ]
    );
    assert_eq!(r.chart("system.message_queue_message").unwrap().id, "system.message_queue_messages");
}

#[test]
fn values_and_variables_follow_the_snapshot() {
    let mut r = Registry::new(RegistryConfig::default());
    feed(&mut r, &snap(100.0, 9, vec![queue(0, 3, 300), queue(32768, 1, 7)]));
    let arrays = r.chart("system.ipc_semaphore_arrays").unwrap();
    assert_eq!(arrays.last_of("arrays"), Some(9.0));
    assert_eq!(arrays.variables["ipc_semaphores_arrays_max"], 10.0);
    assert_eq!(r.chart("system.ipc_semaphores").unwrap().variables["ipc_semaphores_max"], 20.0);
    let bytes = r.chart("system.message_queue_bytes").unwrap();
    let dims: Vec<&str> = bytes.dimensions.iter().map(|d| &*d.id).collect();
    assert_eq!(dims, ["0", "32768"]);
    assert_eq!(bytes.last_of("32768"), Some(7.0));
}

#[test]
fn vanished_queues_are_retired() {
    let mut r = Registry::new(RegistryConfig::default());
    feed(&mut r, &snap(1.0, 0, vec![queue(0, 1, 1), queue(1, 1, 1)]));
    feed(&mut r, &snap(2.0, 0, vec![queue(1, 2, 2)]));
    let dims: Vec<&str> =
        r.chart(QUEUE_MESSAGES_CHART).unwrap().chart().dimensions.iter().map(|d| &*d.id).collect();
    assert_eq!(dims, ["1"]);
    feed(&mut r, &snap(3.0, 0, vec![]));
    assert!(r.chart(QUEUE_MESSAGES_CHART).unwrap().dimensions.is_empty());
}

#[test]
fn queue_dimensions_are_capped_biggest_first() {
    let mut r = Registry::new(RegistryConfig {
        history_rows: 10,
        max_queue_dimensions: 2,
        ..RegistryConfig::default()
    });
    feed(&mut r, &snap(1.0, 0, vec![queue(0, 1, 10), queue(1, 1, 500), queue(2, 9, 10), queue(3, 0, 0)]));
    assert_eq!(r.queue_ids(), [1, 2]);
    let mut off = Registry::new(RegistryConfig {
        history_rows: 10,
        max_queue_dimensions: 0,
        ..RegistryConfig::default()
    });
    feed(&mut off, &snap(1.0, 0, vec![queue(0, 1, 10)]));
    assert!(off.queue_ids().is_empty());
    assert!(off.chart(QUEUE_BYTES_CHART).unwrap().dimensions.is_empty());
}

#[test]
fn a_failed_collector_is_not_served_as_fresh() {
    let mut r = Registry::new(RegistryConfig::default());
    feed(&mut r, &snap(1.0, 4, vec![]));
    let mut failed = snap(2.0, 0, vec![]);
    failed.semaphores = None;
    feed(&mut r, &failed);
    let c = r.chart("system.ipc_semaphore_arrays").unwrap();
    assert_eq!(c.last_of("arrays"), None);
    assert_eq!(c.last_collected(), Some(1.0));
}

#[test]
fn history_is_bounded_and_lookups_reduce_windows() {
    let mut r = Registry::new(RegistryConfig {
        history_rows: 5,
        max_queue_dimensions: 100,
        ..RegistryConfig::default()
    });
    for t in 1..=8 {
        feed(&mut r, &snap(t as f64, t, vec![]));
    }
    let c = r.chart("system.ipc_semaphore_arrays").unwrap();
    assert_eq!(c.history_len(), 5); // rows 4..=8
    assert_eq!(c.lookup(Reduce::Average, 8.0, -3.0, 0.0, None), 7.0); // 6, 7, 8
    assert_eq!(c.lookup(Reduce::Max, 8.0, -60.0, 0.0, None), 8.0);
    assert_eq!(c.lookup(Reduce::Min, 8.0, -60.0, 0.0, None), 4.0);
    assert_eq!(c.lookup(Reduce::Sum, 8.0, -2.0, 0.0, None), 15.0);
    assert!(c.lookup(Reduce::Average, 100.0, -10.0, 0.0, None).is_nan());
    let q = r.chart("ipc.limits").unwrap();
    let of = vec!["semmni".to_string()];
    assert_eq!(q.lookup(Reduce::Max, 8.0, -10.0, 0.0, Some(&of)), 10.0);
}

#[test]
fn every_figure_feeds_a_chart_dimension_that_exists() {
    let r = Registry::new(RegistryConfig::default());
    for f in figures::FIGURES {
        if let Some((chart, dim)) = f.chart {
            let c = r.chart(chart).unwrap_or_else(|| panic!("{}: no chart {chart}", f.metric));
            assert!(c.dimension(dim).is_some(), "{}: chart {chart} has no dimension {dim}", f.metric);
        }
        if let Some((chart, _)) = f.variable {
            assert!(r.chart(chart).is_some(), "{}: no chart {chart}", f.metric);
        }
    }
    // lsipc's limits keep lsipc's order (others may sit between them).
    let limits: Vec<&str> = figures::limits().map(|f| f.kernel).collect();
    let lsipc = [
        "SEMMNI", "SEMMNS", "SEMMSL", "SEMOPM", "SEMVMX", "MSGMNI", "MSGMAX", "MSGMNB", "SHMMNI", "SHMALL",
        "SHMMAX", "SHMMIN",
    ];
    let at: Vec<usize> =
        lsipc.iter().map(|k| limits.iter().position(|l| l == k).unwrap_or_else(|| panic!("{k}"))).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{limits:?}");
    let metrics: std::collections::BTreeSet<&str> = figures::FIGURES.iter().map(|f| f.metric).collect();
    assert_eq!(metrics.len(), figures::FIGURES.len(), "metric names are unique");
}

/// docs/metrics.md carries the table generated from the figures; they must agree.
/// `IPCWATCH_BLESS=1 cargo test -p ipcwatch-charts` rewrites it.
/// The check behind CONTRIBUTING.md's "Adding a kernel limit": a field of `Limits` with no
/// row in the figures table (no series, no chart dimension, no alert variable) fails here.
#[test]
fn every_kernel_limit_has_a_figure_and_a_limits_dimension() {
    let registry = Registry::default();
    let limits_chart = registry.chart(defs::LIMITS_CHART).expect("the limits chart");
    for name in Limits::NAMES {
        let s = Snapshot { limits: Limits::only(name, 424_242).unwrap(), ..Default::default() };
        let rows: Vec<&figures::Figure> =
            figures::limits().filter(|f| (f.read)(&s) == Some(424_242)).collect();
        assert_eq!(rows.len(), 1, "limit {name}: {} figures read it (add one row to FIGURES)", rows.len());
        let f = rows[0];
        assert!(!f.kernel.is_empty(), "{name}: {} has no kernel name", f.metric);
        let (chart, dimension) = f.chart.expect("a limit is charted");
        assert_eq!(chart, defs::LIMITS_CHART, "{name}");
        assert!(limits_chart.dimension(dimension).is_some(), "{name}: ipc.limits has no {dimension}");
    }
}

#[test]
fn docs_metrics_md_agrees_with_the_figures() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    for (section, want) in
        [("figures", figures::markdown_table()), ("owners", crate::owners::markdown_table())]
    {
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = (format!("<!-- {section}:begin -->\n"), format!("<!-- {section}:end -->"));
        let start =
            doc.find(&begin).unwrap_or_else(|| panic!("docs/metrics.md has no {begin}")) + begin.len();
        let stop = doc.find(&end).unwrap_or_else(|| panic!("docs/metrics.md has no {end}"));
        if doc[start..stop] != want {
            if std::env::var_os("IPCWATCH_BLESS").is_some() {
                std::fs::write(&path, format!("{}{}{}", &doc[..start], want, &doc[stop..])).unwrap();
                continue;
            }
            panic!("docs/metrics.md disagrees with the {section} table; run IPCWATCH_BLESS=1 cargo test -p ipcwatch-charts\nwant:\n{want}");
        }
    }
}

#[test]
fn every_census_chart_exists_and_fills_from_a_pass() {
    use crate::owners::{OwnerCensus, OwnerUsage, Usage, OWNER_FIGURES};
    let mut r = Registry::new(RegistryConfig::default());
    let owner = |uid: Option<u32>, name: &str, arrays: u64| OwnerUsage {
        uid,
        name: name.into(),
        usage: Usage { semaphore_arrays: arrays, stale_semaphore_arrays: arrays / 2, ..Default::default() },
        semaphore_arrays_growth_1h: arrays / 4,
    };
    let owners = vec![owner(Some(48), "apache", 40), owner(None, "other", 8)];
    let totals = Usage { stale_semaphore_arrays: 24, orphaned_bytes: 4096, ..Default::default() };
    let pass = OwnerCensus { owners: &owners, totals: &totals };
    let snap = Snapshot { timestamp: 100.0, ..Default::default() };
    r.update(&snap, &crate::QueueChoice::default());
    r.update_holders(Some(pass), true);
    for chart in OWNER_FIGURES.iter().filter_map(|f| f.chart) {
        let c = r.chart(chart).unwrap_or_else(|| panic!("{chart} is not in CHARTS"));
        assert_eq!(c.dimensions.len(), 2, "{chart}");
    }
    let by_owner = r.chart("ipc.semaphore_arrays_by_owner").unwrap();
    assert_eq!(by_owner.last_of("apache"), Some(40.0));
    let stale = r.chart("ipc.stale_objects").unwrap();
    assert_eq!(stale.last_of("semaphore_arrays"), Some(24.0));
    // The worst named owner, not `other`.
    assert_eq!(stale.variables["stale_semaphore_arrays_top_owner"], 20.0);
    assert_eq!(stale.variables["semaphore_arrays_growth_1h_top_owner"], 10.0);
    assert_eq!(r.chart("ipc.stale_bytes").unwrap().last_of("orphaned_shared_memory"), Some(4096.0));
    // An owner who left loses its dimension at the next census.
    let (later_owners, no_totals) = (vec![owner(Some(48), "apache", 2)], Usage::default());
    let later = OwnerCensus { owners: &later_owners, totals: &no_totals };
    r.update(&Snapshot { timestamp: 101.0, ..Default::default() }, &crate::QueueChoice::default());
    r.update_holders(Some(later), true);
    assert!(r.chart("ipc.semaphore_arrays_by_owner").unwrap().dimension("other").is_none());
    // The same census in later rows: carried, as filling it again would give.
    for t in 102..105 {
        r.update(&Snapshot { timestamp: t as f64, ..Default::default() }, &crate::QueueChoice::default());
        r.update_holders(Some(later), false);
        let c = r.chart("ipc.semaphore_arrays_by_owner").unwrap();
        assert_eq!(c.last_of("apache"), Some(2.0), "row {t}");
        assert_eq!(c.lookup(Reduce::Min, t as f64, -3.0, 0.0, None), 2.0);
        assert_eq!(c.last_collected(), Some(t as f64));
    }
    // No census: the rows are empty.
    r.update(&Snapshot { timestamp: 105.0, ..Default::default() }, &crate::QueueChoice::default());
    r.update_holders(None, true);
    assert_eq!(r.chart("ipc.semaphore_arrays_by_owner").unwrap().last_of("apache"), None);
}

/// Every stored history reads back exactly what one value per row would: runs of repeats,
/// gaps (a failed collector), a figure that changes every row (stored flat), and windows that
/// slide over all of them.
#[test]
fn compact_history_reads_back_every_row_exactly() {
    let keep = 50;
    let mut r = Registry::new(RegistryConfig { history_rows: keep, ..RegistryConfig::default() });
    let mut expected: VecDeque<Option<u64>> = VecDeque::new();
    let mut seed = 12345u64;
    for t in 0..400u64 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let roll = (seed >> 33) % 10;
        // Rows 0-149: mostly repeats; 150-299: a new value every row; then repeats again.
        let value = match (t, roll) {
            (_, 0) => None,
            (150..300, _) => Some(t * 7),
            (_, 1) => Some(roll * 1000 + t),
            _ => Some(expected.back().copied().flatten().unwrap_or(3)),
        };
        let mut s = snap(t as f64, 0, vec![]);
        match value {
            Some(v) => s.semaphores.as_mut().unwrap().arrays = v,
            None => s.semaphores = None,
        }
        feed(&mut r, &s);
        expected.push_back(value);
        if expected.len() > keep {
            expected.pop_front();
        }
        let c = r.chart("system.ipc_semaphore_arrays").unwrap();
        assert_eq!(c.history_len(), expected.len());
        let d = c.dimension("arrays").unwrap();
        for (i, want) in expected.iter().enumerate() {
            let got = c.value(d, i);
            match want {
                Some(v) => assert_eq!(got, *v as f32, "row {t}, index {i}"),
                None => assert!(got.is_nan(), "row {t}, index {i}: {got}"),
            }
        }
        assert_eq!(c.last(d), value.map(|v| v as f64));
        // Never more than one value per row's worth, plus a little.
        assert!(d.history_bytes() <= keep * 4 + 64, "row {t}: {} bytes", d.history_bytes());
    }
}

#[test]
fn an_unchanging_figure_costs_no_heap_however_long_the_history() {
    let mut r = Registry::new(RegistryConfig { history_rows: 3600, ..RegistryConfig::default() });
    for t in 0..3600 {
        feed(&mut r, &snap(t as f64, 4, vec![]));
    }
    let c = r.chart("system.ipc_semaphore_arrays").unwrap();
    assert_eq!(c.history_len(), 3600);
    assert_eq!(c.dimension("arrays").unwrap().history_bytes(), 0, "one run, held in the dimension");
    assert_eq!(c.lookup(Reduce::Min, 3599.0, -3600.0, 0.0, None), 4.0);
    // Nor do the hour's row times: one run.
    assert!(matches!(&r.times, times::Times::Runs { runs, len: 3600 } if runs.len() == 1));
    // A thousand namespaces hold some 45 dimensions each: their size is what an idle one costs.
    assert!(std::mem::size_of::<Dimension>() <= 48, "{}", std::mem::size_of::<Dimension>());
}

/// Everything a reader of `r` can see: every chart's rows, newest values, collection time
/// and variables, and a few lookups.
fn everything(r: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    for c in r.charts() {
        let times: Vec<f64> = c.times().collect();
        out.push(format!("{} {:?} {:?} {:?}", c.id, times, c.last_collected(), c.variables));
        for d in &c.dimensions {
            let rows: Vec<u32> = (0..c.history_len()).map(|i| c.value(d, i).to_bits()).collect();
            out.push(format!("  {} {:?} {:?}", d.id, c.last(d), rows));
        }
        let now = times.last().copied().unwrap_or(0.0);
        for reduce in [Reduce::Average, Reduce::Max, Reduce::Sum] {
            out.push(format!("  {:?}", c.lookup(reduce, now, -3.0, 0.0, None).to_bits()));
        }
    }
    out
}

#[test]
fn repeated_rows_read_exactly_as_filled_ones() {
    // Short history, so carried rows outlive it, and figures that flip often enough for some
    // dimensions to be held one value per row.
    let config = RegistryConfig { history_rows: 20, ..Default::default() };
    let (mut carried, mut filled) = (Registry::new(config), Registry::new(config));
    let mut plan = Vec::new();
    for t in 0..100u64 {
        let arrays = match t {
            0..=9 => 3,
            10..=39 => t % 2,
            40..=69 => 7,
            70..=75 => t / 3,
            _ => 5,
        };
        let queues = match t {
            5..=14 => vec![queue(1, 2, 20), queue(2, t % 3, 30)],
            15..=24 => vec![queue(2, 1, 10)],
            _ => vec![],
        };
        let mut s = snap(100.0 + t as f64, arrays, queues);
        if (12..=16).contains(&t) || t == 73 {
            s.semaphores = None; // a failed collector: nothing in its rows
        }
        plan.push(s);
    }
    let flat = |r: &Registry| {
        r.charts.iter().flat_map(|c| &c.dimensions).any(|d| matches!(d.history, History::Flat { .. }))
    };
    // The census: none at first, then one, another, none for a while, the first again.
    use crate::owners::{OwnerCensus, OwnerUsage, Usage};
    let owner = |name: &str, arrays: u64| OwnerUsage {
        uid: Some(arrays as u32),
        name: name.into(),
        usage: Usage { semaphore_arrays: arrays, ..Default::default() },
        semaphore_arrays_growth_1h: 0,
    };
    let (a, b) = (vec![owner("apache", 4), owner("pg", 9)], vec![owner("pg", 3)]);
    let totals = Usage::default();
    let census = |t: usize| match t {
        5..=30 | 64.. => Some((OwnerCensus { owners: &a, totals: &totals }, t == 5 || t == 64)),
        31..=60 => Some((OwnerCensus { owners: &b, totals: &totals }, t == 31)),
        _ => None,
    };
    for (i, s) in plan.iter().enumerate() {
        let (pass, changed) = census(i).map_or((None, true), |(p, c)| (Some(p), c));
        for r in [&mut carried, &mut filled] {
            feed(r, s);
            r.update_holders(pass, changed);
        }
        filled.settle();
        filled.settle_census(filled.census_row.index);
        assert_eq!(everything(&carried), everything(&filled), "row {i}");
        if i == 39 {
            assert!(flat(&carried), "a figure that changes every row is held one value per row");
        }
    }
    assert!(carried.carry.is_some() && carried.census_carry.is_some(), "the last rows are carried");
}

#[test]
fn the_probes_charts_exist_only_where_the_probes_run() {
    let off = Registry::new(RegistryConfig::default());
    let mut on = Registry::new(RegistryConfig { probes: true, ..Default::default() });
    let ids = |r: &Registry| r.charts().map(|c| c.id).collect::<Vec<_>>();
    assert!(defs::PROBE_CHARTS.iter().all(|id| off.chart(id).is_none()));
    assert_eq!(ids(&on)[..ids(&off).len()], ids(&off), "every other chart keeps its place");
    assert_eq!(ids(&on)[ids(&off).len()..], defs::PROBE_CHARTS);
    // A reload turns them off and on.
    let config = RegistryConfig::default();
    on.set_config(config);
    assert_eq!(ids(&on), ids(&off));
    on.set_config(RegistryConfig { probes: true, ..config });
    assert_eq!(ids(&on)[ids(&off).len()..], defs::PROBE_CHARTS);
}

#[test]
fn an_unchanged_queue_choice_is_handed_on() {
    let name = |uid: u32| -> std::sync::Arc<str> { uid.to_string().into() };
    let s = snap(1.0, 0, vec![queue(7, 1, 10), queue(3, 2, 20)]);
    let first = QueueChoice::choose(&s, 10, name);
    let again = QueueChoice::choose_again(&s, 10, name, &first);
    assert!(std::sync::Arc::ptr_eq(&first.queues, &again.queues));
    // Any change, or a cap that leaves one out: chosen anew.
    for (other, cap) in [
        (snap(2.0, 0, vec![queue(7, 1, 10), queue(3, 3, 20)]), 10),
        (snap(2.0, 0, vec![queue(7, 1, 10), queue(4, 2, 20)]), 10),
        (snap(2.0, 0, vec![queue(7, 1, 10)]), 10),
        (s.clone(), 1),
    ] {
        let chosen = QueueChoice::choose_again(&other, cap, name, &first);
        assert_eq!(chosen, QueueChoice::choose(&other, cap, name));
        assert!(!std::sync::Arc::ptr_eq(&first.queues, &chosen.queues));
    }
}
