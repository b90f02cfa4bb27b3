//! Pure translation: store objects in, one immutable [`Snapshot`] out. No I/O here.
//!
//! - [`class`]: which Ingresses are ours; [`ingress_inspect`]: Ingresses refused as a whole
//!   (ingress-nginx's deep inspection and `strict-validate-path-type`).
//! - [`ingress`]: L7 virtual hosts, routes, certificates, default backend.
//! - [`service`]: L4 services the XDP path takes over.
//! - [`service_upstream`]: `service-upstream`: a Service's ClusterIP as its one endpoint.
//! - [`endpoints`]: Service port -> endpoints from EndpointSlices.
//! - [`node_local`]: endpoint addresses that point into the node, refused.
//! - [`annotations`]: ingress-nginx annotations -> route policy and upstream options.
//! - [`affinity`]: ingress-nginx cookie session affinity annotations.
//! - [`auth`]: authentication annotations (basic auth from an htpasswd Secret);
//!   [`forward_auth`]: external authentication (`auth-url`, `global-auth-url`).
//! - [`canary`]: ingress-nginx canary Ingresses, merged into the main routes.
//! - [`errors`]: `default-backend` and `custom-http-errors` annotations.
//! - [`root_location`]: ingress-nginx's implicit `location /` of a host, for its error pages.
//! - [`next_upstream`]: `proxy-next-upstream*` (annotations and ConfigMap keys).
//! - [`rewrite`], [`redirect`]: ingress-nginx's path rewrite and redirect/host annotations.
//! - [`passthrough`]: ingress-nginx's `ssl-passthrough` (TLS to the pod, by SNI).
//! - [`compat`]: ingress-nginx behaviours no annotation asks for, for compatible classes.
//! - [`support`]: every ingress-nginx annotation and ConfigMap key, and how we support it.
//! - [`configmap`]: the ingress-nginx controller ConfigMap.
//! - [`cors`]: the CORS annotations; [`custom_headers`]: response headers from a ConfigMap.
//! - [`tls`]: TLS Secret validation; [`server_cert`]: which certificate each served name
//!   gets, and so which names redirect plain HTTP to HTTPS.
//!
//! Every problem becomes a [`crate::model::Diagnostic`] on the object it belongs to; nothing
//! here fails as a whole.

pub mod affinity;
pub mod annotations;
pub mod answer_rewrite;
pub mod auth;
pub mod by_host;
pub mod canary;
pub mod cert_host;
pub mod class;
pub mod client_auth;
pub mod compat;
pub mod compression;
pub mod configmap;
pub mod cors;
pub mod custom_headers;
pub mod default_backend;
pub mod diagnostics;
pub mod endpoints;
pub mod errors;
pub mod external_name;
pub mod forward_auth;
pub mod gateway;
pub mod go_duration;
pub mod head_buffers;
pub mod incremental;
pub mod ingress;
pub mod ingress_inspect;
pub mod location_list;
pub mod mirror;
pub mod next_upstream;
pub mod nginx_size;
pub mod nginx_time;
pub mod node_local;
pub mod passthrough;
pub mod proxy_ssl;
pub mod rate_limit;
pub mod redirect;
pub mod rewrite;
pub mod root_location;
pub mod server_cert;
pub mod server_tls;
pub mod service;
pub mod service_upstream;
pub mod support;
pub mod syn_limit;
pub mod tls;
pub mod word_blocklist;

#[cfg(test)]
mod default_backend_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod paths_tests;
#[cfg(test)]
mod proxy_ssl_tests;
#[cfg(test)]
mod upstreams_tests;

use std::{collections::HashSet, sync::Arc};

use crate::compact::endpoint_slice::EndpointSlice;

use crate::{
    model::{ObjectKind, ObjectRef, Snapshot},
    store::{Change, Key, Object, Objects},
};

/// What the last snapshot depended on besides Ingresses, IngressClasses, Services and Nodes
/// (whose changes always re-translate): the Services whose endpoints it used and the Secrets it
/// looked up. EndpointSlice and Secret churn elsewhere in the cluster is skipped.
#[derive(Debug, Default)]
pub struct References {
    pub services: HashSet<Key>,
    pub secrets: HashSet<Key>,
    /// The controller ConfigMap, those `custom-headers` and `auth-proxy-set-headers` name,
    /// and the CA ConfigMaps of BackendTLSPolicies and Gateways' client-certificate
    /// validation: other ConfigMaps' changes do not re-translate.
    pub config_maps: HashSet<Key>,
    /// Services auth URLs name ([`forward_auth`]): their endpoints are in route policies,
    /// which the endpoints-only fast path does not rebuild.
    pub auth_services: HashSet<Key>,
}

