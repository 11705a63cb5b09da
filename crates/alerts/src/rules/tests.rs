use std::path::Path;

use super::*;

fn parse_str(text: &str) -> (Vec<Rule>, Vec<RuleError>) {
    parse(text, Path::new("test.conf"))
}

#[test]
fn the_shipped_rules_load_without_errors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../alerts");
    let (rules, errors) = load(&path);
    assert!(errors.is_empty(), "{errors:?}");
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "semaphores_used",
        "semaphore_arrays_used",
        "message_queues_used",
        "shared_memory_segments_used",
        "shared_memory_pages_used",
        "message_queue_full",
        "shared_memory_orphaned",
        "stale_semaphore_arrays",
        "semaphore_arrays_growing",
        "orphaned_shared_memory_aged",
        "destroyed_attached_shared_memory",
        "posix_shm_used",
        "posix_mqueue_queues_used",
        "posix_mqueue_full",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(rules.iter().all(|r| r.crit.is_some()), "every shipped rule has a crit level");
    let arrays = rules.iter().find(|r| r.name == "semaphore_arrays_used").unwrap();
    assert_eq!(arrays.on, "system.ipc_semaphore_arrays");
    // The highest count of the last 10 s (`lookup: max -10s unaligned of arrays`), in $this.
    assert_eq!(arrays.calc.as_ref().unwrap().text, "$this * 100 / $ipc_semaphores_arrays_max");
    let lookup = arrays.lookup.as_ref().expect("a lookup");
    assert_eq!((lookup.after, lookup.of.as_deref()), (-10.0, Some(&["arrays".to_string()][..])));
    assert_eq!(arrays.every, Some(10.0));
    assert_eq!(arrays.delay, Delay { up: 0.0, down: 300.0, multiplier: 1.5, max: 3600.0 });
    assert_eq!(
        arrays.crit.as_ref().unwrap().expr.to_string(),
        "(${this} > ((${status} == ${CRITICAL}) ? 70 : 90))"
    );
    assert_eq!(
        (arrays.class.as_deref(), arrays.type_.as_deref(), arrays.component.as_deref()),
        (Some("Utilization"), Some("System"), Some("IPC"))
    );
    assert_eq!(arrays.to.as_deref(), Some("sysadmin"));
}

#[test]
fn every_line_type() {
    let text = "\
# a comment
template: t1
      on: system.ipc_semaphores
   class: Utilization
    type: System
component: IPC
      os: linux freebsd
   hosts: !db* *
host labels: _os=linux
chart labels: *
  lookup: max -5m at -1m every 30s unaligned of semaphores,other
    calc: $this * 2
   every: 1m
   green: 10
     red: 20
    warn: $this > $green
    crit: $this > $red
   delay: up 1m down 5m multiplier 2
  repeat: warning 1h critical 10m
   units: %
 summary: short
    info: long \\
          text
      to: sysadmin
    exec: /bin/true
 options: no-clear-notification
";
    let (rules, errors) = parse_str(text);
    assert!(errors.is_empty(), "{errors:?}");
    let r = &rules[0];
    assert_eq!((r.kind, r.name.as_str(), r.line), (RuleKind::Template, "t1", 2));
    let l = r.lookup.as_ref().unwrap();
    assert_eq!((l.method, l.after, l.before, l.every), (Reduce::Max, -300.0, -60.0, Some(30.0)));
    assert_eq!(l.of.as_deref(), Some(&["semaphores".to_string(), "other".to_string()][..]));
    assert_eq!(r.every, Some(60.0));
    assert_eq!((r.green, r.red), (Some(10.0), Some(20.0)));
    assert_eq!(r.delay, Delay { up: 60.0, down: 300.0, multiplier: 2.0, max: 300.0 });
    assert_eq!(r.repeat, Repeat { warning: 3600.0, critical: 600.0 });
    assert_eq!(r.info.as_deref(), Some("long            text"));
    assert!(r.no_clear_notification);
    assert!(r.os.as_ref().unwrap().matches("linux"));
    assert!(!r.hosts.as_ref().unwrap().matches("db1"));
    assert!(r.hosts.as_ref().unwrap().matches("web1"));
    assert!(r.host_labels.as_ref().unwrap().matches("_os=linux"));
}

