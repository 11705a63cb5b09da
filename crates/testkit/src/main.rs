//! `ipcwatch-testkit`: a driver the end-to-end tests start inside a throw-away IPC namespace
//! (`unshare --user --map-root-user --ipc ipcwatch-testkit`). It reads one command per line on
//! stdin and answers one line on stdout: `ok [value]` or `err message`. It keeps segments it
//! attached attached, and children it spawned running, until told otherwise or until stdin ends.
//!
//! Commands:
//!   check-namespace                 refuse to go on in the host's IPC namespace
//!   sysctl NAME VALUE...            write /proc/sys/kernel/NAME (this namespace only)
//!   sem KEY NSEMS                   -> id
//!   msg KEY                         -> id
//!   send ID SIZE [COUNT]            -> messages sent before the queue was full
//!   fill ID SIZE                    -> messages sent until the queue is full
//!   capacity ID BYTES               set msg_qbytes
//!   shm KEY SIZE                    -> id
//!   shm-noreserve KEY SIZE          -> id (SHM_NORESERVE: sizes up to 2^62 cost nothing)
//!   attach ID TOUCH                 attach and write TOUCH bytes -> handle
//!   detach HANDLE
//!   rm sem|msg|shm ID
//!   post ID                         one semop +1 on every semaphore of array ID (as its last pid)
//!   mq NAME MAXMSG MSGSIZE          create POSIX queue NAME (`/q1`)
//!   mq-send NAME SIZE [COUNT]       send COUNT messages of SIZE bytes -> messages sent before full
//!   mq-rm NAME                      mq_unlink
//!   mq-sysctl NAME VALUE            write /proc/sys/fs/mqueue/NAME (this namespace only)
//!   mq-fill-user MAXMSG MSGSIZE     create queues /u0, /u1, ... until mq_open fails -> "N errno"
//!   try sem|msg|shm COUNT [SIZE]    COUNT IPC_PRIVATE gets -> "MADE REFUSED" (refusals counted)
//!   try-mq COUNT                    COUNT mq_open(O_CREAT) of /t0, /t1, ... -> "MADE REFUSED"
//!   sem-wait ID MILLIS              semtimedop -1 on semaphore 0, timing out -> "got"|"timeout"
//!   send-wait ID SIZE MILLIS        msgsnd without IPC_NOWAIT into a full queue; a thread
//!                                   receives one message after MILLIS to let it through
//!   try-send ID SIZE COUNT          COUNT sends with IPC_NOWAIT -> how many were refused
//!   write PATH BYTES                write BYTES bytes to a new file (fills /dev/shm)
//!   map PATH                        map PATH shared and close it (in use through the mapping)
//!   open PATH                       hold PATH open (in use through a descriptor)
//!   undumpable                      PR_SET_DUMPABLE 0: unreadable in /proc without CAP_SYS_PTRACE
//!   churn on|off                    a thread creating and removing queues and arrays nonstop
//!   churn pool N [PER_SECOND]       keep N queues, N arrays and N/8 segments, replacing the
//!                                   oldest of each PER_SECOND times a second (default 100)
//!   run OUT CMD ARGS...             run to completion, stdout+stderr to file OUT -> exit code
//!   spawn OUT CMD ARGS...           start in the background, output to OUT -> pid
//!
//! Every program it runs gets SIGKILL when the driver dies (`setpriv --pdeathsig`), so a test
//! that panics, or is killed, leaves no daemon behind.
//!   signal PID SIG                  send a signal (number) to a spawned child
//!   wait PID                        wait for a spawned child -> exit code or signal
//! KEY accepts decimal or 0x hex (up to 0xffffffff).
//!
//! `ipcwatch-testkit --hold "CMD;CMD"` (commas for spaces) runs the commands, prints their answers and then holds
//! its namespace until killed (started as `unshare --ipc ipcwatch-testkit --hold ...`).
//! `--once "CMD;CMD"` runs them and exits: a short-lived process that leaves its objects
//! behind (Apache's children after `kill -9`). Its answers name the ids it created.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ipcwatch_sampler::testkit as tk;

