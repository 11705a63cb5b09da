//! `ipcwatch-fuzz [TARGET|all] [--iterations N] [--seed S]`: the longer fuzz run (the test
//! suite runs a short one). Prints executions, rate and panics per target; exit 1 on any
//! panic, with the inputs that caused it.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut which = "all".to_string();
    let (mut iterations, mut seed) = (1_000_000u64, 0x1bc_7a7c_u64);
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match args[i].as_str() {
            "--iterations" => iterations = value(i).unwrap_or_else(|| usage()),
            "--seed" => seed = value(i).unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            t if !t.starts_with('-') => {
                which = t.to_string();
                i += 1;
                continue;
            }
            _ => usage(),
        }
        i += 2;
    }
    let targets: Vec<_> =
        ipcwatch_fuzz::TARGETS.iter().filter(|t| which == "all" || t.name == which).collect();
    if targets.is_empty() {
        eprintln!("ipcwatch-fuzz: no target `{which}` (see --help)");
        return ExitCode::from(2);
    }
    // Panics are counted and shown below; the default hook would print each one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for t in targets {
        let start = Instant::now();
        let r = ipcwatch_fuzz::run(t, iterations, seed);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<11} {:>12} executions in {:>7.1} s ({:>9.0}/s), {} panics",
            t.name,
            r.executions,
            secs,
            r.executions as f64 / secs,
            r.panic_count
        );
        for (input, message) in &r.panics {
            failed = true;
            println!("  panic: {message}\n  input: {:?}", String::from_utf8_lossy(input));
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage() -> ! {
    let names: Vec<&str> = ipcwatch_fuzz::TARGETS.iter().map(|t| t.name).collect();
    eprintln!("usage: ipcwatch-fuzz [{}|all] [--iterations N] [--seed S]", names.join("|"));
    std::process::exit(2)
}