#[test]
fn bad_lines_skip_their_rule_only_and_name_the_line() {
    let text = "\
alarm: good1
   on: system.ipc_semaphores
 calc: $semaphores

alarm: bad
   on: system.ipc_semaphores
 calc: $semaphores +
 frob: 1

alarm: good2
   on: system.ipc_semaphore_arrays
 warn: $this > 1
this is not a line
";
    let (rules, errors) = parse_str(text);
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["good1"]);
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].starts_with("test.conf:7: bad: unexpected end of expression at character"), "{shown:?}");
    assert_eq!(shown[1], "test.conf:8: bad: unknown key `frob`");
    assert_eq!(shown[2], "test.conf:13: `this is not a line` is not a `key: value` line");
}

#[test]
fn structural_errors() {
    let (_, e) = parse_str("on: x\n");
    assert_eq!(e[0].to_string(), "test.conf:1: `on:` outside an alarm or template block");
    let (r, e) = parse_str("alarm: x\ncalc: 1\n");
    assert!(r.is_empty());
    assert_eq!(e[0].to_string(), "test.conf:1: `x` has no `on:` line");
    let (_, e) = parse_str("alarm: bad name!\non: x\n");
    assert!(e[0].message.contains("not a valid alarm name"));
    let (_, e) = parse_str("alarm: x\non: c\nlookup: median -1m\n");
    assert!(e[0].message.contains("median"));
    let (_, e) = parse_str("alarm: x\non: c\ndelay: sideways 5m\n");
    assert!(e[0].message.contains("sideways"));
    let (_, e) = parse_str("alarm: x\non: c\nevery: soon\n");
    assert!(e[0].message.contains("`soon` is not a duration"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10s"), Ok(10.0));
    assert_eq!(parse_duration("5m"), Ok(300.0));
    assert_eq!(parse_duration("1h"), Ok(3600.0));
    assert_eq!(parse_duration("2d"), Ok(172800.0));
    assert_eq!(parse_duration("-1m"), Ok(-60.0));
    assert_eq!(parse_duration("30"), Ok(30.0));
    assert!(parse_duration("m").is_err());
    assert_eq!(parse_duration("1h30m"), Ok(5400.0));
    assert_eq!(parse_duration("0.5m"), Ok(30.0));
    for bad in ["", "-", "1x", "h", "5m3", "inf", "nan", "1e400", "--5s", "1h-5m"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    // The command line's ages.
    assert_eq!(parse_age("0s"), Ok(0));
    assert_eq!(parse_age("90"), Ok(90));
    assert_eq!(parse_age("30m"), Ok(1800));
    assert_eq!(parse_age("1h30m"), Ok(5400));
    assert_eq!(parse_age("2d"), Ok(172_800));
    for bad in ["", "-5", "1x", "h", "5m3", "99999999999999999999d", "0.5s"] {
        assert!(parse_age(bad).is_err(), "{bad}");
    }
}

#[test]
fn unreadable_paths_are_errors() {
    let (r, e) = load(Path::new("/nonexistent/rules"));
    assert!(r.is_empty());
    assert!(e[0].to_string().starts_with("/nonexistent/rules: cannot read"), "{e:?}");
}

#[test]
fn a_hostile_expression_is_a_line_error_and_only_its_rule_is_skipped() {
    let deep = format!("{}1{}", "(".repeat(3_000), ")".repeat(3_000));
    let text = format!(
        "alarm: deep\n    on: system.ipc_semaphores\n  calc: {deep}\n\nalarm: fine\n    on: system.ipc_semaphores\n  calc: $semaphores\n"
    );
    let (rules, errors) = parse_str(&text);
    assert_eq!(rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["fine"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].to_string();
    assert!(e.starts_with("test.conf:3: ") && e.contains("nested deeper than 128 levels"), "{e}");
}
