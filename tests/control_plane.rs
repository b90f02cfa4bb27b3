//! Control plane end to end (no root needed): the manifest-directory source and the Kubernetes
//! source (real kube-rs client against the in-process API-server double) feeding the real
//! control loop; assertions on the snapshots it publishes.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use testbed::apiserver::ApiServer;
use tokio::sync::watch;
use xdp_ingress::{
    controller::{self, ControlLoop, LoopConfig},
    model::{
        RouteAction, Snapshot,
        translate::{TranslateConfig, Translator},
    },
    source::{files, kube as kube_source},
    status,
    store::Object,
};

const CONVERGE: Duration = Duration::from_secs(20);

fn control_loop() -> ControlLoop {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![],
        LoopConfig::default(),
    )
}

/// Waits until the published snapshot satisfies `pred`; panics with `what` after [`CONVERGE`].
async fn converge(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let got = match tokio::time::timeout(CONVERGE, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    match got {
        Some(s) => s,
        None => panic!(
            "did not converge: {what}; last snapshot: {:#?}",
            rx.borrow().l7.hosts.keys().collect::<Vec<_>>()
        ),
    }
}

fn upstream_of(s: &Snapshot, host: &str, path_index: usize) -> Option<String> {
    let vh = s.l7.hosts.get(host)?;
    match &vh.routes.get(path_index)?.action {
        RouteAction::Forward(u) => Some(u[0].upstream.id.clone()),
        RouteAction::Respond { status, .. } => Some(status.to_string()),
        RouteAction::DefaultBackend => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_dir_edits_apply_and_broken_files_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    files::write_default_manifests(dir.path()).unwrap();
    let ctl = control_loop();
    let _w = files::watch(files::ManifestDir::new(dir.path()), ctl.events.clone()).unwrap();
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "initial load", |s| {
        s.l7.hosts.contains_key("echo.example.com")
    })
    .await;

    let path = dir.path().join("20-ingress.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("echo.example.com", "renamed.example.com"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let s = converge(&mut rx, "edit", |s| {
        s.l7.hosts.contains_key("renamed.example.com")
    })
    .await;
    eprintln!("manifest edit live after {:?}", t0.elapsed());
    assert!(!s.l7.hosts.contains_key("echo.example.com"));
    let renamed = std::fs::read_to_string(&path).unwrap();

    // Written in place with a pause (`(sleep 1; cat good) > file`): the truncated file is
    // held at its last good version, so no snapshot in between lacks the host.
    let mut watch_host = ctl.snapshots.clone();
    let dropped = tokio::spawn(async move {
        while watch_host.changed().await.is_ok() {
            if !watch_host
                .borrow_and_update()
                .l7
                .hosts
                .contains_key("renamed.example.com")
            {
                return true;
            }
        }
        false
    });
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(files::SETTLE * 6).await;
    std::fs::write(&path, &renamed).unwrap();
    tokio::time::sleep(files::HOLD + files::SETTLE * 4).await;
    assert!(
        !dropped.is_finished(),
        "a host went while its file was rewritten"
    );
    dropped.abort();
    assert!(rx.borrow().l7.hosts.contains_key("renamed.example.com"));

    // Emptied on purpose and left so: its objects go once the hold runs out.
    std::fs::write(&path, "").unwrap();
    let t0 = std::time::Instant::now();
    converge(&mut rx, "file emptied", |s| {
        !s.l7.hosts.contains_key("renamed.example.com")
    })
    .await;
    assert!(
        t0.elapsed() >= files::HOLD,
        "deleted before the hold ran out"
    );
    std::fs::write(&path, &renamed).unwrap();
    converge(&mut rx, "file written again", |s| {
        s.l7.hosts.contains_key("renamed.example.com")
    })
    .await;

    // A broken file: a diagnostic, and everything keeps being served as before.
    std::fs::write(
        &path,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: [\n",
    )
    .unwrap();
    let s = converge(&mut rx, "broken file diagnostic", |s| {
        s.diagnostics.iter().any(|d| d.reason == "InvalidManifest")
    })
    .await;
    assert!(s.l7.hosts.contains_key("renamed.example.com"));
    assert!(s.l7.hosts.contains_key("secure.example.com"));
    assert_eq!(s.l4.len(), 1);

    // A removed file removes its objects.
    std::fs::remove_file(dir.path().join("10-echo.yaml")).unwrap();
    let s = converge(&mut rx, "file removed", |s| s.l4.is_empty()).await;
    assert_eq!(
        upstream_of(&s, "renamed.example.com", 0).as_deref(),
        Some("503"),
        "service gone: 503 route"
    );
}

/// The default manifests as JSON objects for the API server.
fn default_objects_json() -> Vec<Value> {
    let mut out = Vec::new();
    for (_, text) in files::DEFAULT_MANIFESTS {
        for o in files::parse_manifests(text).unwrap() {
            out.push(o.to_json().unwrap());
        }
    }
    out
}

async fn kube_client(api: &ApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_source_converges_on_create_update_delete() {
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    // An Opaque Secret (basic-auth users) is read but named by nothing here.
    api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "opaque", "namespace": "default"}, "type": "Opaque"}));
    // Record every snapshot a plane gets, to check the very first one.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Arc<Snapshot>>::new()));
    let rec = seen.clone();
    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![controller::sink("recorder", move |s| {
            rec.lock().unwrap().push(s.clone());
            Ok(())
        })],
        LoopConfig::default(),
    );
    let _tasks = kube_source::spawn(kube_client(&api).await, None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    let s = converge(&mut rx, "initial list", |s| {
        s.l7.hosts.contains_key("echo.example.com") && s.l4.len() == 1
    })
    .await;
    assert!(s.l7.certificates.contains_key("secure.example.com"));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    // The first snapshot any plane saw was already complete: every kind listed before it.
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.version, 1);
    assert!(
        first.diagnostics.is_empty(),
        "first snapshot: {:?}",
        first.diagnostics
    );
    assert_eq!(
        (
            first.l7.hosts.len(),
            first.l4.len(),
            first.l7.certificates.len()
        ),
        (2, 1, 1)
    );

    // Update an Ingress.
    let mut ing = api.get("ingresses", "default", "echo").unwrap();
    ing["spec"]["rules"][0]["host"] = json!("new.example.com");
    api.put(ing);
    converge(&mut rx, "ingress update", |s| {
        s.l7.hosts.contains_key("new.example.com") && !s.l7.hosts.contains_key("echo.example.com")
    })
    .await;

    // Endpoints: a pod turns terminating, then a new slice is added.
    let mut slice = api.get("endpointslices", "default", "echo-1").unwrap();
    slice["endpoints"][0]["conditions"] =
        json!({"ready": false, "serving": true, "terminating": true});
    api.put(slice);
    converge(&mut rx, "endpoint terminating", |s| {
        s.l4.first().is_some_and(|l| {
            l.endpoints
                .iter()
                .filter(|e| e.state == xdp_ingress::model::EndpointState::Terminating)
                .count()
                == 1
        })
    })
    .await;
    api.put(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "echo-2", "namespace": "default", "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4", "ports": [{"name": "tcp", "port": 9000}],
        "endpoints": [{"addresses": ["198.19.3.2"], "conditions": {"ready": true}}]}));
    converge(&mut rx, "slice added", |s| {
        s.l4.first().is_some_and(|l| l.endpoints.len() == 4)
    })
    .await;

    // Delete a Service: its routes answer 503, with a diagnostic; the other host is unaffected.
    api.remove("services", "default", "api");
    let s = converge(&mut rx, "service delete", |s| {
        upstream_of(s, "secure.example.com", 0).as_deref() == Some("503")
    })
    .await;
    assert!(s.diagnostics.iter().any(|d| d.reason == "ServiceNotFound"));
    assert_eq!(
        upstream_of(&s, "new.example.com", 0).as_deref(),
        Some("default/web:80")
    );

    // Class moves away: the Ingress is ignored entirely.
    let mut ing = api.get("ingresses", "default", "echo").unwrap();
    ing["spec"]["ingressClassName"] = json!("nginx");
    api.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}));
    api.put(ing);
    converge(&mut rx, "class change", |s| {
        !s.l7.hosts.contains_key("new.example.com")
    })
    .await;

    // Delete the TLS Secret: the host keeps being served (default certificate), with a diagnostic.
    api.remove("secrets", "default", "secure-tls");
    let s = converge(&mut rx, "secret delete", |s| s.l7.certificates.is_empty()).await;
    assert!(s.l7.hosts["secure.example.com"].tls);
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.reason == "TlsSecretNotFound")
    );

    // Delete an Ingress.
    api.remove("ingresses", "default", "secure");
    converge(&mut rx, "ingress delete", |s| {
        !s.l7.hosts.contains_key("secure.example.com")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_outage_keeps_serving_and_relists_on_410() {
    let mut api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let ctl = control_loop();
    let _tasks = kube_source::spawn(kube_client(&api).await, None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    let before = converge(&mut rx, "initial list", |s| {
        s.l7.hosts.contains_key("echo.example.com")
    })
    .await;

    // API server gone: the last snapshot stays live.
    api.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rx.borrow().clone();
    assert_eq!(
        during.version, before.version,
        "no snapshot change while the API server is gone"
    );
    assert!(during.l7.hosts.contains_key("echo.example.com"));

    // Changes while it was gone, and history compacted: resuming the watch gets 410 Gone.
    let lists_before = api.list_count("ingresses");
    api.remove("ingresses", "default", "echo");
    let mut ing = api.get("ingresses", "default", "secure").unwrap();
    ing["spec"]["rules"][0]["host"] = json!("back.example.com");
    api.put(ing);
    api.compact();
    api.restart().await.unwrap();

    let s = converge(&mut rx, "re-list after outage", |s| {
        s.l7.hosts.contains_key("back.example.com") && !s.l7.hosts.contains_key("echo.example.com")
    })
    .await;
    assert!(s.l7.any_host.is_some(), "the catch-all Ingress");
    assert!(
        api.list_count("ingresses") > lists_before,
        "re-listed after 410"
    );

    // And it keeps watching after the re-list.
    api.remove("ingresses", "default", "secure");
    converge(&mut rx, "watch after re-list", |s| {
        !s.l7.hosts.contains_key("back.example.com")
    })
    .await;
}

/// Polls `f` every 50 ms until it holds; panics with `what` after [`CONVERGE`].
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + CONVERGE;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn quick_lease(identity: &str) -> status::leader::LeaseConfig {
    status::leader::LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..status::leader::LeaseConfig::new("kube-system", "xdp-ingress-leader", identity)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_elect_one_leader_and_fail_over() {
    let api = ApiServer::start().await.unwrap();
    let a = status::leader::spawn(kube_client(&api).await, quick_lease("node-a"));
    let b = status::leader::spawn(kube_client(&api).await, quick_lease("node-b"));
    let leaders = || [*a.is_leader.borrow(), *b.is_leader.borrow()];
    eventually("one leader", || leaders().iter().any(|l| *l)).await;
    // Never two at once, across several renew periods.
    for _ in 0..40 {
        assert_ne!(leaders(), [true, true], "two leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower, follower_name) = if leaders()[0] {
        (a, b, "node-b")
    } else {
        (b, a, "node-a")
    };
    let holder = |api: &ApiServer| {
        api.get("leases", "kube-system", "xdp-ingress-leader")
            .unwrap()["spec"]["holderIdentity"]
            .clone()
    };
    assert_ne!(holder(&api), json!(follower_name));

    // The leader stops renewing (crash): the follower takes over after the lease duration.
    leader.task.abort();
    let t0 = std::time::Instant::now();
    eventually("fail-over", || *follower.is_leader.borrow()).await;
    eprintln!("fail-over after {:?}", t0.elapsed());
    assert_eq!(holder(&api), json!(follower_name));
    let transitions = api
        .get("leases", "kube-system", "xdp-ingress-leader")
        .unwrap()["spec"]["leaseTransitions"]
        .clone();
    assert_eq!(transitions, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_writes_status_addresses_and_events_once() {
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let cfg = TranslateConfig {
        publish_addresses: vec!["198.18.0.10".into()],
        ..Default::default()
    };
    let ctl = controller::spawn(Translator::new(cfg), vec![], LoopConfig::default());
    let client = kube_client(&api).await;
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);

    let lb_ip = |name: &str| {
        api.get("ingresses", "default", name).and_then(|i| {
            i["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string)
        })
    };
    eventually("status written", || {
        ["echo", "secure", "default-backend"]
            .iter()
            .all(|n| lb_ip(n).as_deref() == Some("198.18.0.10"))
    })
    .await;

    // Status-only changes of an Ingress (as our own writes are) do not trigger a translation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = ctl.snapshots.borrow().version;
    let mut ing = api.get("ingresses", "default", "default-backend").unwrap();
    ing["status"]["loadBalancer"]["ingress"] = json!([{"ip": "198.18.0.99"}]);
    api.put(ing);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        ctl.snapshots.borrow().version,
        v,
        "a status-only change re-translated"
    );

    // The Ingress stops being ours: its status address is removed.
    api.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}));
    let mut ing = api.get("ingresses", "default", "echo").unwrap();
    ing["spec"]["ingressClassName"] = json!("nginx");
    api.put(ing);
    eventually("status removed", || {
        api.get("ingresses", "default", "echo")
            .is_some_and(|i| i["status"]["loadBalancer"].get("ingress").is_none())
    })
    .await;
    assert_eq!(lb_ip("secure").as_deref(), Some("198.18.0.10"));

    // A broken Ingress: one Event, not repeated while the problem stays.
    api.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"ingressClassName": "xdp-ingress", "rules": [{"host": "broken.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "missing", "port": {"number": 80}}}}]}}]}}));
    let events_for = |reason: &str| {
        api.list("events")
            .into_iter()
            .filter(|e| e["reason"] == reason && e["regarding"]["name"] == "broken")
            .count()
    };
    eventually("event created", || events_for("ServiceNotFound") == 1).await;
    // More snapshots (and writer ticks) while the problem stays: still one Event.
    let mut web = api.get("services", "default", "web").unwrap();
    web["metadata"]["labels"] = json!({"touched": "yes"});
    api.put(web);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(events_for("ServiceNotFound"), 1);
    let e = api
        .list("events")
        .into_iter()
        .find(|e| e["reason"] == "ServiceNotFound")
        .unwrap();
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "Ingress");
    assert_eq!(e["reportingController"], "xdp-ingress.dev/controller");
}

/// The daemon binary itself: `run --no-xdp --kubeconfig` watches the double, wins the Lease,
/// writes status, and hands the Lease back on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_binary_serves_kube_source_and_releases_lease() {
    let bin = testbed::xdp_ingress_bin();
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p ingress-userspace)",
        bin.display()
    );
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: double, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: double, user: u}}}}]\ncurrent-context: c\n",
            api.url()
        ),
    )
    .unwrap();
    let metrics_port = testbed::ports::reserve(1);
    let mut daemon = testbed::process::KillOnDrop::spawn(
        std::process::Command::new(&bin)
            .args(["run", "--no-xdp", "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--publish-address",
                "198.18.0.10",
                "--election-namespace",
                "default",
                "--identity",
                "daemon-1",
            ])
            // The proxy stays on loopback, on ports the kernel picks.
            .args([
                "--listen-address",
                "127.0.0.1",
                "--http-port",
                "0",
                "--https-port",
                "0",
            ])
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}")),
    )
    .unwrap();
    let lb_ip = || {
        api.get("ingresses", "default", "secure").and_then(|i| {
            i["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string)
        })
    };
    eventually("daemon wrote status", || {
        lb_ip().as_deref() == Some("198.18.0.10")
    })
    .await;
    let holder = || {
        api.get("leases", "default", "xdp-ingress-leader")
            .map(|l| l["spec"]["holderIdentity"].clone())
    };
    assert_eq!(holder(), Some(json!("daemon-1")));

    // The control loop's metrics are on the proxy's /metrics.
    let metrics = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap();
    assert!(
        metrics.contains("xdp_ingress_control_event_to_live_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xdp_ingress_control_snapshots_total"),
        "{metrics}"
    );

    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit on SIGTERM: {status:?}"
    );
    assert_eq!(holder(), Some(Value::Null), "lease released");
}