/// The host's IPC namespace inode, the same on every Linux system.
const INIT_IPC_NS: &str = "ipc:[4026531839]";

struct State {
    children: HashMap<u32, Child>,
    open_files: Vec<std::fs::File>,
    churn: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

fn main() {
    let mut state = State { children: HashMap::new(), open_files: Vec::new(), churn: None };
    // `--hold "CMD; CMD; ..."`: run the commands, print their answers, then hold the
    // namespace (and its objects) until killed: a namespace for the daemon to find.
    let args: Vec<String> = std::env::args().collect();
    let once = args.get(1).map(String::as_str) == Some("--once");
    if once || args.get(1).map(String::as_str) == Some("--hold") {
        for line in args.get(2).map_or("", String::as_str).split(';') {
            // Commas stand for spaces, so a script is one word on a command line.
            let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            if words.is_empty() {
                continue;
            }
            match run(&mut state, &words) {
                Ok(v) => println!("ok {v}"),
                Err(e) => println!("err {e}"),
            }
        }
        if once {
            return;
        }
        println!("holding");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::park();
        }
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let reply = match run(&mut state, &words) {
            Ok(v) => format!("ok {v}"),
            Err(e) => format!("err {}", e.replace('\n', " ")),
        };
        let _ = writeln!(out, "{}", reply.trim_end());
        let _ = out.flush();
    }
    if let Some((stop, handle)) = state.churn.take() {
        stop.store(true, Ordering::Relaxed);
        let _ = handle.join();
    }
    for (_, mut child) in state.children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Keeps `n` queues (with messages of varying size, so the biggest change), `n` arrays and
/// `n / 8` segments alive, replacing the oldest of each `rate` times a second.
fn pool(n: usize, rate: u64, stop: &AtomicBool) {
    use std::collections::VecDeque;
    let (mut queues, mut arrays, mut segments) = (VecDeque::new(), VecDeque::new(), VecDeque::new());
    let mut round: usize = 0;
    let make = |round: usize,
                queues: &mut VecDeque<i32>,
                arrays: &mut VecDeque<i32>,
                segments: &mut VecDeque<i32>| {
        if let Ok(q) = tk::msg_create(0) {
            let _ = tk::msg_send(q, 1 + (round * 7919) % 4000);
            queues.push_back(q);
        }
        if let Ok(a) = tk::sem_create(0, 1 + (round % 8) as i32) {
            arrays.push_back(a);
        }
        if round.is_multiple_of(8) {
            if let Ok(s) = tk::shm_create(0, 4096 * (1 + round % 16)) {
                segments.push_back(s);
            }
        }
    };
    while queues.len() < n && !stop.load(Ordering::Relaxed) {
        make(round, &mut queues, &mut arrays, &mut segments);
        round += 1;
    }
    let pause = std::time::Duration::from_micros(1_000_000 / rate.max(1));
    while !stop.load(Ordering::Relaxed) {
        for (kind, list) in [("msg", &mut queues), ("sem", &mut arrays)] {
            if let Some(id) = list.pop_front() {
                let _ = tk::remove(kind, id);
            }
        }
        if round.is_multiple_of(8) {
            if let Some(id) = segments.pop_front() {
                let _ = tk::remove("shm", id);
            }
        }
        make(round, &mut queues, &mut arrays, &mut segments);
        round += 1;
        std::thread::sleep(pause);
    }
}

fn parse_key(s: &str) -> Result<i32, String> {
    let v = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?,
        None => s.parse::<i64>().map_err(|e| e.to_string())? as u32,
    };
    Ok(v as i32)
}

fn num<T: std::str::FromStr>(words: &[&str], i: usize) -> Result<T, String> {
    let w = words.get(i).ok_or_else(|| format!("missing argument {i}"))?;
    w.parse().map_err(|_| format!("bad number `{w}`"))
}

