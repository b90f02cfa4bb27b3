//! `xdp-ingress migrate`: how the Ingresses and the controller ConfigMap of an ingress-nginx
//! installation would behave under xdp-ingress, from the one table in
//! [`crate::model::translate::support`] (the table the diagnostics and the migration doc use).
//!
//! For every Ingress (optionally of one class) and every annotation under
//! `nginx.ingress.kubernetes.io/` or `xdp-ingress.dev/`, and every key of the ConfigMap:
//! `supported`, `differs`, `refused`, `not-yet` or `unknown`, with one line on why; values that
//! do not parse are reported as the running controller would report them. Exit status 0 when
//! everything behaves the same, 1 when anything would differ (anything but `supported`), 2 on
//! errors (unreadable manifests, the API unreachable).
//!
//! `--output json` prints a [`Report`]; its schema is documented on the types below and in
//! `deploy/docs/migrate-from-ingress-nginx.md`.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use k8s_openapi::api::{core::v1::ConfigMap, networking::v1 as networking};
use serde::Serialize;

use crate::{
    compact::ingress::Ingress,
    model::{
        ObjectKind, ObjectRef,
        translate::{
            self as translate, annotations, canary, class::LEGACY_CLASS_ANNOTATION, configmap,
            diagnostics::Diagnostics, support,
        },
    },
    source::{args::parse_key, files::ManifestDir},
    store::{Key, Objects},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintTable {
    Markdown,
}

/// `--to`: what to print instead of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The Gateway and HTTPRoutes equivalent to the Ingresses (see deploy/docs/gateway-api.md).
    GatewayApi,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Read Ingresses and the ConfigMap from this manifest directory (else from the cluster:
    /// --kubeconfig, or the in-cluster service account).
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig for reading the cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only Ingresses of this class (`spec.ingressClassName` or the legacy
    /// `kubernetes.io/ingress.class` annotation), e.g. `nginx`.
    #[arg(long)]
    pub ingress_class: Option<String>,
    /// The ingress-nginx controller ConfigMap (NAMESPACE/NAME).
    #[arg(long, value_parser = parse_key, default_value = "ingress-nginx/ingress-nginx-controller")]
    pub configmap: Key,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print the whole annotation and ConfigMap table (the one in
    /// deploy/docs/migrate-from-ingress-nginx.md) and exit.
    #[arg(long, value_enum)]
    pub print_table: Option<PrintTable>,
    /// Print the Gateway API objects equivalent to the Ingresses (YAML, with a `# note:`
    /// wherever behaviour would change) instead of the report.
    #[arg(long, value_enum)]
    pub to: Option<Target>,
    /// The GatewayClass the printed Gateways name (with `--to gateway-api`).
    #[arg(long, default_value = "xdp-ingress")]
    pub gateway_class: String,
    /// ingress-nginx's `--tcp-services-configmap` (NAMESPACE/NAME): with `--to gateway-api`,
    /// each entry becomes a TCP listener and a TCPRoute.
    #[arg(long, value_parser = parse_key)]
    pub tcp_services_configmap: Option<Key>,
    /// ingress-nginx's `--udp-services-configmap` (NAMESPACE/NAME): with `--to gateway-api`,
    /// each entry becomes a UDP listener and a UDPRoute.
    #[arg(long, value_parser = parse_key)]
    pub udp_services_configmap: Option<Key>,
}

/// `migrate --output json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Ingresses, sorted by namespace/name.
    pub ingresses: Vec<IngressReport>,
    /// `null` when the ConfigMap does not exist.
    pub configmap: Option<ConfigMapReport>,
    /// Entries by status (every annotation and key, and each value problem as `differs`).
    pub summary: Summary,
    /// Everything is `supported` and every value parses: exit status 0.
    pub same_behaviour: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    /// `spec.ingressClassName`, else the legacy annotation, else `null`.
    pub class: Option<String>,
    /// Whether xdp-ingress would serve it: `false` when it has snippet annotations (unless
    /// `--serve-ingresses-with-snippets` or `allow-snippet-annotations: "true"`), or when
    /// deep inspection or `strict-validate-path-type` refuses it (the reason in `problems`).
    pub served: bool,
    /// One per annotation under our prefixes, sorted by name.
    pub annotations: Vec<Entry>,
    /// Values that do not parse or are out of range (`reason: message`), as Events would say.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ConfigMapReport {
    pub namespace: String,
    pub name: String,
    /// One per key, sorted by name.
    pub keys: Vec<Entry>,
    pub problems: Vec<String>,
}

/// One annotation (full name, with prefix) or ConfigMap key.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `supported`, `differs`, `refused`, `not-yet` or `unknown`.
    pub status: &'static str,
    /// How it differs, why it is refused, or what it does (not yet); empty when supported.
    /// A problem of its value (also in `problems`) is here too, and makes a `supported`
    /// entry `differs`.
    pub note: String,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub supported: usize,
    pub differs: usize,
    pub refused: usize,
    pub not_yet: usize,
    pub unknown: usize,
}

impl Summary {
    fn count(&mut self, status: &str) {
        match status {
            "supported" => self.supported += 1,
            "differs" => self.differs += 1,
            "refused" => self.refused += 1,
            "not-yet" => self.not_yet += 1,
            _ => self.unknown += 1,
        }
    }
}

/// The entry of annotation or key `name` (as written, with any prefix) set to `value`, whose
/// row (without prefix) is `row`: a difference the value stays clear of is `supported`.
fn entry(name: &str, value: &str, row: Option<&support::Row>) -> Entry {
    match row {
        Some(r)
            if matches!(r.status, support::Status::Differs(_))
                && support::value_behaves_the_same(r.name, value) =>
        {
            Entry {
                name: name.to_string(),
                status: support::Status::Supported.label(),
                note: String::new(),
            }
        }
        Some(r) => Entry {
            name: name.to_string(),
            status: r.status.label(),
            note: match r.status {
                support::Status::Supported => String::new(),
                support::Status::NotYet => r.doc.to_string(),
                s => s.note().to_string(),
            },
        },
        None => Entry {
            name: name.to_string(),
            status: "unknown",
            note: "not an ingress-nginx or xdp-ingress name (a typo?): ignored".into(),
        },
    }
}

fn class_of(ing: &Ingress) -> Option<String> {
    ing.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned())
        })
}