/// Bookmarks move a quiet watch's resourceVersion forward, so after the server compacts its
/// history and restarts, the watch resumes where it was instead of re-listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_let_watches_resume_without_relist() {
    let mut api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let ctl = control_loop();
    let _tasks = kube_source::spawn(kube_client(&api).await, None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "initial list", |s| {
        s.l7.hosts.contains_key("echo.example.com")
    })
    .await;

    // Unrelated writes move the server's resourceVersion well past every watched object.
    for i in 0..20 {
        api.put(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": format!("other-{i}"), "namespace": "default"}, "spec": {}}),
        );
    }
    // Longer than the double's bookmark period: every watch has seen the new version.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lists = api.list_count("ingresses");
    api.compact();
    api.restart().await.unwrap();
    api.remove("ingresses", "default", "echo");
    converge(&mut rx, "change after restart", |s| {
        !s.l7.hosts.contains_key("echo.example.com")
    })
    .await;
    assert_eq!(
        api.list_count("ingresses"),
        lists,
        "resumed from the bookmark, no re-list"
    );
    assert!(
        api.watch_count("ingresses") >= 2,
        "the watch was re-established"
    );
}

/// A manifest directory mounted from a ConfigMap: files are symlinks through `..data`, which
/// the kubelet swaps atomically on update. The swap is picked up like an edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_dir_follows_configmap_symlink_swaps() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write_version = |name: &str, host: &str| {
        let v = d.join(name);
        std::fs::create_dir(&v).unwrap();
        files::write_default_manifests(&v).unwrap();
        let p = v.join("20-ingress.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("echo.example.com", host)).unwrap();
    };
    write_version("..2026_01", "v1.example.com");
    symlink("..2026_01", d.join("..data")).unwrap();
    for (name, _) in files::DEFAULT_MANIFESTS {
        symlink(format!("..data/{name}"), d.join(name)).unwrap();
    }
    let ctl = control_loop();
    let _w = files::watch(files::ManifestDir::new(d), ctl.events.clone()).unwrap();
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "first version", |s| {
        s.l7.hosts.contains_key("v1.example.com")
    })
    .await;

    // The kubelet's update: new directory, new symlink, renamed over `..data`.
    write_version("..2026_02", "v2.example.com");
    symlink("..2026_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
    let s = converge(&mut rx, "swapped version", |s| {
        s.l7.hosts.contains_key("v2.example.com")
    })
    .await;
    assert!(!s.l7.hosts.contains_key("v1.example.com"));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
}

