//! `xdp-ingress migrate` on directories of real-world-shaped ingress-nginx manifests
//! (tests/migrate/): the JSON report (schema in deploy/docs/migrate-from-ingress-nginx.md) and
//! the exit status (0 same behaviour, 1 something differs).

use std::{path::Path, process::Command};

use serde_json::{Value, json};

fn migrate(args: &[&str]) -> (i32, String) {
    let out = Command::new(testbed::built_xdp_ingress_bin())
        .arg("migrate")
        .args(args)
        .output()
        .expect("running xdp-ingress migrate");
    assert!(
        out.status.code().is_some(),
        "killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
    )
}

fn dir(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrate")
        .join(name)
        .display()
        .to_string()
}

/// `[name, status]` pairs of a list of entries.
fn statuses(entries: &Value) -> Value {
    Value::Array(
        entries
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| json!([e["name"], e["status"]]))
            .collect(),
    )
}

#[test]
fn migrate_reports_every_annotation_and_key_and_exits_1_on_differences() {
    let (code, out) = migrate(&[
        "--manifests",
        &dir("ingress-nginx"),
        "--ingress-class",
        "nginx",
        "--output",
        "json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 1, "{out}");
    const N: &str = "nginx.ingress.kubernetes.io/";
    let names: Vec<String> = r["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["namespace"].as_str().unwrap(),
                i["name"].as_str().unwrap()
            )
        })
        .collect();
    // The traefik Ingress is left out; the legacy class annotation counts.
    assert_eq!(
        names,
        ["api/api", "default/blog", "legacy/admin", "shop/storefront"]
    );
    let ing = |i: usize| &r["ingresses"][i];
    assert_eq!(
        statuses(&ing(0)["annotations"]),
        json!([
            [format!("{N}enable-cors"), "supported"],
            [format!("{N}limit-rps"), "differs"],
            [format!("{N}proxy-read-timeout"), "supported"],
            [format!("{N}rewrite-target"), "supported"],
            [format!("{N}use-regex"), "supported"],
        ])
    );
    assert_eq!(ing(0)["served"], true);
    assert_eq!(ing(1)["class"], "nginx");
    assert_eq!(
        statuses(&ing(1)["annotations"]),
        json!([
            [format!("{N}proxy-connect-timeout"), "differs"],
            [format!("{N}proxy-read-timout"), "unknown"],
        ])
    );
    let problems = ing(1)["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with("InvalidAnnotation: annotation proxy-connect-timeout: \"soon\""),
        "{problems:?}"
    );
    // The problem is on its annotation's own row too.
    assert_eq!(ing(1)["annotations"][0]["note"], problems[0]);
    // Snippets: refused, with the reason, and the Ingress is not served.
    assert_eq!(
        statuses(&ing(2)["annotations"]),
        json!([
            [format!("{N}configuration-snippet"), "refused"],
            [format!("{N}server-snippet"), "refused"],
            [format!("{N}whitelist-source-range"), "supported"],
        ])
    );
    assert!(
        ing(2)["annotations"][0]["note"]
            .as_str()
            .unwrap()
            .contains("never interpreted")
    );
    assert_eq!(ing(2)["served"], false);
    assert_eq!(ing(3)["problems"], json!([]));
    assert!(
        ing(3)["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "supported" && a["note"] == "")
    );

    let cm = &r["configmap"];
    assert_eq!(
        (cm["namespace"].as_str(), cm["name"].as_str()),
        (Some("ingress-nginx"), Some("ingress-nginx-controller"))
    );
    assert_eq!(
        statuses(&cm["keys"]),
        json!([
            ["allow-snippet-annotations", "differs"],
            ["custom-http-errors", "differs"],
            ["hsts-max-age", "supported"],
            ["proxy-body-size", "supported"],
            ["proxy-read-timout", "unknown"],
            ["ssl-redirect", "differs"],
            ["use-forwarded-headers", "supported"],
            ["worker-processes", "refused"],
        ])
    );
    assert_eq!(cm["problems"].as_array().unwrap().len(), 1, "{cm}");
    assert_eq!(
        r["summary"],
        json!({"supported": 12, "differs": 5, "refused": 3, "not_yet": 0, "unknown": 2})
    );
    assert_eq!(r["same_behaviour"], false);

    // The table (default output) says the same, then how to run side by side.
    let (code, table) = migrate(&[
        "--manifests",
        &dir("ingress-nginx"),
        "--ingress-class",
        "nginx",
    ]);
    assert_eq!(code, 1);
    assert!(table.contains("ingress legacy/admin"), "{table}");
    assert!(
        table.contains("not served: it has snippet annotations"),
        "{table}"
    );
    assert!(
        table.contains("12 supported, 5 differ, 3 refused, 0 not yet, 2 unknown"),
        "{table}"
    );
    // An invalid value is on its key's own row, not on a row of its own keyed `-`.
    let row = table
        .lines()
        .find(|l| l.contains(" ssl-redirect "))
        .expect("the ssl-redirect row");
    assert!(
        row.contains("differs") && row.contains("\"maybe\" is not true or false"),
        "{row}"
    );
    assert!(
        !table
            .lines()
            .any(|l| l.contains(" - ") && l.contains("InvalidConfigMapValue")),
        "{table}"
    );
    // `explain` shows the ConfigMap's problems too (every request is under it).
    let out = Command::new(testbed::built_xdp_ingress_bin())
        .args(["explain", "--manifests", &dir("ingress-nginx")])
        .args(["--configmap", "ingress-nginx/ingress-nginx-controller"])
        .args(["--host", "shop.example.com"])
        .output()
        .expect("running xdp-ingress explain");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<&str> = e["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["object"]["kind"] == "ConfigMap")
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"InvalidConfigMapValue"), "{e}");
    assert!(table.contains("--no-status"), "{table}");
}

