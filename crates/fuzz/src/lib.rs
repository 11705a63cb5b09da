//! Mutation fuzzing on the stable toolchain. Each [`Target`] feeds a parser of outside input
//! with mutations of real inputs (fixture text captured from a kernel, the shipped rules and
//! config, request lines) and checks the one property every parser must have: no input makes
//! it panic, overflow its stack or run away. A panic is caught and reported with its input;
//! a stack overflow aborts the run, which fails it just as loudly.
//!
//! It is property-based rather than coverage-guided (no nightly toolchain, no sanitizer
//! runtime), so the mutations are chosen to reach the interesting places: the parsers'
//! own tokens, numbers at the edges of their types, deep nesting, and lines spliced from
//! other inputs.

#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// One parser under test.
pub struct Target {
    pub name: &'static str,
    /// Real inputs the mutations start from.
    pub seeds: &'static [&'static str],
    /// Tokens worth inserting: the parser's own syntax.
    pub dictionary: &'static [&'static str],
    pub run: fn(&[u8]),
}

const SEM: &str = include_str!("../../sampler/tests/fixtures/kernel-6.18/sysvipc/sem");
const MSG: &str = include_str!("../../sampler/tests/fixtures/kernel-6.18/sysvipc/msg");
const SHM: &str = include_str!("../../sampler/tests/fixtures/kernel-6.18/sysvipc/shm");
const RULES: &str = include_str!("../../../alerts/ipc.conf");
const CONFIG: &str = include_str!("../../../config/ipcwatch.toml");

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967295",
    "4294967296",
    "2147483648",
    "-2147483649",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "1e308",
    "1e309",
    "nan",
    "inf",
    "0x",
    "0777",
    "",
];

fn text(input: &[u8]) -> &str {
    std::str::from_utf8(input).unwrap_or("")
}

fn procfs(input: &[u8]) {
    let t = text(input);
    let _ = ipcwatch_sampler::procfs::parse_sem(t);
    let _ = ipcwatch_sampler::procfs::parse_msg(t);
    let _ = ipcwatch_sampler::procfs::parse_shm(t);
    let _ = ipcwatch_sampler::procfs::parse_number(t);
    let _ = ipcwatch_sampler::procfs::parse_sem_limits(t);
}

fn rules(input: &[u8]) {
    let (rules, _) = ipcwatch_alerts::rules::parse(text(input), Path::new("fuzz.conf"));
    // What parsed must also print and evaluate without trouble.
    let vars = |name: &str| (!name.len().is_multiple_of(3)).then_some(name.len() as f64 - 3.0);
    for r in &rules {
        for e in [&r.calc, &r.warn, &r.crit].into_iter().flatten() {
            let _ = e.expr.to_string();
            let _ = e.expr.evaluate(&vars);
        }
    }
}

fn expression(input: &[u8]) {
    if let Ok(e) = ipcwatch_alerts::expr::parse(text(input)) {
        let _ = e.to_string();
        let _ = e.evaluate(&|_: &str| Some(f64::NAN));
        let _ = e.evaluate(&|name: &str| Some(name.len() as f64));
    }
}

/// The census's outside input: /proc/PID/stat, /proc/PID/status and /proc/stat text, and
/// `--older-than`.
fn holders(input: &[u8]) {
    let t = text(input);
    let _ = ipcwatch_holders::start_ticks(t);
    let _ = ipcwatch_holders::boot_time(t);
    let _ = ipcwatch_alerts::parse_age(t);
    let _ = ipcwatch_holders::effective_uid(t);
}

/// What a container writes that identifies it or steers the walks into it: its cgroup
/// paths, its mountinfo, its stat lines, and the host's passwd (`--path.rootfs`).
fn namespaces(input: &[u8]) {
    let t = text(input);
    let _ = ipcwatch_sampler::namespaces::identify_cgroup(t);
    let _ = ipcwatch_sampler::namespaces::parse_start_and_parent(t);
    for id in [0, 1, 25, 40, u64::MAX] {
        let _ = ipcwatch_sampler::posix::mountinfo_kind(t, id);
    }
    let _ = ipcwatch_sampler::parse_passwd(t);
    let _ = ipcwatch_sampler::lossless(std::ffi::OsStr::new(t));
}

fn config(input: &[u8]) {
    let _ = ipcwatch_config::Config::parse(text(input), "fuzz.toml");
}

fn web_config(input: &[u8]) {
    // Relative file names resolve in a folder that has none of them.
    let _ = ipcwatch_exporter::web::from_text(text(input), Path::new("/nonexistent"));
}