/// The problems of an Ingress's authentication annotations (`auth-type` and basic auth,
/// `auth-url` and its family, `auth-tls-*`, `proxy-ssl-*`) that need no other object to find: values that
/// do not parse, `auth-type` without `auth-secret`, a Secret in another namespace. Reported on
/// `object` exactly as translation reports them; what `migrate` shows where the Secrets,
/// Services and ConfigMaps they name are not at hand.
pub fn auth_value_problems(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    object: &ObjectRef,
    allow_cross_namespace: bool,
    diags: &mut diagnostics::Diagnostics,
) {
    let mut r = annotations::Reader::new(annotations, object, diags);
    r.allow_cross_namespace = allow_cross_namespace;
    auth::check_values(&mut r, &object.namespace);
    client_auth::check_values(&mut r, &object.namespace);
    proxy_ssl::check_values(&mut r, &object.namespace);
    forward_auth::check_values(&mut r);
}

/// What the Secrets an Ingress names say, where `objects` holds them (`migrate
/// --manifests`): its `spec.tls` Secrets (a pair rustls cannot serve: the host gets the
/// default certificate), and those of `auth-secret`, `auth-tls-secret` and `proxy-ssl-secret`
/// (a key missing, `ca.crt` for `proxy-ssl-verify: on`, PEM or htpasswd that does not parse:
/// `run` denies the routes with 503 or the host with 403). A Secret `objects` lacks is not
/// reported: a GitOps repository seldom holds its Secrets. Reported on `object` exactly as
/// translation reports them; with [`auth_value_problems`] the same diagnostics come once after
/// [`diagnostics::Diagnostics::finish`].
pub fn secret_problems(
    ingress: &crate::compact::ingress::Ingress,
    object: &ObjectRef,
    objects: &Objects,
    allow_cross_namespace: bool,
    diags: &mut diagnostics::Diagnostics,
) {
    let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
    for name in tls
        .into_iter()
        .flatten()
        .filter_map(|t| t.secret_name.as_deref())
    {
        let key = Key::new(object.namespace.clone(), name);
        if let Some(s) = objects.secrets.get(&key)
            && let Err(e) = tls::parse_secret(s)
        {
            diags.error(object, "InvalidTlsSecret", tls::invalid_message(&key, &e));
        }
    }
    let annotations = ingress.metadata.annotations.as_ref();
    let mut found = diagnostics::Diagnostics::default();
    let mut r = annotations::Reader::new(annotations, object, &mut found);
    r.allow_cross_namespace = allow_cross_namespace;
    let mut used = HashSet::new();
    let ns = &object.namespace;
    auth::parse(&mut r, ns, objects, None, &mut used);
    client_auth::parse(&mut r, ns, objects, None, &mut used);
    proxy_ssl::parse(&mut r, ns, objects, None, &mut used);
    // `AuthSecretNotFound`, `AuthTlsSecretNotFound`, `ProxySslSecretNotFound`: see above.
    (diags.0).extend(
        found
            .0
            .into_iter()
            .filter(|d| !d.reason.ends_with("SecretNotFound")),
    );
}

pub const DEFAULT_CONTROLLER_NAME: &str = "xdp-ingress.dev/controller";
pub const DEFAULT_INGRESS_CLASS: &str = "xdp-ingress";
/// Services with this annotation set to `"true"` are taken over by the XDP path.
pub const L4_ACCELERATION_ANNOTATION: &str = "xdp-ingress.dev/l4-acceleration";