fn problems(d: Diagnostics) -> Vec<String> {
    d.finish()
        .into_iter()
        // A key read and ignored: its row already says so.
        .filter(|d| d.reason != support::READ_AND_IGNORED)
        .map(|d| format!("{}: {}", d.reason, d.message))
        .collect()
}

/// Whether `problem` (`Reason: message`) is about annotation or key `name` (without prefix):
/// its message starts with `key NAME`, `annotation NAME` or `NAME`, then `:` or a space, as
/// the ConfigMap reader's and the annotation readers' messages do.
fn problem_names(problem: &str, name: &str) -> bool {
    let message = problem.split_once(": ").map_or(problem, |(_, m)| m);
    let rest = message
        .strip_prefix("key ")
        .or_else(|| message.strip_prefix("annotation "))
        .unwrap_or(message);
    rest.strip_prefix(name)
        .is_some_and(|r| r.starts_with(':') || r.starts_with(' '))
}

/// Puts each problem on the row of the annotation or key it is about: that row becomes
/// `differs` with the problem as (or added to) its note. The others keep rows of their own
/// ([`unattached`]).
fn attach_problems(entries: &mut [Entry], problems: &[String]) {
    for p in problems {
        let at = entries.iter_mut().find(|e| {
            let name = support::strip_prefix(&e.name).unwrap_or(&e.name);
            problem_names(p, name)
        });
        if let Some(e) = at {
            if e.status == support::Status::Supported.label() {
                e.status = "differs";
            }
            if e.note.is_empty() {
                e.note.clone_from(p);
            } else {
                e.note = format!("{}; {p}", e.note);
            }
        }
    }
}