fn state() -> &'static Arc<ipcwatch_exporter::State> {
    static STATE: OnceLock<Arc<ipcwatch_exporter::State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let state = ipcwatch_exporter::State::new(ipcwatch_exporter::BuildInfo {
            version: "fuzz".into(),
            revision: "fuzz".into(),
        });
        let (rules, _) = ipcwatch_pipeline::rules::builtin();
        let host = ipcwatch_alerts::Host { hostname: "fuzz".into(), os: "linux".into(), labels: vec![] };
        let snapshot = || ipcwatch_sampler::Snapshot { timestamp: 1.7e9, ..Default::default() };
        let mut p = ipcwatch_pipeline::Pipeline::new(Box::new(snapshot), Default::default(), rules, host);
        state.publish(std::sync::Arc::new(ipcwatch_pipeline::FleetPublished::single(
            p.tick().published,
            Default::default(),
        )));
        // Never stale: every request reaches the /api/v1 handlers with charts to query.
        state.set_stale_after(std::time::Duration::from_secs(u64::from(u32::MAX)));
        state
    })
}

/// The first line is a request line (`METHOD TARGET`), the others `Name: value` headers.
fn http(input: &[u8]) {
    let t = text(input);
    let mut lines = t.lines();
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let mut req = hyper::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    // What hyper itself would refuse never reaches us.
    if let Ok(req) = req.body(()) {
        let _ = ipcwatch_exporter::handle(state(), req);
    }
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "procfs",
        seeds: &[SEM, MSG, SHM, "250 32000 32 128\n", "18446744073692774399\n"],
        dictionary: &[" ", "\n", "\t", "key", "semid", "msqid", "shmid", "perms", "rss", "swap", "-", "1000"],
        run: procfs,
    },
    Target {
        name: "holders",
        seeds: &[
            "4242 (httpd (worker)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10\n",
            "cpu  1 2 3\nbtime 1795600000\nprocesses 42\n",
            "Name:\tapache2\nUid:\t0\t33\t33\t33\nGid:\t0\t33\t33\t33\n",
            "1h30m",
            "0s",
        ],
        dictionary: &[")", "(", " ", "\n", "btime ", "s", "m", "h", "d", "w", "99999999999999999999"],
        run: holders,
    },
    Target {
        name: "namespaces",
        seeds: &[
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b5f6c0e_1d2a_4c3b_9e8f_7a6b5c4d3e2f.slice/cri-containerd-4f1d2c3b4a5968778695a4b3c2d1e0f1f2e3d4c5b6a798897a6b5c4d3e2f1a0b.scope\n",
            "0::/../../user.slice/user-1000.slice/user@1000.service/app.slice/docker-4f1d2c3b4a5968778695a4b3c2d1e0f1f2e3d4c5b6a798897a6b5c4d3e2f1a0b.scope\n12:pids:/docker/abc\n",
            "25 22 0:23 / /dev/shm rw,nosuid shared:4 - tmpfs tmpfs rw\n40 25 0:50 / /dev/shm rw - fuse.sshfs host:/ rw\n",
            "900 (we ird) name)) S 50 900 900 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10\n",
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:106:113::/var/lib/postgresql:/bin/bash\n",
        ],
        dictionary: &["/", "..", ":", " - ", "\n", ")", "pod", ".slice", ".scope", "docker-", "user@", "fuse", "tmpfs", "\\"],
        run: namespaces,
    },
    Target {
        name: "rules",
        seeds: &[RULES],
        dictionary: &[
            "\n",
            "\\\n",
            "alarm:",
            "template:",
            "on:",
            "lookup:",
            "calc:",
            "warn:",
            "crit:",
            "every:",
            "delay:",
            "repeat:",
            "units:",
            "to:",
            "os:",
            "hosts:",
            "chart labels:",
            "average -1m",
            "of",
            "percentage",
            "absolute",
            "(",
            ")",
            "$this",
            "${",
            "}",
            "?",
            ":",
            "&&",
            "||",
            "!",
            "abs(",
            "10s",
            "5m",
            "1h",
            "multiplier",
            "max",
            "up",
            "down",
            "*",
        ],
        run: rules,
    },
    Target {
        name: "expression",
        seeds: &[
            "$this > (($status >= $WARNING) ? (70) : (80))",
            "$semaphores * 100 / $ipc_semaphores_max",
            "abs(-1) % 0",
        ],
        dictionary: &[
            "(", ")", "$", "${x}", "?", ":", "&&", "||", "AND", "OR", "NOT", "!", "abs(", "+", "-", "*", "/",
            "%", "<=", "==", "!=", "e", "E",
        ],
        run: expression,
    },
    Target {
        name: "config",
        seeds: &[CONFIG, "[web]\nlisten_addresses = [\"[::1]:9917\"]\n"],
        dictionary: &[
            "[",
            "]",
            "[[",
            "\"",
            "'",
            "=",
            "\n",
            "{",
            "}",
            ",",
            "web",
            "sampling",
            "charts",
            "alerts",
            "log",
            "update_every",
            "history",
            "max_queue_dimensions",
            "listen_addresses",
            "true",
            "1e400",
            ":99999",
        ],
        run: config,
    },
    Target {
        name: "webconfig",
        seeds: &[
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n",
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n",
            "tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----\n  key: x\n",
        ],
        dictionary: &[":", "\n", "  ", "- ", "{", "}", "[", "]", "|", ">", "'", "\"", "&a", "*a", "!!binary", "~", "null", "tls_server_config", "basic_auth_users", "http_server_config", "headers", "cert", "key_file", "TLS13", "TLS10", "$2y$", "-----BEGIN CERTIFICATE-----"],
        run: web_config,
    },
    Target {
        name: "http",
        seeds: &[
            "GET /metrics\nAccept-Encoding: gzip",
            "GET /api/v1/alarms?all\nAccept-Encoding: gzip;q=0, identity",
            "HEAD /\nContent-Length: 10",
            "POST /-/ready",
            "GET /metrics?x=%ff%00\nAccept-Encoding: *;q=0.5, gzip;q=1e9",
            "GET /api/v1/data?chart=system.ipc_semaphores&after=-60&points=7&group=max&format=csv&options=jsonwrap%7Cnonzero",
            "GET /api/v1/data?chart=system.message_queue_bytes&before=-99999999999&after=9223372036854775807&points=-1&format=datatable",
            "GET /api/v1/allmetrics?format=prometheus&source=sum&help=no",
            "GET /api/v1/chart?chart=ipc.limits",
            "GET /api/v1/alarm_count?context=system.ipc_semaphores,x&status=raised",
            "GET /api/v1/alarm_variables?chart=system.ipc_semaphore_arrays",
            "GET /api/v1/charts",
        ],
        dictionary: &[
            "/",
            "?",
            "&",
            "=",
            "%7C",
            "format=",
            "options=",
            "points=",
            "after=",
            "before=",
            "group=",
            "jsonp",
            "callback=",
            "ssv",
            "html",
            "markdown",
            "flip",
            "percentage",
            "objectrows",
            "%",
            "%2f",
            "all",
            "active",
            "..",
            "//",
            "#",
            "gzip",
            ";q=",
            ",",
            "\n",
            "Content-Length: ",
            "Accept-Encoding: ",
            "99999999999999999999",
        ],
        run: http,
    },
];

