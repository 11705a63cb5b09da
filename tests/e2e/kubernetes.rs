//! deploy/kubernetes: the kustomize base renders, every object validates strictly against the
//! Kubernetes schemas (kubernetes-validate) and prometheus-operator's CRDs
//! (tests/tools/validate_crds.py), and the PrometheusRule is alerts/ipcwatch.rules.yml.

use std::process::Command;

use crate::alerts::repo;

/// The PrometheusRule as generated from the one source of the Prometheus rules.
fn prometheus_rule() -> String {
    let rules = std::fs::read_to_string(repo("alerts/ipcwatch.rules.yml")).unwrap();
    let mut out = String::from(
        "# Generated from alerts/ipcwatch.rules.yml by `IPCWATCH_BLESS=1 cargo test -p ipcwatch --test e2e kubernetes`:\n\
         # edit that file, never this one (a test fails while the two differ).\n\
         apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: ipcwatch\nspec:\n",
    );
    for line in rules.lines().filter(|l| !l.starts_with('#')) {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[test]
fn the_prometheusrule_is_generated_from_the_rules_file() {
    let path = repo("deploy/kubernetes/prometheusrule.yaml");
    let want = prometheus_rule();
    if std::env::var_os("IPCWATCH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "deploy/kubernetes/prometheusrule.yaml is not generated from alerts/ipcwatch.rules.yml; run IPCWATCH_BLESS=1 cargo test -p ipcwatch --test e2e kubernetes"
    );
}

fn render() -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", repo("deploy/kubernetes").to_str().unwrap()])
        .output()
        .expect("kubectl is needed (on the machine image; tests/run.sh says if it is missing)");
    assert!(out.status.success(), "kubectl kustomize failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect()
}

#[test]
fn the_kustomize_base_renders_and_validates_strictly() {
    let rendered = render();
    let dir = std::env::temp_dir().join(format!("ipcwatch-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let check = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).arg(&file).output();
        out.map(|o| {
            (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            )
        })
    };
    // Built-in kinds against the Kubernetes schemas, unknown fields refused; the two
    // prometheus-operator kinds have no schema there and are checked next.
    let builtin = check("python3", &["-m", "kubernetes_validate", "--strict", "--no-warn"]);
    let crds = check("python3", &[repo("tests/tools/validate_crds.py").to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, builtin) = builtin.expect("kubernetes-validate (PyPI) is needed; tests/run.sh installs it");
    assert!(
        ok && !builtin.contains("ERROR"),
        "kubernetes-validate rejects the rendered base:\n{builtin}\n{rendered}"
    );
    let (ok, crds) = crds.expect("python3");
    assert!(ok && crds.contains("2 prometheus-operator objects checked, 0 errors"), "{crds}\n{rendered}");

    let docs = documents(&rendered);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in ["Namespace", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert!(pod["hostIPC"].is_null(), "the node's namespace is entered, not shared");
    assert!(pod["tolerations"].as_array().unwrap().iter().any(|t| t["operator"] == "Exists"));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["SYS_ADMIN", "SYS_PTRACE", "IPC_OWNER", "BPF", "PERFMON"])
    );
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string()
    );
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(
        args.contains(&"--path.procfs=/host/proc") && args.contains(&"--path.rootfs=/host/root"),
        "{args:?}"
    );
    for m in c["volumeMounts"].as_array().unwrap() {
        assert_eq!(m["readOnly"], true, "every host mount is read-only: {m}");
    }
    // The flags the pod passes are ones the binary takes.
    let help = Command::new(crate::ns::IPCWATCH).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for a in &args {
        let flag = a.split('=').next().unwrap();
        assert!(help.contains(flag), "{flag} is not a flag of ipcwatch");
    }
    // The Service selects the DaemonSet's pods, and the ServiceMonitor the Service.
    let svc = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service's selector {k} does not match the pods");
    }
    let sm = docs.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "the ServiceMonitor does not select the Service");
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"]);

    // The PrometheusRule's groups are the rules file's.
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").unwrap();
    let source: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo("alerts/ipcwatch.rules.yml")).unwrap())
            .unwrap();
    assert_eq!(rule["spec"]["groups"], source["groups"]);
}