fn run(state: &mut State, w: &[&str]) -> Result<String, String> {
    let e = |r: std::io::Error| r.to_string();
    match w[0] {
        "check-namespace" => {
            let ns = std::fs::read_link("/proc/thread-self/ns/ipc").map_err(e)?;
            if ns.to_string_lossy() == INIT_IPC_NS {
                std::process::exit(3);
            }
            Ok(ns.to_string_lossy().into_owned())
        }
        "sysctl" => {
            let value = w[2..].join(" ");
            std::fs::write(format!("/proc/sys/kernel/{}", w[1]), format!("{value}\n")).map_err(e)?;
            Ok(String::new())
        }
        "sem" => tk::sem_create(parse_key(w[1])?, num(w, 2)?).map(|id| id.to_string()).map_err(e),
        "msg" => tk::msg_create(parse_key(w[1])?).map(|id| id.to_string()).map_err(e),
        "shm" => tk::shm_create(parse_key(w[1])?, num(w, 2)?).map(|id| id.to_string()).map_err(e),
        "shm-noreserve" => {
            tk::shm_create_noreserve(parse_key(w[1])?, num(w, 2)?).map(|id| id.to_string()).map_err(e)
        }
        "send" | "fill" => {
            let (id, size) = (num(w, 1)?, num(w, 2)?);
            let count: usize =
                if w[0] == "fill" { usize::MAX } else { w.get(3).map_or(Ok(1), |_| num(w, 3))? };
            let mut sent = 0;
            while sent < count && tk::msg_send(id, size).map_err(e)? {
                sent += 1;
            }
            Ok(sent.to_string())
        }
        "capacity" => tk::msg_set_capacity(num(w, 1)?, num(w, 2)?).map(|_| String::new()).map_err(e),
        "attach" => tk::shm_attach(num(w, 1)?, num(w, 2)?).map(|a| a.to_string()).map_err(e),
        "detach" => tk::shm_detach(num(w, 1)?).map(|_| String::new()).map_err(e),
        "rm" => tk::remove(w[1], num(w, 2)?).map(|_| String::new()).map_err(e),
        "mq" => tk::mq_create(w[1], num(w, 2)?, num(w, 3)?).map(|_| String::new()).map_err(e),
        "mq-send" => {
            let count: usize = w.get(3).map_or(Ok(1), |_| num(w, 3))?;
            let mut sent = 0;
            while sent < count {
                match tk::mq_send(w[1], num(w, 2)?) {
                    Ok(()) => sent += 1,
                    Err(err) if err.raw_os_error() == Some(11) => break, // EAGAIN: full
                    Err(err) => return Err(err.to_string()),
                }
            }
            Ok(sent.to_string())
        }
        "mq-rm" => tk::mq_unlink(w[1]).map(|_| String::new()).map_err(e),
        "mq-sysctl" => {
            std::fs::write(format!("/proc/sys/fs/mqueue/{}", w[1]), format!("{}\n", w[2])).map_err(e)?;
            Ok(String::new())
        }
        "try" => {
            let count: usize = num(w, 2)?;
            let size: usize = w.get(3).map_or(Ok(1), |_| num(w, 3))?;
            let (made, refused) = tk::try_create(w[1], count, size).map_err(e)?;
            Ok(format!("{made} {}", refused.len()))
        }
        "try-mq" => {
            let count: usize = num(w, 1)?;
            let (mut made, mut refused) = (0, 0);
            for n in 0..count {
                match tk::mq_create(&format!("/t{n}"), 1, 16) {
                    Ok(()) => made += 1,
                    Err(_) => refused += 1,
                }
            }
            Ok(format!("{made} {refused}"))
        }
        "sem-wait" => {
            let (id, millis): (i32, u64) = (num(w, 1)?, num(w, 2)?);
            let got = tk::sem_wait(id, 0, std::time::Duration::from_millis(millis)).map_err(e)?;
            Ok(if got { "got" } else { "timeout" }.to_string())
        }
        "send-wait" => {
            let (id, size, millis): (i32, usize, u64) = (num(w, 1)?, num(w, 2)?, num(w, 3)?);
            let reader = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(millis));
                tk::msg_receive(id, size.max(1 << 16))
            });
            tk::msg_send_wait(id, size).map_err(e)?;
            reader.join().map_err(|_| "the reader panicked".to_string())?.map_err(e)?;
            Ok(String::new())
        }
        "try-send" => {
            let (id, size, count): (i32, usize, usize) = (num(w, 1)?, num(w, 2)?, num(w, 3)?);
            let mut refused = 0;
            for _ in 0..count {
                if !tk::msg_send(id, size).map_err(e)? {
                    refused += 1;
                }
            }
            Ok(refused.to_string())
        }
        "mq-fill-user" => {
            let (maxmsg, msgsize): (i64, i64) = (num(w, 1)?, num(w, 2)?);
            let mut n = 0;
            loop {
                match tk::mq_create(&format!("/u{n}"), maxmsg, msgsize) {
                    Ok(()) => n += 1,
                    Err(err) => return Ok(format!("{n} {}", err.raw_os_error().unwrap_or(0))),
                }
                if n > 100_000 {
                    return Err("no limit reached".into());
                }
            }
        }
        "map" => tk::map_file(w[1]).map(|_| String::new()).map_err(e),
        "undumpable" => tk::set_undumpable().map(|_| String::new()).map_err(e),
        "open" => {
            state.open_files.push(std::fs::File::open(w[1]).map_err(e)?);
            Ok(String::new())
        }
        "write" => {
            let bytes: usize = num(w, 2)?;
            std::fs::write(w[1], vec![1u8; bytes]).map_err(e)?;
            Ok(String::new())
        }
        "post" => {
            let id: i32 = num(w, 1)?;
            let mut num = 0u16;
            // Until the kernel says the semaphore number is past the array's end.
            loop {
                match tk::sem_post(id, num) {
                    Ok(()) => num += 1,
                    Err(err) if err.raw_os_error() == Some(27) && num > 0 => break, // EFBIG
                    Err(err) => return Err(err.to_string()),
                }
            }
            Ok(num.to_string())
        }
        "churn" => {
            if let Some((stop, handle)) = state.churn.take() {
                stop.store(true, Ordering::Relaxed);
                let _ = handle.join();
            }
            if w.get(1) == Some(&"pool") {
                let n: usize = num(w, 2)?;
                let rate: u64 = w.get(3).map_or(Ok(100), |_| num(w, 3))?;
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let handle = std::thread::spawn(move || pool(n, rate, &flag));
                state.churn = Some((stop, handle));
            } else if w.get(1) == Some(&"on") {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let handle = std::thread::spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        if let Ok(id) = tk::msg_create(0) {
                            let _ = tk::remove("msg", id);
                        }
                        if let Ok(id) = tk::sem_create(0, 2) {
                            let _ = tk::remove("sem", id);
                        }
                    }
                });
                state.churn = Some((stop, handle));
            }
            Ok(String::new())
        }
        "run" | "spawn" => {
            let out = std::fs::File::create(w[1]).map_err(e)?;
            let err = out.try_clone().map_err(e)?;
            let mut cmd = Command::new("setpriv");
            cmd.args(["--pdeathsig", "KILL", "--"])
                .args(&w[2..])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            if w[0] == "run" {
                let status = cmd.status().map_err(e)?;
                Ok(status.code().map_or_else(|| "signal".into(), |c| c.to_string()))
            } else {
                let child = cmd.spawn().map_err(e)?;
                let pid = child.id();
                state.children.insert(pid, child);
                Ok(pid.to_string())
            }
        }
        "signal" => {
            let status = Command::new("kill").arg(format!("-{}", w[2])).arg(w[1]).status().map_err(e)?;
            if status.success() {
                Ok(String::new())
            } else {
                Err("kill failed".into())
            }
        }
        "wait" => {
            let pid: u32 = num(w, 1)?;
            let mut child = state.children.remove(&pid).ok_or("no such child")?;
            let status = child.wait().map_err(e)?;
            Ok(status.code().map_or_else(|| "signal".into(), |c| c.to_string()))
        }
        other => Err(format!("unknown command `{other}`")),
    }
}
