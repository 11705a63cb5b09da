//! A throw-away IPC namespace driven through `ipcwatch-testkit`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub const IPCWATCH: &str = env!("CARGO_BIN_EXE_ipcwatch");

/// The driver binary of the `ipcwatch-testkit` crate, built next to the daemon by
/// `cargo test --workspace` (that crate's own tests make cargo build it).
pub(crate) fn testkit() -> PathBuf {
    let path = std::path::Path::new(IPCWATCH).with_file_name("ipcwatch-testkit");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (tests/run.sh does), or `cargo build -p ipcwatch-testkit` first",
        path.display()
    );
    path
}

pub struct Namespace {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub dir: PathBuf,
    outputs: usize,
}

impl Namespace {
    /// A new user + IPC namespace (so the tests need no root and never touch the host's IPC).
    pub fn new(name: &str) -> Namespace {
        Namespace::start(name, &["--user", "--map-root-user", "--ipc"])
    }

    /// A new user + IPC + mount namespace: it may mount its own /dev/shm and mqueue.
    pub fn with_mount(name: &str) -> Namespace {
        Namespace::start(name, &["--user", "--map-root-user", "--ipc", "--mount"])
    }

    /// [`Namespace::with_mount`] where no process has CAP_SYS_PTRACE: each can read the
    /// others' /proc/PID/maps, fd and ns, except an undumpable one's (as another user's
    /// process looks to one without it).
    pub fn with_mount_without_ptrace(name: &str) -> Namespace {
        Namespace::start(
            name,
            &["--user", "--map-root-user", "--ipc", "--mount", "setpriv", "--bounding-set=-sys_ptrace"],
        )
    }

    /// A throw-away "host": new user, IPC, PID and mount namespaces, with the driver as PID 1
    /// and a /proc of its own, so that PID 1's IPC namespace (the host's, to ipcwatch) is
    /// this one. Every process in it dies with the driver.
    pub fn host(name: &str) -> Namespace {
        Namespace::start(
            name,
            &["--user", "--map-root-user", "--ipc", "--pid", "--fork", "--mount", "--mount-proc"],
        )
    }

    /// A new IPC namespace only, as real root (CI runs as root): processes in it can take
    /// any uid (`once_as`, `keep_as`), which a user namespace that maps root alone cannot.
    pub fn with_users(name: &str) -> Namespace {
        assert!(
            std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")),
            "this test makes objects as other users: it needs root (CI runs as root)"
        );
        Namespace::start(name, &["--ipc"])
    }

    /// Like [`Namespace::once`], as user `uid` (in a [`Namespace::with_users`] namespace).
    pub fn once_as(&mut self, uid: u32, commands: &[&str]) -> Vec<String> {
        let testkit = testkit();
        let script = commands.join(";").replace(' ', ",");
        let ids = [format!("--reuid={uid}"), format!("--regid={uid}")];
        let (code, text) = self.run(
            "setpriv",
            &[&ids[0], &ids[1], "--clear-groups", testkit.to_str().unwrap(), "--once", &script],
        );
        assert_eq!(code, "0", "{text}");
        let answers: Vec<String> = text.lines().map(str::to_string).collect();
        for (c, a) in commands.iter().zip(&answers) {
            assert!(a.starts_with("ok"), "`{c}` failed as uid {uid}: {a}");
        }
        answers
    }

    /// Like [`Namespace::keep`], as user `uid`: a process that lives on; its pid and answers.
    pub fn keep_as(&mut self, uid: u32, commands: &[&str]) -> (u32, Vec<String>) {
        let script = commands.join(";").replace(' ', ",");
        let testkit = testkit();
        let ids = [format!("--reuid={uid}"), format!("--regid={uid}")];
        let (pid, out) = self.spawn(
            "setpriv",
            &[&ids[0], &ids[1], "--clear-groups", testkit.to_str().unwrap(), "--hold", &script],
        );
        let answers = holding(&out);
        for (c, a) in commands.iter().zip(&answers) {
            assert!(a.starts_with("ok"), "`{c}` failed as uid {uid}: {a}");
        }
        (pid, answers)
    }

