//! cgroup lines as real hosts write them, one per runtime.

use super::*;

const ID: &str = "4f1d2c3b4a5968778695a4b3c2d1e0f1f2e3d4c5b6a798897a6b5c4d3e2f1a0b";

fn id(text: &str) -> CgroupIdentity {
    identify_cgroup(text)
}

#[test]
fn docker_with_systemd_and_cgroupfs_drivers() {
    let v2 = id(&format!("0::/system.slice/docker-{ID}.scope\n"));
    assert_eq!(v2.container_id.as_deref(), Some(ID));
    assert_eq!(v2.unit, Some(format!("docker-{ID}.scope")));
    let v1 = id(&format!(
        "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
    ));
    assert_eq!(v1.container_id.as_deref(), Some(ID), "{v1:?}");
}

#[test]
fn kubernetes_containerd_and_crio_with_pod_uids() {
    let k = id(&format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b5f6c0e_1d2a_4c3b_9e8f_7a6b5c4d3e2f.slice/cri-containerd-{ID}.scope\n"
    ));
    assert_eq!(k.container_id.as_deref(), Some(ID));
    assert_eq!(k.pod_uid.as_deref(), Some("0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"));
    let cgroupfs = id(&format!("0::/kubepods/besteffort/pod0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f/{ID}\n"));
    assert_eq!(cgroupfs.pod_uid.as_deref(), Some("0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"));
    assert_eq!(cgroupfs.container_id.as_deref(), Some(ID));
    let crio = id(&format!(
        "0::/kubepods.slice/kubepods-pod0b5f6c0e_1d2a_4c3b_9e8f_7a6b5c4d3e2f.slice/crio-{ID}.scope\n"
    ));
    assert_eq!(crio.container_id.as_deref(), Some(ID));
    assert_eq!(crio.pod_uid.as_deref(), Some("0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"));
}

#[test]
fn podman_rootful_and_rootless_but_not_conmon() {
    let rootful = id(&format!("0::/machine.slice/libpod-{ID}.scope/container\n"));
    assert_eq!(rootful.container_id.as_deref(), Some(ID));
    let rootless =
        id(&format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"));
    assert_eq!(rootless.container_id.as_deref(), Some(ID));
    let conmon = id(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"));
    assert_eq!(conmon.container_id, None);
}

#[test]
fn systemd_units_and_nspawn() {
    let pg = id("0::/system.slice/postgresql@15-main.service\n");
    assert_eq!((pg.container_id, pg.unit.as_deref()), (None, Some("postgresql@15-main.service")));
    let nspawn = id("0::/machine.slice/systemd-nspawn@db.service/payload/system.slice/sshd.service\n");
    assert_eq!(nspawn.unit.as_deref(), Some("sshd.service"));
    let login = id("0::/user.slice/user-1000.slice/session-3.scope\n");
    assert_eq!(login.unit, None, "a login session is not a unit worth naming");
    assert_eq!(id(""), CgroupIdentity::default());
    assert_eq!(id("garbage without colons\n"), CgroupIdentity::default());
}

#[test]
fn pod_names_come_from_the_kubelets_log_folders() {
    let dir = std::env::temp_dir().join(format!("ipcwatch-pods-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("db_postgres-0_0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f")).unwrap();
    std::fs::create_dir_all(
        dir.join("kube-system_coredns-5d78c9869d-abcde_11111111-2222-3333-4444-555555555555"),
    )
    .unwrap();
    let pods = pod_names(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(pods["0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"], ("db".to_string(), "postgres-0".to_string()));
    assert_eq!(pods["11111111-2222-3333-4444-555555555555"].1, "coredns-5d78c9869d-abcde");
}

#[test]
fn this_process_is_found_in_its_namespace() {
    let scan = scan(Path::new("/proc"), Path::new("/nonexistent")).unwrap();
    let own = std::fs::metadata("/proc/self/ns/ipc").unwrap().ino();
    let me = std::process::id();
    let found = scan.namespaces.iter().find(|f| f.identity.inode == own).expect("our namespace");
    assert!(found.pids.contains(&me));
    assert!(scan.processes >= scan.namespaces.len());
}

/// Names anyone can give their own cgroups (`systemd-run --user --scope --unit docker-ID`,
/// a container with cgroup delegation) name no container or pod.
#[test]
fn runtime_names_count_only_where_the_runtime_puts_them() {
    let uid = "0b5f6c0e_1d2a_4c3b_9e8f_7a6b5c4d3e2f";
    for fake in [
        format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope\n"),
        format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope\n"),
        format!("0::/user.slice/user-1000.slice/session-4.scope/docker/{ID}\n"),
        format!("0::/system.slice/evil.service/docker-{ID}.scope\n"),
        format!("0::/system.slice/evil.service/kubepods-besteffort-pod{uid}.slice/crio-{ID}.scope\n"),
        format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
    ] {
        let found = id(&fake);
        assert_eq!((found.container_id.as_deref(), found.pod_uid.as_deref()), (None, None), "{fake}");
    }
    // A container's own nested cgroups cannot relabel it.
    let nested = id(&format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope/kubepods-pod11111111_2222_3333_4444_555555555555.slice/crio-{}.scope\n",
        "a".repeat(64)
    ));
    assert_eq!(nested.container_id.as_deref(), Some(ID));
    assert_eq!(nested.pod_uid.as_deref(), Some("0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"));
}

/// In a pod, the daemon reads other processes' cgroups relative to its own cgroup namespace.
#[test]
fn paths_relative_to_the_daemons_cgroup_namespace() {
    let uid = "0b5f6c0e_1d2a_4c3b_9e8f_7a6b5c4d3e2f";
    let other_pod = id(&format!(
        "0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope\n"
    ));
    assert_eq!(other_pod.container_id.as_deref(), Some(ID));
    assert_eq!(other_pod.pod_uid.as_deref(), Some("0b5f6c0e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"));
    let sibling = id(&format!("0::/../docker-{ID}.scope\n"));
    assert_eq!(sibling.container_id.as_deref(), Some(ID));
    let user = id(&format!(
        "0::/../../../user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope\n"
    ));
    assert_eq!(user.container_id, None);
}

/// (pid, start ticks, parent pid): a namespace's processes as /proc/PID/stat tells them.
#[test]
fn the_anchor_is_the_oldest_process_whose_parent_is_outside_never_a_later_joiner() {
    // A container: init 900 (parent 50, the runtime's shim, outside) and its child 950.
    let container = [(900, 1_000, 50), (950, 1_200, 900)];
    assert_eq!(choose_anchor(&container), Some(900));
    // `nsenter --ipc` later, with a lower pid after the pids wrapped: it started later.
    let joined = [(900, 1_000, 50), (950, 1_200, 900), (300, 9_000, 7)];
    assert_eq!(choose_anchor(&joined), Some(900));
    // A short-lived child with a lower pid (wrapped) is not the anchor either.
    let wrapped = [(900, 1_000, 50), (12, 5_000, 900)];
    assert_eq!(choose_anchor(&wrapped), Some(900));
    // Every parent inside (the init gone, reparented to a subreaper inside): the oldest.
    let inside = [(10, 2_000, 11), (11, 1_500, 10)];
    assert_eq!(choose_anchor(&inside), Some(11));
    assert_eq!(choose_anchor(&[]), None);
}