/// The problems no row of `entries` carries ([`attach_problems`]), for rows of their own.
fn unattached<'p>(
    entries: &'p [Entry],
    problems: &'p [String],
) -> impl Iterator<Item = &'p String> {
    problems
        .iter()
        .filter(|p| !entries.iter().any(|e| e.note.contains(p.as_str())))
}

/// The report for these Ingresses and ConfigMap (pure). With `secrets_from` (the objects of
/// `--manifests`), the Secrets the annotations name are checked too.
pub fn report<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    configmap: Option<&ConfigMap>,
    class: Option<&str>,
    secrets_from: Option<&Objects>,
) -> Report {
    let mut summary = Summary::default();
    let cm = configmap.map(|cm| {
        let mut d = Diagnostics::default();
        let parsed = configmap::parse(cm, &mut d);
        let mut keys: Vec<Entry> = cm
            .data
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| entry(k, v, support::configmap_key(k)))
            .collect();
        let problems = problems(Diagnostics(
            d.0.into_iter()
                .filter(|d| d.reason != "UnsupportedConfigMapKey")
                .collect(),
        ));
        attach_problems(&mut keys, &problems);
        (
            ConfigMapReport {
                namespace: cm.metadata.namespace.clone().unwrap_or_default(),
                name: cm.metadata.name.clone().unwrap_or_default(),
                keys,
                problems,
            },
            parsed,
        )
    });
    // Without a ConfigMap, its defaults.
    let controller = cm.as_ref().map(|c| c.1.clone()).unwrap_or_default();
    let serve_snippets = controller.serve_with_snippets.unwrap_or(false);
    let strict_paths = controller.strict_validate_path_type;
    let cross_namespace = controller.allow_cross_namespace_resources;
    let mut out = Vec::new();
    for ing in ingresses {
        let ing_class = class_of(ing);
        if class.is_some() && ing_class.as_deref() != class {
            continue;
        }
        let oref = ObjectRef::new(
            ObjectKind::Ingress,
            ing.metadata.namespace.clone().unwrap_or_default(),
            ing.metadata.name.clone().unwrap_or_default(),
        );
        let a = ing.metadata.annotations.as_ref();
        let mut entries: Vec<Entry> = a
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| {
                support::strip_prefix(k).map(|n| entry(k, v, support::annotation(n)))
            })
            .collect();
        let snippets = entries
            .iter()
            .any(|e| support::strip_prefix(&e.name).is_some_and(support::is_snippet));
        let mut d = Diagnostics::default();
        annotations::parse(a, &oref, &mut d);
        // Canary annotations are read apart (canary Ingresses serve nothing of their own).
        canary::parse(a, &oref, &mut d);
        translate::auth_value_problems(a, &oref, cross_namespace, &mut d);
        if let Some(objects) = secrets_from {
            translate::secret_problems(ing, &oref, objects, cross_namespace, &mut d);
        }
        let refused = translate::ingress_inspect::refusal(ing.spec.as_ref(), strict_paths);
        if let Some((reason, msg)) = &refused {
            d.error(&oref, reason, msg.clone());
        }
        out.push(IngressReport {
            namespace: oref.namespace,
            name: oref.name,
            class: ing_class,
            served: (!snippets || serve_snippets) && refused.is_none(),
            problems: {
                let p = problems(d);
                attach_problems(&mut entries, &p);
                p
            },
            annotations: entries,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let configmap = cm.map(|c| c.0);
    for e in out
        .iter()
        .flat_map(|i| &i.annotations)
        .chain(configmap.iter().flat_map(|c| &c.keys))
    {
        summary.count(e.status);
    }
    // A problem on an entry's row made that entry `differs`; the others count on their own.
    let bad_values = out
        .iter()
        .map(|i| unattached(&i.annotations, &i.problems).count())
        .sum::<usize>()
        + configmap
            .as_ref()
            .map_or(0, |c| unattached(&c.keys, &c.problems).count());
    summary.differs += bad_values;
    let same_behaviour = summary.differs + summary.refused + summary.not_yet + summary.unknown == 0;
    Report {
        ingresses: out,
        configmap,
        summary,
        same_behaviour,
    }
}

/// How to run both controllers side by side (printed after the table).
pub const SIDE_BY_SIDE: &str = "\
Running beside ingress-nginx:
  a) A new class (safest): install xdp-ingress with its own IngressClass (xdp-ingress), copy each
     Ingress with ingressClassName: xdp-ingress, test it on the xdp-ingress ports, then move DNS.
     Each controller writes status only on its own class: nothing is fought over.
  b) Serve class nginx as it is: run xdp-ingress with --controller-name k8s.io/ingress-nginx
     (it then owns the IngressClass nginx) and --no-status while ingress-nginx still runs, so
     only ingress-nginx writes status.loadBalancer; when ingress-nginx is removed, drop
     --no-status (and point the IngressClass's spec.controller at xdp-ingress.dev/controller).
";

fn table(r: &Report) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "OBJECT".into(),
        "ANNOTATION / KEY".into(),
        "STATUS".into(),
        "NOTE".into(),
    ]];
    for i in &r.ingresses {
        let obj = format!("ingress {}/{}", i.namespace, i.name);
        for e in &i.annotations {
            rows.push([obj.clone(), e.name.clone(), e.status.into(), e.note.clone()]);
        }
        for p in unattached(&i.annotations, &i.problems) {
            rows.push([obj.clone(), "-".into(), "differs".into(), p.clone()]);
        }
        if !i.served {
            rows.push([
                obj.clone(),
                "-".into(),
                "refused".into(),
                if i.annotations
                    .iter()
                    .any(|e| support::strip_prefix(&e.name).is_some_and(support::is_snippet))
                {
                    "not served: it has snippet annotations"
                } else {
                    "not served: see the problem above"
                }
                .into(),
            ]);
        }
    }
    if let Some(c) = &r.configmap {
        let obj = format!("configmap {}/{}", c.namespace, c.name);
        for e in &c.keys {
            rows.push([obj.clone(), e.name.clone(), e.status.into(), e.note.clone()]);
        }
        for p in unattached(&c.keys, &c.problems) {
            rows.push([obj.clone(), "-".into(), "differs".into(), p.clone()]);
        }
    }
    let w: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        ));
    }
    let s = &r.summary;
    out.push_str(&format!(
        "\n{} supported, {} differ, {} refused, {} not yet, {} unknown: {}\n\n",
        s.supported,
        s.differs,
        s.refused,
        s.not_yet,
        s.unknown,
        if r.same_behaviour {
            "everything behaves as under ingress-nginx"
        } else {
            "some behaviour would change (see above)"
        }
    ));
    out.push_str(SIDE_BY_SIDE);
    out
}