/// `--secret-namespaces default,blog`: TLS Secrets are watched only there (one namespaced watch
/// each, never the cluster-wide list), both namespaces' Secrets are served side by side, and an
/// Ingress whose Secret is elsewhere gets a diagnostic instead of a silent "not found".
/// The auth Secret of `auth-type: basic` comes through the same watch as TLS Secrets (its type
/// is `Opaque`); its changes apply hot; Secrets of other types are never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_source_reads_basic_auth_secrets_hot() {
    use base64::Engine as _;
    use xdp_ingress::model::RouteAuth;
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auth_secret = |ty: &str, file: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "basic-auth", "namespace": "default"},
            "type": ty, "data": {"auth": b64(file)}})
    };
    api.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "private", "namespace": "default", "annotations": {
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": "basic-auth"}},
        "spec": {"ingressClassName": "xdp-ingress",
            "rules": [{"host": "private.example.com", "http": {"paths": [{"path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    );
    // Not a type translation reads: as if absent.
    api.put(auth_secret(
        "kubernetes.io/service-account-token",
        "alice:{PLAIN}a\n",
    ));
    // Another Ingress whose Opaque Secret exists from the start.
    let mut early = api.get("ingresses", "default", "private").unwrap();
    early["metadata"]["name"] = json!("early");
    early["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-secret"] = json!("early");
    early["spec"]["rules"][0]["host"] = json!("early.example.com");
    api.put(early);
    let mut s = auth_secret("Opaque", "carol:{PLAIN}c\n");
    s["metadata"]["name"] = json!("early");
    api.put(s);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Arc<Snapshot>>::new()));
    let rec = seen.clone();
    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![controller::sink("recorder", move |s| {
            rec.lock().unwrap().push(s.clone());
            Ok(())
        })],
        LoopConfig::default(),
    );
    let _tasks = kube_source::spawn(kube_client(&api).await, None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    let users = |s: &Snapshot| match &s.l7.hosts.get("private.example.com")?.routes[0].policy.auth {
        Some(RouteAuth::Basic(b)) => Some(b.users.len()),
        _ => None,
    };
    let s = converge(&mut rx, "auth route", |s| {
        s.l7.hosts.contains_key("private.example.com")
    })
    .await;
    assert!(
        matches!(
            s.l7.hosts["private.example.com"].routes[0].policy.auth,
            Some(RouteAuth::Unavailable { .. })
        ),
        "a token Secret is not an auth Secret"
    );
    // The first snapshot already had the Opaque Secrets: no 503 at start-up.
    let first = seen.lock().unwrap()[0].clone();
    assert!(
        matches!(
            first.l7.hosts["early.example.com"].routes[0].policy.auth,
            Some(RouteAuth::Basic(_))
        ),
        "first snapshot: {:?}",
        first.diagnostics
    );
    api.remove("secrets", "default", "basic-auth");
    api.put(auth_secret("Opaque", "alice:{PLAIN}a\n"));
    converge(&mut rx, "Opaque auth Secret read", |s| users(s) == Some(1)).await;
    api.put(auth_secret("Opaque", "alice:{PLAIN}a\nbob:{PLAIN}b\n"));
    converge(&mut rx, "a new user, hot", |s| users(s) == Some(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_namespaces_watch_only_the_listed_namespaces() {
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    use base64::Engine as _;
    let secure = api.get("secrets", "default", "secure-tls").unwrap();
    // A certificate naming the host it is for (one that does not is not served for it).
    let copy_secret = |ns: &str, name: &str| {
        let mut s = secure.clone();
        s["metadata"] = json!({"name": name, "namespace": ns});
        let (crt, key) =
            xdp_ingress::proxy::tls::self_signed_pem(&[&format!("{ns}.example.com")]).unwrap();
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        s["data"] = json!({"tls.crt": b64(&crt), "tls.key": b64(&key)});
        s
    };
    let tls_ingress = |ns: &str, host: &str, secret: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "site", "namespace": ns},
            "spec": {"ingressClassName": "xdp-ingress",
                "tls": [{"hosts": [host], "secretName": secret}],
                "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    };
    api.put(copy_secret("blog", "blog-tls"));
    api.put(tls_ingress("blog", "blog.example.com", "blog-tls"));
    api.put(copy_secret("shop", "shop-tls"));
    api.put(tls_ingress("shop", "shop.example.com", "shop-tls"));

    let listed = vec!["blog".to_string(), "default".to_string()];
    let ctl = controller::spawn(
        Translator::new(TranslateConfig {
            secret_namespaces: Some(listed.clone()),
            ..TranslateConfig::default()
        }),
        vec![],
        LoopConfig::default(),
    );
    let scope = kube_source::WatchScope {
        namespace: None,
        secret_namespaces: Some(listed),
        configmap: None,
        served_versions: Default::default(),
    };
    let _tasks = kube_source::spawn_scoped(kube_client(&api).await, &scope, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    let s = converge(&mut rx, "both listed namespaces' certificates", |s| {
        s.l7.certificates.contains_key("secure.example.com")
            && s.l7.certificates.contains_key("blog.example.com")
            && s.l7.hosts.contains_key("shop.example.com")
    })
    .await;
    assert!(!s.l7.certificates.contains_key("shop.example.com"));
    // (No `web` Service in blog or shop: their routes answer 503, beside the point here.)
    let tls: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.reason.starts_with("TlsSecret"))
        .collect();
    assert_eq!(tls.len(), 1, "{tls:?}");
    assert_eq!(
        (tls[0].object.to_string().as_str(), tls[0].reason.as_str()),
        ("Ingress shop/site", "TlsSecretNotWatched")
    );
    assert!(
        tls[0]
            .message
            .contains("--secret-namespaces (blog, default)")
    );

    // Only the listed namespaces' Secrets were ever requested.
    let secret_requests: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("secrets"))
        .collect();
    assert!(!secret_requests.is_empty());
    for r in &secret_requests {
        assert!(
            r.starts_with("GET /api/v1/namespaces/default/secrets?")
                || r.starts_with("GET /api/v1/namespaces/blog/secrets?"),
            "{r}"
        );
    }
    for ns in ["default", "blog"] {
        let prefix = format!("GET /api/v1/namespaces/{ns}/secrets?");
        assert!(
            secret_requests.iter().any(|r| r.starts_with(&prefix)),
            "{ns}: {secret_requests:?}"
        );
    }

    // A change in one namespace leaves the other's Secrets in place.
    api.remove("secrets", "blog", "blog-tls");
    let s = converge(&mut rx, "blog secret removed", |s| {
        !s.l7.certificates.contains_key("blog.example.com")
    })
    .await;
    assert!(s.l7.certificates.contains_key("secure.example.com"));
    api.put(copy_secret("blog", "blog-tls"));
    converge(&mut rx, "blog secret back", |s| {
        s.l7.certificates.contains_key("blog.example.com")
            && s.l7.certificates.contains_key("secure.example.com")
    })
    .await;
}

/// Nothing ignored in silence: an Ingress with an annotation we do not implement (and one
/// misspelt) is served, with an `UnsupportedAnnotation` Warning in `explain`, in Events and
/// in the `unsupported_annotations` gauge; one with a snippet is not served (Error Event).
/// The controller ConfigMap, watched from the API, applies hot: `allow-snippet-annotations`
/// serves the rest of the snippet Ingress, `proxy-body-size` becomes the routes' default, a
/// bad value warns on the ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_annotations_warn_and_the_controller_configmap_applies_hot() {
    use xdp_ingress::{
        cli::explain::{Query, explain},
        model::{ObjectKind, Severity},
        store::Key,
    };
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    let ingress = |name: &str, host: &str, annotations: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"ingressClassName": "xdp-ingress",
                "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    };
    api.put(ingress(
        "legacy",
        "legacy.example.com",
        json!({"nginx.ingress.kubernetes.io/enable-opentelemetry": "true",
               "nginx.ingress.kubernetes.io/proxy-bodysize": "8m"}),
    ));
    api.put(ingress(
        "snippety",
        "snippety.example.com",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "deny all;"}),
    ));

    let cm_key = Key::new("ingress-nginx", "ingress-nginx-controller");
    let metrics = controller::ControlMetrics::new();
    let mut registry = prometheus_client::registry::Registry::with_prefix("xdp_ingress");
    metrics.register(&mut registry);
    let ctl = controller::spawn(
        Translator::new(TranslateConfig {
            configmap: Some(cm_key.clone()),
            ..TranslateConfig::default()
        }),
        vec![],
        LoopConfig {
            metrics: Some(metrics),
            ..LoopConfig::default()
        },
    );
    let client = kube_client(&api).await;
    let scope = kube_source::WatchScope {
        configmap: Some(cm_key),
        ..Default::default()
    };
    let _tasks = kube_source::spawn_scoped(client.clone(), &scope, ctl.events.clone());
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);

    let mut rx = ctl.snapshots.clone();
    let s = converge(&mut rx, "legacy served", |s| {
        s.l7.hosts.contains_key("legacy.example.com")
    })
    .await;
    assert!(
        !s.l7.hosts.contains_key("snippety.example.com"),
        "an Ingress with a snippet is not served by default"
    );
    let e = explain(
        &s,
        &Query {
            host: "legacy.example.com".into(),
            path: "/".into(),
            https: true,
            ..Default::default()
        },
    );
    let mut warned: Vec<(Severity, &str, bool, bool)> = e
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.severity,
                d.reason.as_str(),
                d.message.contains("enable-opentelemetry"),
                d.message.contains("proxy-bodysize"),
            )
        })
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            (Severity::Warning, "UnsupportedAnnotation", false, true),
            (Severity::Warning, "UnsupportedAnnotation", true, false),
        ],
        "{:?}",
        e.diagnostics
    );
    let events_for = |name: &str, reason: &str| -> Vec<Value> {
        api.list("events")
            .into_iter()
            .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
            .collect()
    };
    eventually("UnsupportedAnnotation Events", || {
        events_for("legacy", "UnsupportedAnnotation").len() == 2
    })
    .await;
    eventually("SnippetAnnotation Event", || {
        events_for("snippety", "SnippetAnnotation").len() == 1
    })
    .await;
    let ev = &events_for("legacy", "UnsupportedAnnotation")[0];
    assert_eq!(ev["type"], "Warning");
    let text = {
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &registry).unwrap();
        t
    };
    for name in [
        "enable-opentelemetry",
        "proxy-bodysize",
        "configuration-snippet",
    ] {
        let line =
            format!("xdp_ingress_control_unsupported_annotations{{annotation=\"{name}\"}} 1");
        assert!(text.contains(&line), "{line}\n{text}");
    }

    // The ConfigMap arrives: the rest of the snippet Ingress is served, every route gets the
    // ConfigMap's body limit, a bad value warns on the ConfigMap.
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": {"allow-snippet-annotations": "true", "proxy-body-size": "2k", "hsts": "maybe"}}));
    // Another ConfigMap in that namespace is not the controller's.
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": "ingress-nginx"},
        "data": {"proxy-body-size": "5k"}}));
    let s = converge(&mut rx, "snippet Ingress served after the ConfigMap", |s| {
        s.l7.hosts.contains_key("snippety.example.com")
    })
    .await;
    let body_limit = |s: &Snapshot, host: &str| s.l7.hosts[host].routes[0].policy.max_body_bytes;
    assert_eq!(body_limit(&s, "legacy.example.com"), Some(2048));
    assert_eq!(body_limit(&s, "snippety.example.com"), Some(2048));
    let snippet = s
        .diagnostics
        .iter()
        .find(|d| d.reason == "SnippetAnnotation")
        .unwrap();
    assert_eq!(snippet.severity, Severity::Warning);
    let bad: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.object.kind == ObjectKind::ConfigMap)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].reason, "InvalidConfigMapValue");
    assert!(bad[0].message.contains("hsts"), "{}", bad[0].message);
    // The bad `hsts` value keeps the default header.
    assert_eq!(
        s.l7.settings.hsts.as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );

    // Deleting the ConfigMap restores the defaults.
    api.remove("configmaps", "ingress-nginx", "ingress-nginx-controller");
    let s = converge(&mut rx, "ConfigMap gone", |s| {
        !s.l7.hosts.contains_key("snippety.example.com")
    })
    .await;
    assert_eq!(body_limit(&s, "legacy.example.com"), None);
}

