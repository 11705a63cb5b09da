//! The container image, run as a DaemonSet pod runs it: built offline with podman from
//! deploy/image, its exported root started with its own ENTRYPOINT and CMD in new IPC, PID
//! and mount namespaces, with the "node's" / and /proc at /host/root and /host/proc.
//! The node is a throw-away namespace whose PID 1 is the test driver: its objects must be
//! the ones `system.*` describes, not the pod's own empty namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::alerts::{eventually, repo};
use crate::http::{free_port, get, ns_samples, wait_ready};
use crate::ns::{Namespace, IPCWATCH};

/// podman with its storage in `dir` (vfs: works without overlay or fuse), so the test leaves
/// no image or layer behind on the machine.
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--storage-driver=vfs")
        .arg(format!("--root={}", dir.join("storage").display()))
        .arg(format!("--runroot={}", dir.join("run").display()));
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run.sh installs podman)"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Podman's storage under `dir` is owned by root and partly read-only: removed through
/// podman itself, then the folder.
struct Storage(PathBuf);

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = podman(&self.0).args(["system", "reset", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_image_run_as_a_pod_describes_the_nodes_namespace_in_system_charts() {
    let mut node = Namespace::host("image");
    let storage = Storage(std::env::temp_dir().join(format!("ipcwatch-image-{}", std::process::id())));
    let dir = &storage.0;
    std::fs::create_dir_all(dir).unwrap();

    // Built as a user would, from the test's own binary (the recipe is what is tested).
    let tag = "localhost/ipcwatch-test:e2e";
    let engine = format!(
        "podman --storage-driver=vfs --root={} --runroot={}",
        dir.join("storage").display(),
        dir.join("run").display()
    );
    let built = Command::new(repo("deploy/image/build.sh"))
        .args([IPCWATCH, tag])
        .env("ENGINE", &engine)
        .output()
        .expect("deploy/image/build.sh");
    assert!(
        built.status.success(),
        "image build failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    // Its labels and its command, as a runtime reads them.
    let config: serde_json::Value =
        serde_json::from_str(&run(podman(dir).args(["image", "inspect", tag]))).unwrap();
    let config = &config[0]["Config"];
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0", "{labels}");
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{labels}");
    for key in ["revision", "source", "created"] {
        let value = labels[format!("org.opencontainers.image.{key}")].as_str().unwrap_or("");
        assert!(!value.is_empty() && value != "unknown", "label {key}: {labels}");
    }
    let command: Vec<String> = [&config["Entrypoint"], &config["Cmd"]]
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(command.contains(&"--path.procfs=/host/proc".to_string()), "{command:?}");

    // Its root filesystem, exported: the binary and the libraries it links, and no shell.
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let container = run(podman(dir).args(["create", tag])).trim().to_string();
    let tar = podman(dir).args(["export", &container]).output().unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let mut untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(untar.stdin.take());
    assert!(untar.wait().unwrap().success());
    assert!(root.join("usr/bin/ipcwatch").exists());
    assert!(!root.join("bin/sh").exists(), "the image carries no shell");
    // What a runtime provides: mount points for /proc and the host's root.
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::create_dir_all(root.join("host/root")).unwrap();
    std::fs::create_dir_all(root.join("host/proc")).unwrap();

    // The node: two arrays in its own namespace, and a container with an array and a queue.
    node.cmd("sem 0 3");
    node.cmd("sem 0 2");
    let node_ns: u64 =
        node.cmd("check-namespace").trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap();
    let (_, container_ns, _) = node.hold(&["sem 0 5", "msg 0"]);

    // The pod: its own IPC, PID and mount namespaces, its own /proc, the node's / and /proc
    // at /host/root and /host/proc (read-only where the kernel lets a user namespace say
    // so), and the image's command.
    let port = free_port();
    let pod = node.path("pod.sh");
    let args: Vec<String> = command
        .iter()
        .map(|a| format!("'{a}'"))
        .chain([format!("--web.listen-address=127.0.0.1:{port}")])
        .collect();
    std::fs::write(
        &pod,
        format!(
            "set -e\nR={root}\nmount -t proc proc $R/proc\nmount --rbind / $R/host/root\nmount -o remount,bind,ro $R/host/root 2>/dev/null || true\nmount --rbind /proc $R/host/proc\nexec chroot $R {args}\n",
            root = root.display(),
            args = args.join(" ")
        ),
    )
    .unwrap();
    let (_, log) =
        node.spawn("unshare", &["--ipc", "--pid", "--fork", "--mount", "sh", pod.to_str().unwrap()]);
    wait_ready(port, &log);

    let metrics = || ns_samples(&get(port, "/metrics").body);
    let value = |m: &std::collections::BTreeMap<String, f64>, name: &str, ns: u64| {
        m.get(&format!("{name}{{ipc_namespace=\"{ns}\"}}")).copied()
    };
    assert!(
        eventually(10, || value(&metrics(), "sysvipc_message_queues", container_ns) == Some(1.0)),
        "the container's namespace is not watched:\n{}\nlog:\n{}",
        get(port, "/metrics").body,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let body = get(port, "/metrics").body;
    let m = ns_samples(&body);
    assert_eq!(value(&m, "sysvipc_semaphore_arrays", node_ns), Some(2.0), "{body}");
    assert_eq!(value(&m, "sysvipc_semaphores", node_ns), Some(5.0), "{body}");
    assert_eq!(value(&m, "sysvipc_semaphore_arrays", container_ns), Some(1.0), "{body}");
    let info = |ns: u64| {
        body.lines()
            .find(|l| l.starts_with(&format!("sysvipc_namespace_info{{ipc_namespace=\"{ns}\",")))
            .unwrap_or_else(|| panic!("no sysvipc_namespace_info for {ns}:\n{body}"))
            .to_string()
    };
    assert!(info(node_ns).contains("host=\"true\""), "{}", info(node_ns));
    assert!(info(container_ns).contains("host=\"false\""), "{}", info(container_ns));
    // The queue's owner is named from the node's passwd: the image has none of its own.
    assert!(
        body.lines().any(|l| l.starts_with("sysvipc_message_queue_bytes{")
            && l.contains(&format!("ipc_namespace=\"{container_ns}\""))
            && l.contains("owner=\"root\"")),
        "{body}"
    );

    // Netdata's system.* charts describe the node's namespace, not the pod's empty one.
    let shell = get(port, "/api/v1/allmetrics?format=shell").body;
    assert!(shell.contains("NETDATA_SYSTEM_IPC_SEMAPHORE_ARRAYS_ARRAYS=\"2\""), "{shell}");
    assert!(shell.contains("NETDATA_SYSTEM_IPC_SEMAPHORES_SEMAPHORES=\"5\""), "{shell}");
    assert!(
        shell.contains(&format!("NETDATA_IPC_NS_{container_ns}_IPC_SEMAPHORE_ARRAYS_ARRAYS=\"1\"")),
        "{shell}"
    );
    drop(node);
}