    fn start(name: &str, unshare: &[&str]) -> Namespace {
        let dir = std::env::temp_dir().join(format!("ipcwatch-e2e-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("unshare")
            .args(unshare)
            .arg(testkit())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ns = Namespace { child, stdin: Some(stdin), stdout, dir, outputs: 0 };
        let reply = ns.try_cmd("check-namespace");
        assert!(reply.is_ok(), "could not enter a new IPC namespace: {reply:?}");
        ns
    }

    /// The driver's pid (a process inside the namespaces, for /proc/PID/root paths).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command; `Ok(value)` or `Err(message)`.
    pub fn try_cmd(&mut self, line: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().expect("the driver is running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        let reply = reply.trim_end();
        if let Some(v) = reply.strip_prefix("ok") {
            Ok(v.trim().to_string())
        } else {
            Err(reply.strip_prefix("err ").unwrap_or(reply).to_string())
        }
    }

    /// Sends one command that must succeed.
    pub fn cmd(&mut self, line: &str) -> String {
        self.try_cmd(line).unwrap_or_else(|e| panic!("`{line}` failed: {e}"))
    }

    /// Like [`cmd`] for commands that return an id or a count.
    pub fn num(&mut self, line: &str) -> i64 {
        self.cmd(line).parse().unwrap()
    }

    fn next_output(&mut self) -> PathBuf {
        self.outputs += 1;
        self.dir.join(format!("out-{}", self.outputs))
    }

    /// Runs a program inside the namespace; returns (exit code, combined output).
    pub fn run(&mut self, program: &str, args: &[&str]) -> (String, String) {
        let out = self.next_output();
        let code = self.cmd(&format!("run {} {} {}", out.display(), program, args.join(" ")));
        (code, std::fs::read_to_string(out).unwrap())
    }

    /// Starts a program in the background inside the namespace; returns its pid and log path.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> (u32, PathBuf) {
        let out = self.next_output();
        let pid = self.cmd(&format!("spawn {} {} {}", out.display(), program, args.join(" ")));
        (pid.parse().unwrap(), out)
    }

    /// Starts a child IPC namespace (inside this one's user namespace) whose driver runs
    /// `commands` and then holds it; returns the holder's pid, its namespace inode and the
    /// commands' answers.
    pub fn hold(&mut self, commands: &[&str]) -> (u32, u64, Vec<String>) {
        let (pid, answers) = self.start_holder(true, commands);
        let inode = answers[0].trim_start_matches("ok ipc:[").trim_end_matches(']').parse().unwrap();
        (pid, inode, answers)
    }

    /// A process in this namespace that runs `commands` and then lives on (a program still
    /// using its objects); returns its pid and the commands' answers.
    pub fn keep(&mut self, commands: &[&str]) -> (u32, Vec<String>) {
        self.start_holder(false, commands)
    }

    /// A process in this namespace that runs `commands` and exits (a program that left its
    /// objects behind); returns the commands' answers.
    pub fn once(&mut self, commands: &[&str]) -> Vec<String> {
        let testkit = testkit();
        let script = commands.join(";").replace(' ', ",");
        let (code, text) = self.run(testkit.to_str().unwrap(), &["--once", &script]);
        assert_eq!(code, "0", "{text}");
        let answers: Vec<String> = text.lines().map(str::to_string).collect();
        for (c, a) in commands.iter().zip(&answers) {
            assert!(a.starts_with("ok"), "`{c}` failed: {a}");
        }
        answers
    }

    fn start_holder(&mut self, own_namespace: bool, commands: &[&str]) -> (u32, Vec<String>) {
        let script =
            std::iter::once("check-namespace").chain(commands.iter().copied()).collect::<Vec<_>>().join(";");
        let testkit = testkit();
        let (testkit, script) = (testkit.to_str().unwrap(), script.replace(' ', ","));
        let (pid, out) = if own_namespace {
            self.spawn("unshare", &["--ipc", testkit, "--hold", &script])
        } else {
            self.spawn(testkit, &["--hold", &script])
        };
        let answers = holding(&out);
        for (c, a) in std::iter::once(&"check-namespace").chain(commands).zip(&answers) {
            assert!(a.starts_with("ok"), "`{c}` failed in the holder: {a}");
        }
        (pid, answers)
    }

    /// The daemon in this namespace with `config` (TOML) on a free port, once ready: its
    /// port, pid and log.
    pub fn daemon(&mut self, config: &str) -> (u16, u32, PathBuf) {
        let path = self.path("daemon.toml");
        std::fs::write(&path, config).unwrap();
        let port = crate::http::free_port();
        let listen = format!("127.0.0.1:{port}");
        let (pid, log) =
            self.spawn(IPCWATCH, &["--config", path.to_str().unwrap(), "--web.listen-address", &listen]);
        crate::http::wait_ready(port, &log);
        (port, pid, log)
    }

    pub fn snapshot_json(&mut self) -> serde_json::Value {
        let (code, text) = self.run(IPCWATCH, &["snapshot", "--json"]);
        assert_eq!(code, "0", "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Closing stdin ends the driver, which stops what it started; the namespace and its
        // objects die with it. If it does not end in time, SIGKILL it: what it started has
        // a parent-death signal and follows it.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The answers a `testkit --hold` process wrote to `out` before it said `holding`.
fn holding(out: &std::path::Path) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if text.contains("holding\n") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "the holder did not start: {text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    text.lines().take_while(|l| *l != "holding").map(str::to_string).collect()
}

/// `ipcs -u` figures, the reference we compare against.
pub fn ipcs_usage(text: &str) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim(), v.split_whitespace().next()),
            None => match line.rsplit_once(char::is_whitespace) {
                Some((n, v)) => (n.trim(), Some(v)),
                None => continue,
            },
        };
        if let Some(v) = value.and_then(|v| v.parse().ok()) {
            out.insert(name.to_string(), v);
        }
    }
    out
}

/// A program that dies with its test: the kernel SIGKILLs it if the test's thread ends first
/// (`setpriv --pdeathsig`, so even a test killed outright leaves nothing behind).
pub fn dies_with_test(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", program]);
    cmd
}

/// A child killed and reaped when dropped, also when its test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `recv` on a datagram socket, again after a signal interrupts it.
pub fn recv(sock: &std::os::unix::net::UnixDatagram, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match sock.recv(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