async fn from_cluster(args: &MigrateArgs) -> anyhow::Result<(Vec<Ingress>, Option<ConfigMap>)> {
    let client = crate::source::kube::client(args.kubeconfig.as_deref()).await?;
    let ingresses = list_ingresses(&client).await?;
    let cm = kube::Api::<ConfigMap>::namespaced(client, &args.configmap.namespace)
        .get_opt(&args.configmap.name)
        .await
        .with_context(|| format!("reading ConfigMap {}", args.configmap))?;
    Ok((ingresses, cm))
}

/// Every Ingress of the cluster, as the store keeps them.
async fn list_ingresses(client: &kube::Client) -> anyhow::Result<Vec<Ingress>> {
    Ok(kube::Api::<networking::Ingress>::all(client.clone())
        .list(&Default::default())
        .await
        .context("listing Ingresses")?
        .items
        .into_iter()
        .map(Ingress::from)
        .collect())
}

/// `--to gateway-api`: the Ingresses (of `--ingress-class`) as Gateway API objects.
async fn to_gateway_api(args: &MigrateArgs) -> anyhow::Result<i32> {
    // The controller ConfigMap too: its `ssl-redirect`, `force-ssl-redirect` and
    // `http-redirect-code` decide the HTTP to HTTPS redirects.
    let controller_map = Some(args.configmap.clone());
    let wanted_maps: Vec<&Key> = [
        &args.tcp_services_configmap,
        &args.udp_services_configmap,
        &controller_map,
    ]
    .into_iter()
    .flatten()
    .collect();
    let objects: Objects = match &args.manifests {
        Some(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "--manifests {}: not a directory",
                dir.display()
            );
            ManifestDir::new(dir).load()
        }
        None => {
            let client = crate::source::kube::client(args.kubeconfig.as_deref()).await?;
            let ingresses = list_ingresses(&client).await?;
            let services = kube::Api::<k8s_openapi::api::core::v1::Service>::all(client.clone())
                .list(&Default::default())
                .await
                .context("listing Services")?;
            let mut maps = Vec::new();
            for key in &wanted_maps {
                let api = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
                    client.clone(),
                    &key.namespace,
                );
                let cm = api
                    .get_opt(&key.name)
                    .await
                    .with_context(|| format!("reading ConfigMap {key}"))?;
                maps.extend(cm.map(|c| crate::store::Object::ConfigMap(c.into())));
            }
            Objects::from_objects(
                (ingresses.into_iter())
                    .map(|i| crate::store::Object::Ingress(std::sync::Arc::new(i)))
                    .chain(
                        (services.items.into_iter())
                            .map(|s| crate::store::Object::Service(std::sync::Arc::new(s.into()))),
                    )
                    .chain(maps),
            )
        }
    };
    let data = |key: &Option<Key>| -> anyhow::Result<BTreeMap<String, String>> {
        let Some(key) = key else {
            return Ok(BTreeMap::new());
        };
        let cm = objects
            .config_maps
            .get(key)
            .with_context(|| format!("ConfigMap {key} not found"))?;
        Ok(cm.data.clone().unwrap_or_default())
    };
    let exposed = super::migrate_gateway::ExposedPorts {
        tcp: data(&args.tcp_services_configmap)?,
        udp: data(&args.udp_services_configmap)?,
    };
    let class = args.ingress_class.as_deref();
    let ingresses: Vec<&Ingress> = (objects.ingresses.values())
        .map(|i| &**i)
        .filter(|i| class.is_none() || class_of(i).as_deref() == class)
        .collect();
    anyhow::ensure!(
        !ingresses.is_empty() || !exposed.tcp.is_empty() || !exposed.udp.is_empty(),
        "no Ingress and no TCP/UDP service found: nothing to convert"
    );
    let controller = (objects.config_maps.get(&args.configmap))
        .and_then(|cm| cm.data.clone())
        .unwrap_or_default();
    let out = super::migrate_gateway::convert(
        ingresses,
        &objects.services,
        &exposed,
        &controller,
        &args.gateway_class,
    );
    super::output::emit(&out)?;
    // As for the report: 1 when anything would behave differently, which each `# note:`
    // says.
    Ok(i32::from(out.lines().any(|l| l.starts_with("# note:"))))
}