#[test]
fn migrate_exits_0_when_everything_behaves_the_same() {
    let (code, out) = migrate(&["--manifests", &dir("same"), "--output", "json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["same_behaviour"], true);
    assert_eq!(r["configmap"], Value::Null);
    assert_eq!(r["summary"]["supported"], 4);
}

/// The table in the migration guide is the one the binary prints.
#[test]
fn migration_doc_table_is_generated_from_the_support_table() {
    let (code, table) = migrate(&["--print-table", "markdown"]);
    assert_eq!(code, 0);
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docs/migrate-from-ingress-nginx.md"),
    )
    .unwrap();
    const BEGIN: &str = "<!-- BEGIN generated: xdp-ingress migrate --print-table markdown -->\n";
    const END: &str = "<!-- END generated -->";
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc[start..].find(END).expect("end marker") + start;
    assert!(
        doc[start..end] == table,
        "deploy/docs/migrate-from-ingress-nginx.md is stale: regenerate it with \
         `xdp-ingress migrate --print-table markdown`"
    );
}

#[test]
fn migrate_errors_exit_2() {
    let (code, _) = migrate(&["--manifests", "/nonexistent/xdp-ingress-migrate"]);
    assert_eq!(code, 2);
    // A class no Ingress has is no all-clear.
    let (code, _) = migrate(&[
        "--manifests",
        &dir("ingress-nginx"),
        "--ingress-class",
        "no-such-class",
    ]);
    assert_eq!(code, 2);
}

/// `--to gateway-api` keeps the command's exit status: 1 when a `# note:` says something
/// would behave differently (ingress-nginx's annotations here), 0 when the Ingresses
/// convert without one.
#[test]
fn migrate_to_gateway_api_exits_1_when_a_note_says_behaviour_differs() {
    let (code, out) = migrate(&["--manifests", &dir("ingress-nginx"), "--to", "gateway-api"]);
    assert!(out.contains("# note:"), "{out}");
    assert_eq!(code, 1, "{out}");
    let (code, out) = migrate(&["--manifests", &dir("same"), "--to", "gateway-api"]);
    assert_eq!(code, i32::from(out.contains("# note:")), "{out}");
}

/// `explain --gateway NS/NAME` for a Gateway the manifests do not hold prints why and exits
/// non-zero (a typo in the name is not an answer; found by a fresh-user trial: it exited 0).
#[test]
fn explain_of_a_gateway_that_does_not_exist_fails() {
    let out = Command::new(testbed::built_xdp_ingress_bin())
        .args(["explain", "--manifests", &dir("ingress-nginx")])
        .args(["--gateway", "nowhere/no-such-gateway"])
        .output()
        .expect("running xdp-ingress explain");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Gateway nowhere/no-such-gateway"), "{err}");
}

/// A reader that stops early (`explain | grep -m1`, `migrate | head`) ends the output: exit 0,
/// no panic (found by a fresh-user trial: `print!` panicked on the broken pipe).
#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_output_quietly() {
    use std::process::Stdio;
    let manifests = dir("ingress-nginx");
    for args in [
        vec!["migrate", "--print-table", "markdown"],
        vec!["migrate", "--manifests", &manifests],
        vec!["explain", "--manifests", &manifests, "--host", "x.example"],
    ] {
        let mut child = Command::new(testbed::built_xdp_ingress_bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running xdp-ingress");
        // Closed before the child has started: its first write gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("waiting for xdp-ingress");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // migrate's 0/1 is its verdict; only 2 (an error) or a signal would be wrong.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// `strict-validate-path-type` (default true since ingress-nginx 1.12, whose admission
/// webhook then refuses an Exact/Prefix path of other characters than `validPathType`'s):
/// `migrate` reports the Ingress as not served with the webhook's message, `explain` shows the
/// Error for its host; `strict-validate-path-type: "false"` serves it and behaves the same.
#[test]
fn strict_path_type_refuses_a_regex_prefix_path_unless_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let ingress = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: shop}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: api.example.com
    http:
      paths:
      - {path: \"/v1(/|$)(.*)\", pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
";
    std::fs::write(tmp.path().join("ing.yaml"), ingress).unwrap();
    let manifests = tmp.path().display().to_string();
    let (code, out) = migrate(&["--manifests", &manifests, "--output", "json"]);
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(r["ingresses"][0]["served"], false, "{out}");
    assert_eq!(
        r["ingresses"][0]["problems"],
        json!([
            "InvalidPathForPathType: ingress contains invalid paths: path /v1(/|$)(.*) cannot be \
             used with pathType Prefix (strict-validate-path-type: use pathType \
             ImplementationSpecific); the Ingress is not served"
        ])
    );
    let explain = Command::new(testbed::built_xdp_ingress_bin())
        .args([
            "explain",
            "--manifests",
            &manifests,
            "--host",
            "api.example.com",
        ])
        .output()
        .expect("running xdp-ingress explain");
    let e: Value = serde_json::from_slice(&explain.stdout).unwrap();
    assert_eq!(e["status"], 404, "{e}");
    assert_eq!(
        e["diagnostics"][0]["reason"], "InvalidPathForPathType",
        "{e}"
    );

    let cm = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data: {strict-validate-path-type: \"false\"}
";
    std::fs::write(tmp.path().join("cm.yaml"), cm).unwrap();
    let (code, out) = migrate(&["--manifests", &manifests, "--output", "json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["ingresses"][0]["served"], true, "{out}");
    assert_eq!(
        statuses(&r["configmap"]["keys"]),
        json!([["strict-validate-path-type", "supported"]])
    );
}