/// `custom-headers` through the API source: ConfigMaps are watched where Secrets are
/// (`--secret-namespaces`) and in the controller ConfigMap's namespace, never cluster-wide; a
/// missing ConfigMap makes the routes answer 503 with a diagnostic; its arrival and every later
/// change re-translate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_configmaps_are_watched_where_secrets_are() {
    use xdp_ingress::{model::ResponsePolicy, store::Key};
    let api = ApiServer::start().await.unwrap();
    for o in default_objects_json() {
        api.put(o);
    }
    api.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "app", "namespace": "default", "annotations":
            {"nginx.ingress.kubernetes.io/custom-headers": "default/security-headers"}},
        "spec": {"ingressClassName": "xdp-ingress",
            "rules": [{"host": "app.example.com", "http": {"paths": [{"path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": {"global-allowed-response-headers": "X-Frame-Options"}}));
    let cm_key = Key::new("ingress-nginx", "ingress-nginx-controller");
    let listed = vec!["default".to_string()];
    let ctl = controller::spawn(
        Translator::new(TranslateConfig {
            secret_namespaces: Some(listed.clone()),
            configmap: Some(cm_key.clone()),
            ..TranslateConfig::default()
        }),
        vec![],
        LoopConfig::default(),
    );
    let scope = kube_source::WatchScope {
        namespace: None,
        secret_namespaces: Some(listed),
        configmap: Some(cm_key),
        served_versions: Default::default(),
    };
    let _tasks = kube_source::spawn_scoped(kube_client(&api).await, &scope, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    let response = |s: &Snapshot| -> Option<ResponsePolicy> {
        Some(
            s.l7.hosts.get("app.example.com")?.routes[0]
                .policy
                .response
                .clone(),
        )
    };
    let s = converge(&mut rx, "app denied without its ConfigMap", |s| {
        response(s).is_some_and(|r| r.denied.is_some())
    })
    .await;
    assert!(matches!(
        s.l7.hosts["app.example.com"].routes[0].action,
        RouteAction::Respond { status: 503, .. }
    ));
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.reason == "CustomHeadersRefused" && d.message.contains("not found")),
        "{:?}",
        s.diagnostics
    );

    let headers = |v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "security-headers", "namespace": "default"},
            "data": {"X-Frame-Options": v}})
    };
    api.put(headers("DENY"));
    converge(&mut rx, "the ConfigMap's header", |s| {
        response(s).is_some_and(|r| r.headers == [("x-frame-options".into(), "DENY".into())])
    })
    .await;
    api.put(headers("SAMEORIGIN"));
    let s = converge(&mut rx, "the ConfigMap's change", |s| {
        response(s).is_some_and(|r| r.headers == [("x-frame-options".into(), "SAMEORIGIN".into())])
    })
    .await;
    assert!(matches!(
        s.l7.hosts["app.example.com"].routes[0].action,
        RouteAction::Forward(_)
    ));

    // ConfigMaps were requested only in the listed namespace and the controller's.
    let requests: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("configmaps"))
        .collect();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(
            r.starts_with("GET /api/v1/namespaces/default/configmaps?")
                || r.starts_with("GET /api/v1/namespaces/ingress-nginx/configmaps?"),
            "{r}"
        );
    }
}