/// Runs the command; returns the exit status (0 same behaviour, 1 differences).
pub async fn run(args: MigrateArgs) -> anyhow::Result<i32> {
    if let Some(PrintTable::Markdown) = args.print_table {
        super::output::emit(&support::markdown())?;
        return Ok(0);
    }
    if args.to == Some(Target::GatewayApi) {
        return to_gateway_api(&args).await;
    }
    let (ingresses, cm, objects): (Vec<Ingress>, Option<ConfigMap>, Option<Objects>) =
        match &args.manifests {
            Some(dir) => {
                anyhow::ensure!(
                    dir.is_dir(),
                    "--manifests {}: not a directory",
                    dir.display()
                );
                let objects: Objects = ManifestDir::new(dir).load();
                if let Some(d) = objects.diagnostics.first() {
                    anyhow::bail!("{}: {}", d.object.name, d.message);
                }
                (
                    objects.ingresses.values().map(|i| (**i).clone()).collect(),
                    objects
                        .config_maps
                        .get(&args.configmap)
                        .map(|c| (**c).clone()),
                    Some(objects),
                )
            }
            // The cluster's Secrets are not read: migrate needs no access to them.
            None => {
                let (i, cm) = from_cluster(&args).await?;
                (i, cm, None)
            }
        };
    if cm.is_none() {
        // On stderr: the JSON on stdout stays one object (its `configmap` is null).
        eprintln!(
            "warning: ConfigMap {} (--configmap) not found: its keys are not compared",
            args.configmap
        );
    }
    let r = report(
        &ingresses,
        cm.as_ref(),
        args.ingress_class.as_deref(),
        objects.as_ref(),
    );
    // "Everything behaves the same" about nothing would be a false all-clear.
    if let Some(class) = &args.ingress_class {
        anyhow::ensure!(
            !r.ingresses.is_empty(),
            "no Ingress of class {class:?} found: nothing to compare"
        );
    }
    match args.output {
        Output::Json => super::output::emit_json(&r)?,
        Output::Table => super::output::emit(&table(&r))?,
    }
    Ok(if r.same_behaviour { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::files::parse_manifests;
    use crate::store::Object;

    fn load(yaml: &str) -> (Vec<Ingress>, Option<ConfigMap>) {
        let mut ings = Vec::new();
        let mut cm = None;
        for o in parse_manifests(yaml).unwrap() {
            match o {
                Object::Ingress(i) => ings.push((*i).clone()),
                Object::ConfigMap(c) => cm = Some((*c).clone()),
                _ => {}
            }
        }
        (ings, cm)
    }

    #[test]
    fn supported_only_is_the_same_behaviour() {
        let (i, _) = load(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  annotations:\n    nginx.ingress.kubernetes.io/proxy-body-size: 8m\n    example.com/team: x\nspec:\n  ingressClassName: nginx\n",
        );
        let r = report(&i, None, Some("nginx"), None);
        assert!(r.same_behaviour, "{r:?}");
        assert_eq!(r.summary.supported, 1);
        assert!(report(&i, None, Some("other"), None).ingresses.is_empty());
    }

    /// A `differs` note about one value does not flag another (found by a fresh-user trial:
    /// `auth-type: basic` and `auth-realm` were reported as differences).
    #[test]
    fn a_difference_about_one_value_leaves_the_others_supported() {
        let status = |name: &str, value: &str| {
            let yaml = format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  \
                 annotations:\n    nginx.ingress.kubernetes.io/{name}: {value:?}\n    \
                 nginx.ingress.kubernetes.io/auth-secret: s\n"
            );
            let (i, _) = load(&yaml);
            let r = report(&i, None, None, None);
            let full = format!("nginx.ingress.kubernetes.io/{name}");
            (r.ingresses[0].annotations.iter())
                .find(|e| e.name == full)
                .map_or("missing", |e| e.status)
        };
        for (name, same, differs) in [
            ("auth-type", "basic", "digest"),
            ("auth-realm", "Staff only", "off"),
            ("load-balance", "round_robin", "ewma"),
            ("ssl-passthrough", "false", "true"),
            ("limit-rate", "0", "100"),
            ("proxy-next-upstream", "off", "error timeout"),
        ] {
            assert_eq!(status(name, same), "supported", "{name}: {same}");
            assert_eq!(status(name, differs), "differs", "{name}: {differs}");
        }
        // Notes about more than a value stay whatever it is.
        assert_eq!(status("limit-connections", "1"), "differs");
    }

    /// With the manifests' Secrets at hand, a Secret the Ingress names that `run` cannot use
    /// is a problem (found by fresh-user trials: a proxy-ssl Secret without `ca.crt` was
    /// reported supported, and `run` answered 503; a `spec.tls` Secret `run` cannot serve
    /// passed); a usable one is not.
    #[test]
    fn secrets_the_annotations_name_are_checked_when_at_hand() {
        let yaml = |secret_key: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: backend, namespace: shop}}\n\
                 stringData: {{{secret_key}: x}}\n---\n\
                 apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  \
                 namespace: shop\n  annotations:\n    \
                 nginx.ingress.kubernetes.io/proxy-ssl-secret: shop/backend\n    \
                 nginx.ingress.kubernetes.io/proxy-ssl-verify: \"on\"\n    \
                 nginx.ingress.kubernetes.io/auth-type: basic\n    \
                 nginx.ingress.kubernetes.io/auth-secret: users\n\
                 spec:\n  tls: [{{hosts: [a.test], secretName: gone}}]\n"
            )
        };
        let mut objects = Objects::from_objects(parse_manifests(&yaml("tls.crt")).unwrap());
        // The `spec.tls` Secret is in the directory but cannot be served; a Secret the
        // directory lacks (`users`) is not reported: a GitOps repository seldom holds them.
        objects.upsert(Object::Secret(std::sync::Arc::new(
            k8s_openapi::api::core::v1::Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("gone".into()),
                    namespace: Some("shop".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )));
        let (i, _) = load(&yaml("tls.crt"));
        let without = report(&i, None, None, None);
        assert!(without.ingresses[0].problems.is_empty(), "{without:?}");
        let with = report(&i, None, None, Some(&objects));
        let problems = &with.ingresses[0].problems;
        assert!(!with.same_behaviour);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("InvalidProxySslSecret:")),
            "{problems:?}"
        );
        assert!(
            problems.iter().all(|p| !p.contains("shop/users")),
            "a Secret not in the directory: {problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("InvalidTlsSecret:")),
            "the spec.tls Secret run cannot serve: {problems:?}"
        );
    }

    #[test]
    fn bad_values_differ() {
        let (i, _) = load(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  annotations:\n    nginx.ingress.kubernetes.io/proxy-body-size: lots\n",
        );
        let r = report(&i, None, None, None);
        assert!(!r.same_behaviour);
        assert_eq!(r.ingresses[0].problems.len(), 1);
        assert!(r.ingresses[0].problems[0].starts_with("InvalidAnnotation: "));
    }

    /// A rate limit that does not parse denies the routes in `run` (ingress-nginx rejects the
    /// Ingress); `migrate` names the value and says so.
    #[test]
    fn bad_rate_limits_are_reported() {
        let (i, _) = load(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  annotations:\n    nginx.ingress.kubernetes.io/limit-rps: fast\n    nginx.ingress.kubernetes.io/limit-connections: \"-2\"\n",
        );
        let r = report(&i, None, None, None);
        assert!(!r.same_behaviour);
        let p = &r.ingresses[0].problems;
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("InvalidAnnotation: ")
                && p[0].contains("limit-rps: \"fast\"")
                && p[0].contains("limit-connections: \"-2\"")
                && p[0].contains("503 until fixed"),
            "{p:?}"
        );
    }

    /// What `run` denies with 503 (basic auth, `auth-url`) or 403 (`auth-tls-*`) for a value
    /// alone, `migrate` reports too, without the Secrets, Services and ConfigMaps named (a
    /// GitOps repository seldom holds Secrets): each Ingress below has one such value.
    #[test]
    fn auth_value_problems_are_reported() {
        let ing = |name: &str, ann: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: app\n  annotations:\n{ann}"
            )
        };
        let p = "    nginx.ingress.kubernetes.io/";
        let yaml = [
            ing("a-type", &format!("{p}auth-type: basci\n{p}auth-secret: s\n")),
            ing("b-nosecret", &format!("{p}auth-type: basic\n")),
            ing("c-secret-type", &format!("{p}auth-type: basic\n{p}auth-secret: s\n{p}auth-secret-type: map\n")),
            ing("d-url", &format!("{p}auth-url: not a url\n")),
            ing("e-method", &format!("{p}auth-url: http://auth.app.svc/check\n{p}auth-method: GE T\n")),
            ing("f-variable", &format!("{p}auth-url: http://auth.app.svc/check?u=$upstream_addr\n")),
            ing("g-tls-ns", &format!("{p}auth-tls-secret: other/ca\n")),
            ing("h-match-cn", &format!("{p}auth-tls-secret: app/ca\n{p}auth-tls-match-cn: \"O=(\"\n")),
            ing("i-proxy-ssl-ns", &format!("{p}proxy-ssl-secret: other/ps\n")),
            ing("j-proxy-ssl-protocols", &format!("{p}proxy-ssl-secret: app/ps\n{p}proxy-ssl-protocols: TLSv1.1\n")),
            // ingress-nginx's k8s.ParseNameNS: a bare name is not NAMESPACE/NAME.
            ing("k-tls-bare", &format!("{p}auth-tls-secret: ca\n")),
            ing("l-proxy-ssl-bare", &format!("{p}proxy-ssl-secret: ps\n")),
            // Values that parse: nothing to report, whether or not the objects exist.
            ing("z-fine", &format!("{p}auth-type: basic\n{p}auth-secret: s\n{p}auth-url: http://auth.app.svc/check?rd=$escaped_request_uri\n{p}auth-tls-secret: app/ca\n{p}proxy-ssl-secret: app/ps\n{p}proxy-ssl-verify: \"on\"\n")),
        ]
        .concat();
        let (i, _) = load(&yaml);
        let r = report(&i, None, None, None);
        let reasons: Vec<(&str, Vec<&str>)> = r
            .ingresses
            .iter()
            .map(|i| {
                let reasons = i
                    .problems
                    .iter()
                    .map(|p| p.split(':').next().unwrap_or_default());
                (i.name.as_str(), reasons.collect())
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("a-type", vec!["InvalidAnnotation"]),
                ("b-nosecret", vec!["AuthSecretNotSet"]),
                ("c-secret-type", vec!["InvalidAnnotation"]),
                ("d-url", vec!["InvalidAnnotation"]),
                ("e-method", vec!["InvalidAnnotation"]),
                ("f-variable", vec!["InvalidAnnotation"]),
                ("g-tls-ns", vec!["CrossNamespaceAuthTlsSecret"]),
                ("h-match-cn", vec!["InvalidAnnotation"]),
                ("i-proxy-ssl-ns", vec!["CrossNamespaceProxySslSecret"]),
                ("j-proxy-ssl-protocols", vec!["InvalidAnnotation"]),
                ("k-tls-bare", vec!["InvalidAnnotation"]),
                ("l-proxy-ssl-bare", vec!["InvalidAnnotation"]),
                ("z-fine", vec![]),
            ],
            "{:?}",
            r.ingresses
        );
        assert!(!r.same_behaviour);
    }

    /// What `run` reports about canary annotations, `migrate` reports too: a bad pattern and
    /// a weight on an Ingress that is no canary.
    #[test]
    fn canary_problems_are_reported() {
        let (i, _) = load(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  annotations:\n    nginx.ingress.kubernetes.io/canary: \"true\"\n    nginx.ingress.kubernetes.io/canary-by-header: x\n    nginx.ingress.kubernetes.io/canary-by-header-pattern: \"(unclosed\"\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: b\n  annotations:\n    nginx.ingress.kubernetes.io/canary-weight: \"20\"\n",
        );
        let r = report(&i, None, None, None);
        assert!(!r.same_behaviour);
        let problems: Vec<&str> = r
            .ingresses
            .iter()
            .flat_map(|i| {
                i.problems
                    .iter()
                    .map(|p| p.split(':').next().unwrap_or_default())
            })
            .collect();
        assert_eq!(
            problems,
            ["InvalidAnnotation", "CanaryNotEnabled"],
            "{:?}",
            r.ingresses
        );
    }
}