/// What translation needs to know besides the objects (from flags).
#[derive(Clone, Debug)]
pub struct TranslateConfig {
    /// `spec.controller` of IngressClasses that are ours.
    pub controller_name: String,
    /// Class name matched by `ingressClassName` (when no IngressClass object of that name
    /// exists) and by the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_class: String,
    /// Also take Ingresses that name no class at all.
    pub watch_without_class: bool,
    /// The ingress's own Service (its endpoints are the node proxies).
    pub ingress_service: Option<Key>,
    /// This node's name, for locality.
    pub node_name: Option<String>,
    /// `--default-ssl-certificate`: the Secret of handshakes whose name has no certificate,
    /// and of hosts configured with the default one.
    pub default_tls_secret: Option<Key>,
    /// `--publish-address`: written to Ingress status instead of node addresses.
    pub publish_addresses: Vec<String>,
    /// This node's own addresses (the daemon's interface addresses, read at the edge):
    /// endpoints there are refused, as are those of the Node named `node_name`
    /// (see [`node_local`]).
    pub node_addresses: Vec<std::net::IpAddr>,
    /// `--allow-node-local-endpoints`: serve endpoints on loopback and on this node's
    /// addresses (hostNetwork pods on this node, apps on loopback in a manifest directory).
    pub allow_node_local_endpoints: bool,
    /// `--secret-namespaces`: TLS Secrets are read only in these namespaces (`None`: all).
    /// A reference to a Secret elsewhere is an Error diagnostic, not a silent "not found".
    pub secret_namespaces: Option<Vec<String>>,
    /// `--nginx-compatible-class`: Ingresses of these classes also get the ingress-nginx
    /// behaviours no annotation asks for (see [`compat`]). Default: `nginx`.
    pub nginx_compatible_classes: Vec<String>,
    /// `--configmap`: the ingress-nginx controller ConfigMap ([`configmap`]).
    pub configmap: Option<Key>,
    /// `--serve-ingresses-with-snippets`: serve the rest of an Ingress that has snippet
    /// annotations (never interpreted). Off by default; the ConfigMap's
    /// `allow-snippet-annotations` overrides it.
    pub serve_ingresses_with_snippets: bool,
    /// `--disable-catch-all`: an Ingress with `spec.defaultBackend` is not served at all, its
    /// rules neither (ingress-nginx's flag of that name: store.go `hasCatchAllIngressRule`
    /// ignores the whole Ingress, and deletes an Ingress updated to one). Off by default.
    pub disable_catch_all: bool,
    /// `--default-backend-service`: the Service (first port, ready endpoints) of the
    /// controller's default backend ([`default_backend`]); `None`: the built-in 404.
    pub default_backend_service: Option<Key>,
    /// `--enable-ssl-passthrough`: hosts of `ssl-passthrough` Ingresses get their TLS
    /// connections passed to the pod untouched (see [`passthrough`]). Off by default.
    pub enable_ssl_passthrough: bool,
    /// `--disable-svc-external-name`: backends of ExternalName Services get no upstream
    /// (503), as ingress-nginx's flag of that name ([`external_name`]).
    pub disable_svc_external_name: bool,
    /// `--syn-rate-limit-per-source` / `--syn-rate-limit-burst`: the per-source SYN rate
    /// limit of the ingress's own Service (the proxy's ports) unless its annotations say
    /// otherwise (see [`syn_limit`]), and of the proxy's listeners (`run` writes those,
    /// `dataplane::syn_listeners`). `None`: unlimited.
    pub proxy_syn_rate_limit: Option<crate::model::SynRateLimit>,
    /// The proxy's HTTP and HTTPS ports: the only Gateway listener ports served for now.
    pub gateway_ports: gateway::ProxyPorts,
    /// `--gateway-address-pool`: the addresses Gateways may be served on, each Gateway on its
    /// own ([`gateway::addresses`]). Empty: every Gateway on the node's addresses.
    pub gateway_address_pool: gateway::addresses::AddressPool,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        TranslateConfig {
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            ingress_class: DEFAULT_INGRESS_CLASS.into(),
            watch_without_class: false,
            ingress_service: None,
            node_name: None,
            default_tls_secret: None,
            publish_addresses: Vec::new(),
            node_addresses: Vec::new(),
            allow_node_local_endpoints: false,
            secret_namespaces: None,
            nginx_compatible_classes: vec![compat::DEFAULT_COMPATIBLE_CLASS.into()],
            configmap: None,
            serve_ingresses_with_snippets: false,
            disable_catch_all: false,
            default_backend_service: None,
            enable_ssl_passthrough: false,
            disable_svc_external_name: false,
            proxy_syn_rate_limit: None,
            gateway_ports: gateway::ProxyPorts::default(),
            gateway_address_pool: Default::default(),
        }
    }
}