/// `xdp-ingress migrate` reads the cluster (Ingresses of every namespace, the controller
/// ConfigMap) and reports exactly what it reports for the same objects as manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reads_the_cluster_as_it_reads_manifests() {
    let bin = testbed::built_xdp_ingress_bin();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrate/ingress-nginx");
    let api = ApiServer::start().await.unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        for o in files::parse_manifests(&std::fs::read_to_string(f).unwrap()).unwrap() {
            api.put(match o {
                Object::Ingress(o) => serde_json::to_value(&*o).unwrap(),
                Object::ConfigMap(o) => serde_json::to_value(&*o).unwrap(),
                other => panic!("unexpected fixture {other:?}"),
            });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: double, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: double, user: u}}}}]\ncurrent-context: c\n",
            api.url()
        ),
    )
    .unwrap();
    let run = |source: Vec<String>| {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(bin)
                .arg("migrate")
                .args(source)
                .args(["--ingress-class", "nginx", "--output", "json"])
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        })
    };
    let (code, cluster) = run(vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ])
    .await
    .unwrap();
    let (_, manifests) = run(vec!["--manifests".into(), fixtures.display().to_string()])
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{cluster}");
    let cluster: Value = serde_json::from_str(&cluster).unwrap();
    assert_eq!(cluster, serde_json::from_str::<Value>(&manifests).unwrap());
    assert_eq!(cluster["ingresses"].as_array().unwrap().len(), 4);
}