/// A small, fast PRNG (xorshift64*): reproducible runs from a seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Inputs are kept under this size, so one execution stays cheap.
const MAX_INPUT: usize = 64 * 1024;

/// One to eight stacked mutations of a seed.
pub fn mutate(target: &Target, rng: &mut Rng, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(target.seeds[rng.below(target.seeds.len())].as_bytes());
    for _ in 0..1 + rng.below(8) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => out[rng.below(len)] ^= 1 << rng.below(8),
            1 => out.insert(at, rng.next_u64() as u8),
            2 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at.min(end)..end);
            }
            3 => {
                let token = target.dictionary[rng.below(target.dictionary.len())];
                out.splice(at..at, token.bytes());
            }
            4 => {
                let n = NUMBERS[rng.below(NUMBERS.len())];
                out.splice(at..at, n.bytes());
            }
            5 if len > 0 => {
                // Repeat a short run many times: deep nesting, long lines.
                let start = rng.below(len);
                let end = (start + 1 + rng.below(4)).min(len);
                let run: Vec<u8> = out[start..end].to_vec();
                for _ in 0..1 + rng.below(600) {
                    out.splice(at..at, run.iter().copied());
                }
            }
            6 => {
                // A line from another seed.
                let other = target.seeds[rng.below(target.seeds.len())];
                let lines: Vec<&str> = other.lines().collect();
                if !lines.is_empty() {
                    let line = lines[rng.below(lines.len())];
                    out.splice(at..at, line.bytes().chain(std::iter::once(b'\n')));
                }
            }
            7 => out.truncate(at),
            _ => {
                let token = target.dictionary[rng.below(target.dictionary.len())];
                out.splice(at..at, token.repeat(1 + rng.below(200)).bytes());
            }
        }
        out.truncate(MAX_INPUT);
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    /// Inputs that panicked, with the panic message (at most 10 kept).
    pub panics: Vec<(Vec<u8>, String)>,
    pub panic_count: u64,
}

/// Runs `target` on its seeds and then `iterations` mutations from `seed`.
pub fn run(target: &Target, iterations: u64, seed: u64) -> Report {
    let mut report = Report::default();
    let mut rng = Rng::new(seed);
    let mut input = Vec::with_capacity(MAX_INPUT);
    let one = |input: &[u8], report: &mut Report| {
        report.executions += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
            let message = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            report.panic_count += 1;
            if report.panics.len() < 10 {
                report.panics.push((input.to_vec(), message));
            }
        }
    };
    for s in target.seeds {
        one(s.as_bytes(), &mut report);
    }
    for _ in 0..iterations {
        mutate(target, &mut rng, &mut input);
        one(&input, &mut report);
    }
    report
}