/// Translates repeatedly, numbering snapshots and keeping parsed TLS Secrets between runs.
#[derive(Debug)]
pub struct Translator {
    pub config: TranslateConfig,
    version: u64,
    tls: tls::TlsCache,
    refs: Option<References>,
    /// The last snapshot of [`Translator::translate_shared`] and where its Services are used.
    last: Option<(Arc<Snapshot>, incremental::Uses)>,
    /// Owned Ingresses of the last snapshot by host ([`by_host`]).
    index: Option<by_host::IngressIndex>,
}

/// What changed since the last translation, when only Ingresses and endpoints did.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    /// Services whose EndpointSlices changed.
    pub endpoints_of: HashSet<Key>,
    /// Ingresses upserted or deleted.
    pub ingresses: HashSet<Key>,
}

impl Changed {
    /// Adds what `change` (not yet applied to `objects`) touches; false (and `self` partly
    /// updated) when it touches anything but EndpointSlices and Ingresses.
    pub fn add(&mut self, objects: &Objects, change: &Change) -> bool {
        match change {
            Change::Upsert(o @ Object::Ingress(_)) => {
                self.ingresses.insert(o.key());
                true
            }
            Change::Delete(ObjectKind::Ingress, key) => {
                self.ingresses.insert(key.clone());
                true
            }
            Change::Batch(changes) => changes.iter().all(|c| self.add(objects, c)),
            _ => match Translator::slice_services(objects, change) {
                Some(keys) => {
                    self.endpoints_of.extend(keys);
                    true
                }
                None => false,
            },
        }
    }
}

/// The L7 part of translating `ingresses` (any subset of the store's, in any order).
struct L7Part {
    l7: crate::model::L7Config,
    refs: References,
    owned_ingresses: Vec<ObjectRef>,
    unsupported_annotations: std::collections::BTreeMap<String, u64>,
    index: by_host::IngressIndex,
}