/// Gateway API from the cluster: the kinds are watched like the others (a kind whose CRD is
/// absent, here ReferenceGrant, is skipped after one list answered 404, without holding back
/// the first snapshot), routes are served, and the leader writes the status the spec asks
/// for, keeping other controllers' entries in an HTTPRoute's `status.parents`.
/// Gateway API v1.6 `GatewayStaticAddresses` through the API-server double, and pool
/// assignment that survives its own status round trip: an unsupported address type, then an
/// unusable address, then a usable one, each with the conditions and `status.addresses` the
/// conformance test reads; a Gateway without addresses gets one from the pool and keeps it
/// when an older Gateway appears (its status address comes back through the watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_addresses_static_and_from_the_pool() {
    use xdp_ingress::model::translate::gateway::addresses::AddressPool;
    let api = ApiServer::start().await.unwrap();
    api.set_absent("referencegrants", true);
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    let gateway = |name: &str, created: &str, addresses: Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default", "generation": 1,
                "creationTimestamp": created},
            "spec": {"gatewayClassName": "xdp", "addresses": addresses,
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})
    };
    let invalid = json!({"type": "Hostname", "value": "gw.example.com"});
    let unusable = json!({"type": "IPAddress", "value": "192.0.2.1"});
    let usable = json!({"type": "IPAddress", "value": "198.18.6.7"});
    let fixed = |list: Value, generation: i64| {
        let mut g = gateway("static", "2024-01-01T00:00:00Z", list);
        g["metadata"]["generation"] = json!(generation);
        g
    };
    api.put(fixed(json!([invalid, unusable, usable]), 1));
    api.put(gateway("pooled", "2024-01-02T00:00:00Z", json!([])));
    let cfg = TranslateConfig {
        publish_addresses: vec!["198.18.0.10".into()],
        gateway_address_pool: AddressPool {
            ranges: vec![
                "198.18.5.0/31".parse().unwrap(),
                "198.18.6.7".parse().unwrap(),
            ],
        },
        ..Default::default()
    };
    let ctl = controller::spawn(Translator::new(cfg), vec![], LoopConfig::default());
    let client = kube_client(&api).await;
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);
    let status = |name: &str| {
        api.get("gateways", "default", name)
            .map(|o| o["status"].clone())
            .unwrap_or_default()
    };
    eventually("UnsupportedAddress", || {
        cond(&status("static")["conditions"], "Accepted") == pair("False", "UnsupportedAddress")
    })
    .await;
    eventually("pooled assigned", || {
        let st = status("pooled");
        cond(&st["conditions"], "Programmed") == pair("True", "Programmed")
            && st["addresses"] == json!([{"type": "IPAddress", "value": "198.18.5.0"}])
    })
    .await;
    api.put(fixed(json!([unusable, usable]), 2));
    eventually("AddressNotUsable", || {
        let st = status("static");
        cond(&st["conditions"], "Accepted") == pair("True", "Accepted")
            && cond(&st["conditions"], "Programmed") == pair("False", "AddressNotUsable")
            && st["conditions"][1]["observedGeneration"] == 2
    })
    .await;
    api.put(fixed(json!([usable]), 3));
    eventually("usable static address", || {
        let st = status("static");
        cond(&st["conditions"], "Programmed") == pair("True", "Programmed")
            && st["addresses"] == json!([{"type": "IPAddress", "value": "198.18.6.7"}])
            && cond(&st["listeners"][0]["conditions"], "Accepted") == pair("True", "Accepted")
            && cond(&st["listeners"][0]["conditions"], "ResolvedRefs")
                == pair("True", "ResolvedRefs")
    })
    .await;
    // An older Gateway comes: by age alone it would take 198.18.5.0, but `pooled` keeps the
    // address its status shows and the newcomer gets the next free one.
    api.put(gateway("older", "2023-01-01T00:00:00Z", json!([])));
    eventually("older assigned the next free address", || {
        status("older")["addresses"] == json!([{"type": "IPAddress", "value": "198.18.5.1"}])
    })
    .await;
    assert_eq!(
        status("pooled")["addresses"],
        json!([{"type": "IPAddress", "value": "198.18.5.0"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_objects_are_served_and_get_status() {
    let api = ApiServer::start().await.unwrap();
    api.set_absent("referencegrants", true);
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 2},
        "spec": {"gatewayClassName": "xdp", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "alt", "port": 30080, "protocol": "HTTP"}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 8080}]}}));
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default", "generation": 5},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"}], "hostnames": ["gw.example"],
            "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]},
        "status": {"parents": [{"controllerName": "example.com/other", "parentRef": {"name": "elsewhere"}, "conditions": []}]}});
    api.put(route.clone());
    api.put(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": {"name": "g", "namespace": "default", "generation": 3},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"}], "hostnames": ["grpc.example"],
            "rules": [{"matches": [{"method": {"service": "pkg.Svc"}}],
                "backendRefs": [{"name": "web", "port": 8080}]}]},
        "status": {"parents": [{"controllerName": "example.com/other", "parentRef": {"name": "elsewhere"}, "conditions": []}]}}));
    api.put(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": "web-tls", "namespace": "default", "generation": 2},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
            "validation": {"wellKnownCACertificates": "System", "hostname": "web.internal"}},
        "status": {"ancestors": [{"controllerName": "example.com/other", "ancestorRef": {"name": "elsewhere"}, "conditions": []}]}}));

    let cfg = TranslateConfig {
        publish_addresses: vec!["198.18.0.10".into()],
        ..Default::default()
    };
    let ctl = controller::spawn(Translator::new(cfg), vec![], LoopConfig::default());
    let client = kube_client(&api).await;
    let t0 = std::time::Instant::now();
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "HTTPRoute served", |s| {
        s.l7.hosts.contains_key("gw.example")
    })
    .await;
    assert!(
        t0.elapsed() < kube_source::INITIAL_SYNC_TIMEOUT,
        "the absent kind held back the first snapshot"
    );
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);

    eventually("GatewayClass accepted", || {
        api.get("gatewayclasses", "", "xdp").is_some_and(|o| {
            cond(&o["status"]["conditions"], "Accepted") == pair("True", "Accepted")
        })
    })
    .await;
    eventually("Gateway status", || {
        api.get("gateways", "default", "gw").is_some_and(|o| {
            let st = &o["status"];
            cond(&st["conditions"], "Programmed") == pair("True", "Programmed")
                && st["addresses"] == json!([{"type": "IPAddress", "value": "198.18.0.10"}])
                && st["listeners"][0]["attachedRoutes"] == 2
                && cond(&st["listeners"][1]["conditions"], "Accepted")
                    == pair("False", "PortUnavailable")
                && st["conditions"][0]["observedGeneration"] == 2
        })
    })
    .await;
    let ours = |o: &Value| -> Option<Value> {
        o["status"]["parents"]
            .as_array()?
            .iter()
            .find(|p| p["controllerName"] == "xdp-ingress.dev/controller")
            .cloned()
    };
    eventually("HTTPRoute accepted", || {
        api.get("httproutes", "default", "r")
            .and_then(|o| ours(&o))
            .is_some_and(|p| {
                cond(&p["conditions"], "Accepted") == pair("True", "Accepted")
                    && cond(&p["conditions"], "ResolvedRefs") == pair("True", "ResolvedRefs")
                    && p["conditions"][0]["observedGeneration"] == 5
                    && p["parentRef"]["sectionName"] == "http"
            })
    })
    .await;
    // A GRPCRoute gets its status as an HTTPRoute does, other controllers' entries kept.
    eventually("GRPCRoute accepted", || {
        api.get("grpcroutes", "default", "g").is_some_and(|o| {
            ours(&o).is_some_and(|p| {
                cond(&p["conditions"], "Accepted") == pair("True", "Accepted")
                    && p["conditions"][0]["observedGeneration"] == 3
            }) && o["status"]["parents"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
        })
    })
    .await;
    // The BackendTLSPolicy its backend uses: an ancestor for the Gateway, others kept.
    eventually("BackendTLSPolicy ancestor", || {
        api.get("backendtlspolicies", "default", "web-tls")
            .is_some_and(|o| {
                let a = o["status"]["ancestors"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                a.len() == 2
                    && a.iter().any(|a| {
                        a["controllerName"] == "xdp-ingress.dev/controller"
                            && a["ancestorRef"]["name"] == "gw"
                            && a["ancestorRef"]["kind"] == "Gateway"
                            && cond(&a["conditions"], "Accepted") == pair("True", "Accepted")
                            && a["conditions"][0]["observedGeneration"] == 2
                    })
            })
    })
    .await;
    let parents = api.get("httproutes", "default", "r").unwrap()["status"]["parents"].clone();
    assert!(
        parents
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["controllerName"] == "example.com/other"),
        "another controller's entry was dropped: {parents}"
    );

    // The route names a listener that does not exist: NoMatchingParent, and no longer served.
    let mut changed = route;
    changed["spec"]["parentRefs"][0]["sectionName"] = json!("nope");
    changed["metadata"]["generation"] = json!(6);
    changed.as_object_mut().unwrap().remove("status");
    api.put(changed);
    converge(&mut rx, "route detached", |s| {
        !s.l7.hosts.contains_key("gw.example")
    })
    .await;
    eventually("HTTPRoute NoMatchingParent", || {
        api.get("httproutes", "default", "r")
            .and_then(|o| ours(&o))
            .is_some_and(|p| {
                cond(&p["conditions"], "Accepted") == pair("False", "NoMatchingParent")
                    && p["conditions"][0]["observedGeneration"] == 6
            })
    })
    .await;
    // The route stops naming a Gateway of ours: our entry goes, nothing else is touched.
    let mut theirs = api.get("httproutes", "default", "r").unwrap();
    theirs["spec"]["parentRefs"] = json!([{"name": "not-ours"}]);
    theirs["status"]["parents"]
        .as_array_mut()
        .unwrap()
        .push(json!({"controllerName": "example.com/other", "parentRef": {"name": "not-ours"}, "conditions": []}));
    api.put(theirs);
    eventually("our route status removed", || {
        api.get("httproutes", "default", "r").is_some_and(|o| {
            ours(&o).is_none()
                && o["status"]["parents"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1)
        })
    })
    .await;

    // No route of ours uses the BackendTLSPolicy any more (the GRPCRoute leaves too): our
    // ancestor entry goes, the other controller's stays.
    let mut grpc = api.get("grpcroutes", "default", "g").unwrap();
    grpc["spec"]["parentRefs"] = json!([{"name": "not-ours"}]);
    api.put(grpc);
    eventually("our BackendTLSPolicy ancestor removed", || {
        api.get("backendtlspolicies", "default", "web-tls")
            .is_some_and(|o| {
                o["status"]["ancestors"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1 && a[0]["controllerName"] == "example.com/other")
            })
    })
    .await;

    // The absent kind was asked for once (the retry period is 30 s), not in a loop.
    let asked = api
        .requests()
        .iter()
        .filter(|r| r.contains("referencegrants"))
        .count();
    assert!(asked <= 2, "referencegrants requested {asked} times");
}

/// ListenerSets from the cluster (GEP-1713): a ListenerSet admitted by its Gateway's
/// `allowedListeners` adds a listener on another port; a route attached to it through a
/// `ListenerSet` parentRef is served there. The leader writes the ListenerSet's `Accepted`,
/// `Programmed` and listener status, the Gateway's `attachedListenerSets`, and `NotAllowed` on
/// a ListenerSet from a namespace the Gateway does not admit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_sets_are_served_and_get_status() {
    let api = ApiServer::start().await.unwrap();
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "xdp", "allowedListeners": {"namespaces": {"from": "Same"}},
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "team", "namespace": "default", "generation": 4},
        "spec": {"parentRef": {"name": "gw"},
            "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "stranger", "namespace": "other", "generation": 1},
        "spec": {"parentRef": {"name": "gw", "namespace": "default"},
            "listeners": [{"name": "http", "port": 8090, "protocol": "HTTP"}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 8080}]}}));
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default", "generation": 1},
        "spec": {"parentRefs": [{"kind": "ListenerSet", "name": "team", "sectionName": "http"}],
            "hostnames": ["set.example"],
            "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}}),
    );

    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![],
        LoopConfig::default(),
    );
    let client = kube_client(&api).await;
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "route served on the ListenerSet's port", |s| {
        s.l7.gateway_listeners.contains_key(&8080)
            && !s.l7.gateway_listeners.contains_key(&8090)
            && s.l7
                .hosts
                .get("set.example")
                .is_some_and(|vh| vh.routes[0].matches.listener_ports() == Some(&[8080][..]))
    })
    .await;
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);
    eventually("ListenerSet accepted with its listener's status", || {
        api.get("listenersets", "default", "team").is_some_and(|o| {
            let st = &o["status"];
            let l = &st["listeners"][0];
            cond(&st["conditions"], "Accepted") == pair("True", "Accepted")
                && cond(&st["conditions"], "Programmed") == pair("True", "Programmed")
                && st["conditions"][0]["observedGeneration"] == 4
                && l["name"] == "http"
                && l["attachedRoutes"] == 1
                && cond(&l["conditions"], "Programmed") == pair("True", "Programmed")
                && st["listeners"].as_array().is_some_and(|a| a.len() == 1)
        })
    })
    .await;
    eventually("ListenerSet from another namespace NotAllowed", || {
        api.get("listenersets", "other", "stranger")
            .is_some_and(|o| {
                cond(&o["status"]["conditions"], "Accepted") == pair("False", "NotAllowed")
                    && cond(&o["status"]["conditions"], "Programmed") == pair("False", "NotAllowed")
            })
    })
    .await;
    eventually("Gateway counts the attached ListenerSet", || {
        api.get("gateways", "default", "gw").is_some_and(|o| {
            let st = &o["status"];
            st["attachedListenerSets"] == 1
                && st["listeners"].as_array().is_some_and(|a| a.len() == 1)
                && st["listeners"][0]["attachedRoutes"] == 0
        })
    })
    .await;
    eventually("route accepted by its ListenerSet parent", || {
        api.get("httproutes", "default", "r").is_some_and(|o| {
            o["status"]["parents"].as_array().is_some_and(|p| {
                p.len() == 1
                    && p[0]["parentRef"]["kind"] == "ListenerSet"
                    && cond(&p[0]["conditions"], "Accepted") == pair("True", "Accepted")
            })
        })
    })
    .await;
}