#[allow(clippy::too_many_arguments)]
fn l7_of<'a>(
    objects: &'a Objects,
    ingresses: impl Iterator<Item = &'a Arc<crate::compact::ingress::Ingress>>,
    classes: &class::Classes,
    endpoints: &'a endpoints::EndpointIndex<'a>,
    controller: configmap::ControllerConfig,
    tls: &'a mut tls::TlsCache,
    config: &TranslateConfig,
    diags: &'a mut diagnostics::Diagnostics,
) -> L7Part {
    let mut owned: Vec<_> = ingresses.filter(|i| classes.owns(i, config)).collect();
    owned.sort_by(|a, b| ingress::precedence(a, b));
    let oref_of = |i: &crate::compact::ingress::Ingress| {
        ObjectRef::new(
            ObjectKind::Ingress,
            i.metadata.namespace.clone().unwrap_or_default(),
            i.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mut owned_ingresses: Vec<ObjectRef> = owned.iter().map(|i| oref_of(i)).collect();
    owned_ingresses.sort();

    let serve_snippets = controller
        .serve_with_snippets
        .unwrap_or(config.serve_ingresses_with_snippets);
    let mut unsupported_annotations = std::collections::BTreeMap::new();
    let mut index = by_host::IngressIndex::default();
    let mut served = Vec::with_capacity(owned.len());
    for ing in &owned {
        let oref = oref_of(ing);
        let check = support::check_annotations(
            ing.metadata.annotations.as_ref(),
            &oref,
            serve_snippets,
            diags,
        );
        for name in &check.unsupported {
            *unsupported_annotations.entry(name.clone()).or_insert(0u64) += 1;
        }
        let blocked = word_blocklist::blocked(
            ing.metadata.annotations.as_ref(),
            &controller.annotation_value_word_blocklist,
        );
        if let Some((annotation, word)) = blocked {
            diags.error(
                &oref,
                "AnnotationValueBlocked",
                format!(
                    "annotation {annotation} contains the word {word:?} listed in the ConfigMap's \
                     {}: the Ingress is not served",
                    word_blocklist::KEY
                ),
            );
        }
        // ingress-nginx's admission message says the same: remove the one or the other.
        let catch_all = config.disable_catch_all
            && ing
                .spec
                .as_ref()
                .is_some_and(|s| s.default_backend.is_some());
        if catch_all {
            diags.error(
                &oref,
                "CatchAllDisabled",
                "spec.defaultBackend makes this a catch-all Ingress, and --disable-catch-all is \
                 set: the Ingress is not served, its rules neither (remove .spec.defaultBackend \
                 or the flag)",
            );
        }
        let blocked = blocked.is_some() || catch_all;
        let key = Key::new(oref.namespace, oref.name);
        if by_host::reaches_beyond_hosts(ing) {
            index.global.insert(key.clone());
        }
        index.insert(
            key,
            by_host::Contribution {
                hosts: by_host::hosts_of(ing),
                unsupported: check.unsupported,
            },
        );
        let strict = controller.strict_validate_path_type;
        if let Some((reason, msg)) = ingress_inspect::refusal(ing.spec.as_ref(), strict) {
            diags.error(&oref_of(ing), reason, msg);
            continue;
        }
        if !blocked && (check.snippets.is_empty() || serve_snippets) {
            served.push(*ing);
        }
    }

    let mut builder = ingress::L7Builder::new(objects, endpoints, tls, diags, config);
    builder.controller = controller;
    for ing in served {
        let before = builder.diags.0.len();
        builder.add_ingress(ing);
        // A diagnostic on another object ties this Ingress to more than its hosts.
        let me = oref_of(ing);
        if builder.diags.0[before..].iter().any(|d| d.object != me) {
            index.global.insert(Key::new(me.namespace, me.name));
        }
    }
    let (l7, refs) = builder.finish();
    L7Part {
        l7,
        refs,
        owned_ingresses,
        unsupported_annotations,
        index,
    }
}

impl Translator {
    pub fn new(config: TranslateConfig) -> Translator {
        Translator {
            config,
            version: 0,
            tls: tls::TlsCache::default(),
            refs: None,
            last: None,
            index: None,
        }
    }

    /// Translates, remembering the result. `changed`: the only changes since the previous
    /// call; then only the upstreams of Services whose endpoints changed, or only the hosts of
    /// changed Ingresses ([`by_host`]), are rebuilt.
    pub fn translate_changed(
        &mut self,
        objects: &Objects,
        changed: Option<&Changed>,
    ) -> Arc<Snapshot> {
        match changed {
            Some(c) if c.ingresses.is_empty() => {
                self.translate_shared(objects, Some(&c.endpoints_of))
            }
            Some(c) if c.endpoints_of.is_empty() => {
                match self.ingresses_only(objects, &c.ingresses) {
                    Some(mut fast) => {
                        self.version += 1;
                        fast.version = self.version;
                        let snap = Arc::new(fast);
                        if let Some((last, _)) = &mut self.last {
                            *last = snap.clone();
                        }
                        snap
                    }
                    None => self.translate_shared(objects, None),
                }
            }
            _ => self.translate_shared(objects, None),
        }
    }

    /// Translates, remembering the result. `endpoints_of`: the only changes since the previous
    /// call were endpoints of these Services; then only their upstreams are rebuilt.
    pub fn translate_shared(
        &mut self,
        objects: &Objects,
        endpoints_of: Option<&HashSet<Key>>,
    ) -> Arc<Snapshot> {
        if let Some(mut fast) = endpoints_of.and_then(|c| self.endpoints_only(objects, c)) {
            self.version += 1;
            fast.version = self.version;
            let snap = Arc::new(fast);
            if let Some((last, _)) = &mut self.last {
                *last = snap.clone();
            }
            return snap;
        }
        let snap = Arc::new(self.translate(objects));
        self.last = Some((snap.clone(), incremental::Uses::of(&snap)));
        snap
    }

    /// The Services whose endpoints `change` (not yet applied to `objects`) touches, if it
    /// touches nothing but EndpointSlices.
    pub fn slice_services(objects: &Objects, change: &Change) -> Option<Vec<Key>> {
        let service_of = |o: &EndpointSlice| {
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            Some(Key::new(ns, o.service()?))
        };
        let old = |key: &Key| objects.endpoint_slices.get(key).and_then(|s| service_of(s));
        match change {
            Change::Upsert(o @ Object::EndpointSlice(s)) => {
                Some(service_of(s).into_iter().chain(old(&o.key())).collect())
            }
            Change::Delete(ObjectKind::EndpointSlice, key) => Some(old(key).into_iter().collect()),
            Change::Batch(changes) => {
                let mut all = Vec::new();
                for c in changes {
                    all.extend(Self::slice_services(objects, c)?);
                }
                Some(all)
            }
            _ => None,
        }
    }

    /// Whether `change` (not yet applied to `objects`) can alter the next snapshot. Only says
    /// no for EndpointSlices and Secrets nothing referenced (before and after the change).
    pub fn affects(&self, objects: &Objects, change: &Change) -> bool {
        let Some(refs) = &self.refs else { return true };
        let slice_service = |o: &EndpointSlice| {
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            Some(Key::new(ns, o.service()?))
        };
        let slice_matters = |key: &Key| {
            objects
                .endpoint_slices
                .get(key)
                .is_some_and(|old| slice_service(old).is_none_or(|k| refs.services.contains(&k)))
        };
        match change {
            Change::Upsert(Object::EndpointSlice(s)) => {
                slice_service(s).is_none_or(|k| refs.services.contains(&k))
                    || slice_matters(&Object::EndpointSlice(s.clone()).key())
            }
            Change::Delete(ObjectKind::EndpointSlice, key) => slice_matters(key),
            Change::Upsert(o @ Object::Secret(_)) => refs.secrets.contains(&o.key()),
            Change::Delete(ObjectKind::Secret, key) => refs.secrets.contains(key),
            Change::Upsert(o @ Object::ConfigMap(_)) => refs.config_maps.contains(&o.key()),
            Change::Delete(ObjectKind::ConfigMap, key) => refs.config_maps.contains(key),
            Change::Batch(changes) => changes.iter().any(|c| self.affects(objects, c)),
            _ => true,
        }
    }

    /// The version the last snapshot got.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn translate(&mut self, objects: &Objects) -> Snapshot {
        self.version += 1;
        self.last = None;
        self.index = None;
        let mut diags = diagnostics::Diagnostics::default();
        diags.0.extend(objects.diagnostics.iter().cloned());
        let classes = class::Classes::new(objects, &self.config);
        class::check_flag_class(objects, &self.config, &mut diags);
        let endpoints = endpoints::EndpointIndex::new(objects, &self.config);

        let controller = self.controller_config(objects, &mut diags);
        let headers_from = [
            controller.add_headers_from.clone(),
            controller.proxy_set_headers_from.clone(),
        ];
        let mut du_refs = References::default();
        let default_backend = default_backend::resolve(
            objects,
            &endpoints,
            &self.config,
            &controller,
            &mut diags,
            &mut du_refs,
        );
        let part = l7_of(
            objects,
            objects.ingresses.values(),
            &classes,
            &endpoints,
            controller,
            &mut self.tls,
            &self.config,
            &mut diags,
        );
        let (mut l7, mut refs) = (part.l7, part.refs);
        l7.default_backend = default_backend;
        refs.services.extend(du_refs.services);
        let (owned_ingresses, unsupported_annotations) =
            (part.owned_ingresses, part.unsupported_annotations);
        self.index = Some(part.index);
        let mut l4 = service::l4_services(objects, &endpoints, &self.config, &mut diags, &mut refs);
        let status_addresses = status_addresses(objects, &l4, &self.config);
        let mut gw = gateway::translate(
            objects,
            &gateway::Context {
                controller_name: &self.config.controller_name,
                ports: self.config.gateway_ports,
                addresses: &status_addresses,
                pool: &self.config.gateway_address_pool,
                l4_services: &l4,
            },
            &endpoints,
            &mut self.tls,
            &mut diags,
        );
        gateway::merge(&mut l7, &mut gw);
        // TCP/UDP listeners join the Services' L4 services: same maps, same sync.
        l4.append(&mut gw.l4);
        l4.sort_by(|a, b| a.id.cmp(&b.id));
        refs.services.extend(gw.services.drain());
        refs.secrets.extend(gw.secrets.drain());
        refs.config_maps.extend(gw.config_maps.drain());
        endpoints.report_refused(&refs.services, &mut diags);
        self.tls.retain(|r| {
            objects
                .secrets
                .contains_key(&Key::new(r.namespace.clone(), r.name.clone()))
        });

        // Without --configmap, ingress-nginx's own ConfigMap is watched for the hint below.
        refs.config_maps.insert(
            self.config
                .configmap
                .clone()
                .unwrap_or_else(configmap::ingress_nginx_default),
        );
        refs.config_maps.extend(headers_from.into_iter().flatten());
        self.refs = Some(refs);
        Snapshot {
            version: self.version,
            l7,
            l4,
            diagnostics: diags.finish(),
            owned_ingresses: Arc::new(owned_ingresses),
            local_node: self.config.node_name.clone(),
            status_addresses,
            unsupported_annotations,
            gateway_status: Arc::new(gw.status),
        }
    }

    /// The controller ConfigMap's settings (defaults without `--configmap` or when it does
    /// not exist).
    fn controller_config(
        &self,
        objects: &Objects,
        diags: &mut diagnostics::Diagnostics,
    ) -> configmap::ControllerConfig {
        match self
            .config
            .configmap
            .as_ref()
            .and_then(|k| objects.config_maps.get(k))
        {
            Some(cm) => {
                let mut c = configmap::parse(cm, diags);
                let object = ObjectRef::new(
                    ObjectKind::ConfigMap,
                    cm.metadata.namespace.clone().unwrap_or_default(),
                    cm.metadata.name.clone().unwrap_or_default(),
                );
                if let Some(k) = &c.add_headers_from {
                    c.settings.add_headers =
                        custom_headers::add_headers(k, objects, &object, diags);
                }
                if let Some(k) = &c.proxy_set_headers_from {
                    c.settings.proxy_set_headers =
                        custom_headers::proxy_set_headers(k, objects, &object, diags);
                }
                c
            }
            None => {
                // A misspelt `--configmap` would otherwise drop every setting in silence.
                if let Some(k) = &self.config.configmap {
                    diags.warn(
                        &ObjectRef::new(ObjectKind::ConfigMap, &k.namespace, &k.name),
                        "ConfigMapNotFound",
                        format!(
                            "the controller ConfigMap {k} (--configmap) does not exist: the \
                             flags' defaults apply until it is created"
                        ),
                    );
                } else {
                    // A ConfigMap brought over from ingress-nginx is not read unless named: say
                    // so rather than serve without its settings in silence.
                    let k = configmap::ingress_nginx_default();
                    if objects.config_maps.contains_key(&k) {
                        diags.warn(
                            &ObjectRef::new(ObjectKind::ConfigMap, &k.namespace, &k.name),
                            "ConfigMapNotUsed",
                            format!(
                                "ConfigMap {k} is ingress-nginx's controller ConfigMap, but no \
                                 --configmap names it: its keys are not applied (run with \
                                 --configmap {k} to apply them)"
                            ),
                        );
                    }
                }
                configmap::ControllerConfig::default()
            }
        }
    }
}

/// `--publish-address` if given; else the addresses of the nodes that run the ingress (nodes
/// of the ingress Service's endpoints when it is known, else every node): ExternalIP, else
/// InternalIP.
fn status_addresses(
    objects: &Objects,
    l4: &[crate::model::L4Service],
    cfg: &TranslateConfig,
) -> Vec<String> {
    let mut out: Vec<String> = if !cfg.publish_addresses.is_empty() {
        cfg.publish_addresses.clone()
    } else {
        let proxies: std::collections::BTreeSet<&str> = l4
            .iter()
            .filter(|s| s.local_proxy)
            .flat_map(|s| s.endpoints.iter().filter_map(|e| e.node_name.as_deref()))
            .collect();
        objects
            .nodes
            .iter()
            .filter(|(k, _)| cfg.ingress_service.is_none() || proxies.contains(k.name.as_str()))
            .flat_map(|(_, node)| {
                let addrs = node
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_deref())
                    .unwrap_or_default();
                let of = |ty: &str| -> Vec<String> {
                    addrs
                        .iter()
                        .filter(|a| a.type_ == ty)
                        .map(|a| a.address.clone())
                        .collect()
                };
                let external = of("ExternalIP");
                if external.is_empty() {
                    of("InternalIP")
                } else {
                    external
                }
            })
            .collect()
    };
    out.sort();
    out.dedup();
    out
}

/// One-shot translation (tests, `explain`).
pub fn translate(objects: &Objects, config: &TranslateConfig) -> Snapshot {
    Translator::new(config.clone()).translate(objects)
}

#[cfg(test)]
mod tests;