/// Objects that stop being ours do not keep our status. A Gateway moved to another class and
/// its ListenerSet get back, for each condition still as we wrote it, what their CRDs show
/// before any controller (`Unknown`, `Pending`); our listeners and addresses go; a condition
/// the new controller wrote stays. The route on that Gateway loses our `status.parents` entry.
/// A route that carried an entry of ours from an earlier leader for a parent that is not ours
/// loses it when this leader's term starts; other controllers' entries stay throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_objects_that_stop_being_ours_is_given_up() {
    let ours = "xdp-ingress.dev/controller";
    let api = ApiServer::start().await.unwrap();
    for (name, controller) in [("xdp", ours), ("other", "example.com/other")] {
        api.put(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name}, "spec": {"controllerName": controller}}),
        );
    }
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "xdp", "allowedListeners": {"namespaces": {"from": "Same"}},
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "team", "namespace": "default", "generation": 1},
        "spec": {"parentRef": {"name": "gw"},
            "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 8080}]}}));
    let other_entry = json!({"controllerName": "example.com/other", "parentRef": {"name": "theirs"}, "conditions": []});
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default", "generation": 1},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["gw.example"],
            "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]},
        "status": {"parents": [other_entry.clone()]}}),
    );
    // Left by an earlier leader: an entry of ours for a Gateway of another class.
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "stale", "namespace": "default", "generation": 1},
        "spec": {"parentRefs": [{"name": "theirs"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]},
        "status": {"parents": [other_entry.clone(), {"controllerName": ours,
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "route accepted", "observedGeneration": 1,
                "lastTransitionTime": "2025-01-01T00:00:00Z"}]}]}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "theirs", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "other",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );

    let cfg = TranslateConfig {
        publish_addresses: vec!["198.18.0.10".into()],
        ..Default::default()
    };
    let ctl = controller::spawn(Translator::new(cfg), vec![], LoopConfig::default());
    let client = kube_client(&api).await;
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "route served", |s| {
        s.l7.hosts.contains_key("gw.example")
    })
    .await;
    let (_candidate, _writer) = status_writer(client, ours, &ctl);
    let controllers = |o: &Value| -> Vec<String> {
        (o["status"]["parents"].as_array().into_iter().flatten())
            .map(|p| p["controllerName"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    eventually(
        "the earlier leader's entry is removed, the other controller's kept",
        || {
            api.get("httproutes", "default", "stale")
                .is_some_and(|o| controllers(&o) == ["example.com/other"])
        },
    )
    .await;
    eventually("Gateway, ListenerSet and route status written", || {
        let gw = api.get("gateways", "default", "gw");
        let ls = api.get("listenersets", "default", "team");
        let r = api.get("httproutes", "default", "r");
        gw.is_some_and(|o| {
            cond(&o["status"]["conditions"], "Accepted") == pair("True", "Accepted")
                && o["status"]["attachedListenerSets"] == 1
        }) && ls.is_some_and(|o| {
            cond(&o["status"]["conditions"], "Accepted") == pair("True", "Accepted")
        }) && r.is_some_and(|o| controllers(&o) == ["example.com/other", ours])
    })
    .await;

    // The Gateway moves to the other class; its new controller has already written a
    // condition of its own.
    let mut moved = api.get("gateways", "default", "gw").unwrap();
    moved["spec"]["gatewayClassName"] = json!("other");
    moved["metadata"]["generation"] = json!(2);
    moved["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "example.com/Ready", "status": "True", "reason": "Ready",
            "message": "theirs", "observedGeneration": 2, "lastTransitionTime": "2025-01-01T00:00:00Z"}));
    api.put(moved);
    converge(&mut rx, "route no longer served", |s| {
        !s.l7.hosts.contains_key("gw.example")
    })
    .await;
    let pending = |v: &Value, t: &str| cond(v, t) == pair("Unknown", "Pending");
    eventually("Gateway given up", || {
        api.get("gateways", "default", "gw").is_some_and(|o| {
            let st = &o["status"];
            pending(&st["conditions"], "Accepted")
                && pending(&st["conditions"], "Programmed")
                && cond(&st["conditions"], "example.com/Ready") == pair("True", "Ready")
                && st["listeners"] == json!([])
                && st["addresses"] == json!([])
                && st.get("attachedListenerSets").is_none()
        })
    })
    .await;
    eventually("ListenerSet given up", || {
        api.get("listenersets", "default", "team").is_some_and(|o| {
            let st = &o["status"];
            pending(&st["conditions"], "Accepted")
                && pending(&st["conditions"], "Programmed")
                && st["listeners"] == json!([])
        })
    })
    .await;
    eventually("route entry of ours removed", || {
        api.get("httproutes", "default", "r")
            .is_some_and(|o| controllers(&o) == ["example.com/other"])
    })
    .await;
}

/// TCPRoutes from the cluster: a Gateway's TCP listener with a route becomes an L4 service of
/// the snapshot, and the leader writes the listener's `attachedRoutes` and the route parent's
/// `Accepted`/`ResolvedRefs` (Gateway API `TCPRoute` status, as for HTTPRoutes), then
/// `ResolvedRefs: False, BackendNotFound` when the route names a Service that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcproutes_become_l4_services_and_get_status() {
    let api = ApiServer::start().await.unwrap();
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "xdp", "listeners": [
            {"name": "pg", "port": 15432, "protocol": "TCP"}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"ports": [{"port": 5432}]}}));
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TCPRoute",
        "metadata": {"name": "pg", "namespace": "default", "generation": 3},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "pg"}],
            "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}]}});
    api.put(route.clone());

    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![],
        LoopConfig::default(),
    );
    let client = kube_client(&api).await;
    let _tasks = kube_source::spawn(client.clone(), None, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "TCP listener served", |s| {
        s.l4.iter().any(|l| l.id == "gateway/default/gw:pg")
    })
    .await;
    let (_candidate, _writer) = status_writer(client, "xdp-ingress.dev/controller", &ctl);
    eventually("Gateway listener status", || {
        api.get("gateways", "default", "gw").is_some_and(|o| {
            let l = &o["status"]["listeners"][0];
            l["attachedRoutes"] == 1
                && l["supportedKinds"]
                    == json!([{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}])
                && cond(&l["conditions"], "Programmed") == pair("True", "Programmed")
        })
    })
    .await;
    let ours = |o: &Value| -> Option<Value> {
        o["status"]["parents"]
            .as_array()?
            .iter()
            .find(|p| p["controllerName"] == "xdp-ingress.dev/controller")
            .cloned()
    };
    eventually("TCPRoute accepted", || {
        api.get("tcproutes", "default", "pg")
            .and_then(|o| ours(&o))
            .is_some_and(|p| {
                cond(&p["conditions"], "Accepted") == pair("True", "Accepted")
                    && cond(&p["conditions"], "ResolvedRefs") == pair("True", "ResolvedRefs")
                    && p["conditions"][0]["observedGeneration"] == 3
                    && p["parentRef"]["sectionName"] == "pg"
            })
    })
    .await;
    let mut changed = route;
    changed["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("gone");
    changed["metadata"]["generation"] = json!(4);
    api.put(changed);
    eventually("TCPRoute BackendNotFound", || {
        api.get("tcproutes", "default", "pg")
            .and_then(|o| ours(&o))
            .is_some_and(|p| {
                cond(&p["conditions"], "ResolvedRefs") == pair("False", "BackendNotFound")
                    && p["conditions"][1]["observedGeneration"] == 4
            })
    })
    .await;
}

/// Gateway API v1.6 serves TCPRoute at `v1` (standard channel); CRDs before v1.6 serve only
/// `v1alpha2`. Against a CRD that serves only `version`, a TCPRoute is watched there, routed,
/// and its status written through that same version (the other one answers 404).
async fn tcproute_served_only_at(version: &str) {
    let api = ApiServer::start().await.unwrap();
    api.set_served_versions("tcproutes", &[version]);
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "xdp", "listeners": [
            {"name": "pg", "port": 15432, "protocol": "TCP"}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"ports": [{"port": 5432}]}}));
    api.put(json!({"apiVersion": version, "kind": "TCPRoute",
        "metadata": {"name": "pg", "namespace": "default", "generation": 2},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "pg"}],
            "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}]}}));

    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![],
        LoopConfig::default(),
    );
    let client = kube_client(&api).await;
    let scope = kube_source::WatchScope::default();
    let _tasks = kube_source::spawn_scoped(client.clone(), &scope, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "TCP listener served", |s| {
        s.l4.iter().any(|l| l.id == "gateway/default/gw:pg")
    })
    .await;
    let _writer = status_writer_at_served_versions(client, &ctl, &scope);
    eventually("TCPRoute accepted", || {
        api.get("tcproutes", "default", "pg").is_some_and(|o| {
            o["apiVersion"] == version
                && o["status"]["parents"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["controllerName"] == "xdp-ingress.dev/controller"
                            && p["conditions"].as_array().is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c["type"] == "Accepted"
                                        && c["status"] == "True"
                                        && c["observedGeneration"] == 2
                                })
                            })
                    })
                })
        })
    })
    .await;
    let at = format!("/apis/{version}/");
    let requests = api.requests();
    for what in ["GET", "PATCH"] {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(what) && r.contains(&at) && r.contains("/tcproutes")),
            "{what} of tcproutes at {version}: {requests:#?}"
        );
    }
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("PATCH") && r.contains("/tcproutes/") && !r.contains(&at)),
        "status written at another version: {requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcproute_served_only_at_v1_is_routed_and_gets_status() {
    tcproute_served_only_at("gateway.networking.k8s.io/v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcproute_served_only_at_v1alpha2_is_routed_and_gets_status() {
    tcproute_served_only_at("gateway.networking.k8s.io/v1alpha2").await;
}

/// A cluster with Gateway API v1.4's CRDs: ReferenceGrant served only at `v1beta1` and TLSRoute
/// only at `v1alpha2` (`v1` of both came with v1.5). Both are watched where served: the grant
/// lets a TLSRoute reach a Service in another namespace, the route's status is written at
/// `v1alpha2`, and the Event about a broken route names it at that version (a reference at
/// a version the cluster does not serve would not resolve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_served_only_at_older_versions_are_read_and_named_there() {
    let api = ApiServer::start().await.unwrap();
    api.set_served_versions("referencegrants", &["gateway.networking.k8s.io/v1beta1"]);
    api.set_served_versions("tlsroutes", &["gateway.networking.k8s.io/v1alpha2"]);
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "xdp"}, "spec": {"controllerName": "xdp-ingress.dev/controller"}}),
    );
    api.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "xdp", "listeners": [
            {"name": "tls", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"},
             "allowedRoutes": {"kinds": [{"kind": "TLSRoute"}]}}]}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vault", "namespace": "secrets"},
        "spec": {"ports": [{"port": 8443}]}}));
    api.put(json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "from-default", "namespace": "secrets"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "TLSRoute", "namespace": "default"}],
            "to": [{"group": "", "kind": "Service"}]}}));
    let route = |name: &str, host: &str, service: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute",
            "metadata": {"name": name, "namespace": "default", "generation": 2},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host],
                "rules": [{"backendRefs": [{"name": service, "namespace": "secrets", "port": 8443}]}]}})
    };
    api.put(route("vault", "vault.example", "vault"));
    api.put(route("broken", "broken.example", "gone"));

    let ctl = controller::spawn(
        Translator::new(TranslateConfig::default()),
        vec![],
        LoopConfig::default(),
    );
    let client = kube_client(&api).await;
    let scope = kube_source::WatchScope::default();
    let _tasks = kube_source::spawn_scoped(client.clone(), &scope, ctl.events.clone());
    let mut rx = ctl.snapshots.clone();
    converge(&mut rx, "the TLSRoute served", |s| {
        s.l7.gateway_sni.contains_key("vault.example")
    })
    .await;
    let _writer = status_writer_at_served_versions(client, &ctl, &scope);
    let parent = |name: &str| {
        api.get("tlsroutes", "default", name).and_then(|o| {
            (o["status"]["parents"].as_array()?.iter()).find_map(|p| {
                (p["controllerName"] == "xdp-ingress.dev/controller").then(|| p.clone())
            })
        })
    };
    // The grant was read: the cross-namespace backendRef resolves.
    eventually("TLSRoute resolved through the v1beta1 grant", || {
        parent("vault")
            .is_some_and(|p| cond(&p["conditions"], "ResolvedRefs") == pair("True", "ResolvedRefs"))
    })
    .await;
    eventually("broken TLSRoute's Event", || {
        api.list("events").iter().any(|e| {
            e["regarding"]["kind"] == "TLSRoute"
                && e["regarding"]["name"] == "broken"
                && e["regarding"]["apiVersion"] == "gateway.networking.k8s.io/v1alpha2"
        })
    })
    .await;
    let requests = api.requests();
    assert!(
        (requests.iter()).any(|r| r.starts_with("PATCH")
            && r.contains("/v1alpha2/")
            && r.contains("/tlsroutes/")),
        "{requests:#?}"
    );
    assert!(
        !(requests.iter()).any(|r| r.starts_with("PATCH")
            && r.contains("/tlsroutes/")
            && !r.contains("/v1alpha2/")),
        "status written at another version: {requests:#?}"
    );
}

/// `(status, reason)` of the condition of type `t` in the JSON condition list `v`.
fn cond(v: &Value, t: &str) -> Option<(String, String)> {
    v.as_array()?.iter().find(|c| c["type"] == t).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
        )
    })
}

/// `Some((status, reason))`, to compare with [`cond`].
fn pair(a: &str, b: &str) -> Option<(String, String)> {
    Some((a.to_string(), b.to_string()))
}

/// [`status_writer`] of our controller writing each kind at the version `scope`'s source
/// watches it at.
fn status_writer_at_served_versions(
    client: kube::Client,
    ctl: &controller::ControlLoop,
    scope: &kube_source::WatchScope,
) -> (status::leader::Candidate, tokio::task::JoinHandle<()>) {
    let candidate = status::leader::spawn(client.clone(), quick_lease("node-a"));
    let reporter = status::events::Reporter {
        controller: "xdp-ingress.dev/controller".into(),
        instance: "node-a".into(),
    };
    let (_, unbound) = watch::channel(Default::default());
    let writer = status::spawn_with_listeners(
        client,
        reporter,
        None,
        ctl.snapshots.clone(),
        unbound,
        candidate.is_leader.clone(),
        scope.served_versions.clone(),
    );
    (candidate, writer)
}

/// A leader candidate (node-a, quick lease) and the status writer of `controller`, writing
/// what `ctl` translates; both run while the returned values live.
fn status_writer(
    client: kube::Client,
    controller: &str,
    ctl: &controller::ControlLoop,
) -> (status::leader::Candidate, tokio::task::JoinHandle<()>) {
    let candidate = status::leader::spawn(client.clone(), quick_lease("node-a"));
    let reporter = status::events::Reporter {
        controller: controller.into(),
        instance: "node-a".into(),
    };
    let writer = status::spawn(
        client,
        reporter,
        ctl.snapshots.clone(),
        candidate.is_leader.clone(),
    );
    (candidate, writer)
}
