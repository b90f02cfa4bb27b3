//! Flags of the control plane (sources, class, election, status), flattened into `run`.

use std::path::PathBuf;

use crate::{
    model::translate::{DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS, TranslateConfig},
    store::Key,
};

/// The addresses Gateways are given: routing depends on them (on a Gateway's own address
/// only its routes are seen), so `run` and `explain` flatten this one definition.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GatewayPoolArgs {
    /// Addresses Gateways are served on, each Gateway on its own (comma-separated CIDRs,
    /// FIRST-LAST ranges or single addresses, IPv4 or IPv6): the addresses MetalLB, kube-vip
    /// or a BGP speaker brings to the nodes (an IPv4 CIDR of /30 or wider without its network
    /// and broadcast addresses). A Gateway gets the `spec.addresses` it names
    /// (each must be inside the pool), else one free address of the pool, kept across
    /// restarts through its `status.addresses`. Connections to a Gateway's address see only
    /// that Gateway. Default: none, every Gateway on every node address. See
    /// deploy/docs/gateway-api.md.
    #[arg(long, value_delimiter = ',')]
    pub gateway_address_pool: Vec<crate::model::translate::gateway::addresses::PoolRange>,
}

impl GatewayPoolArgs {
    pub fn pool(&self) -> crate::model::translate::gateway::addresses::AddressPool {
        crate::model::translate::gateway::addresses::AddressPool {
            ranges: self.gateway_address_pool.clone(),
        }
    }
}

/// The flags that shape translation beyond the objects, as ingress-nginx's controller flags
/// do: `run` and `explain` flatten this one definition, so `explain` translates as the daemon
/// does (a flag added here is on both, [`TranslationArgs::apply`]).
#[derive(Clone, Debug, clap::Args)]
pub struct TranslationArgs {
    /// IngressClass name matched by `ingressClassName` (without an IngressClass object) and by
    /// the legacy `kubernetes.io/ingress.class` annotation.
    #[arg(long, default_value = DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,
    /// `spec.controller` value of our IngressClasses, and `spec.controllerName` of our
    /// GatewayClasses.
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Also serve Ingresses that name no class.
    #[arg(long)]
    pub watch_ingress_without_class: bool,
    /// IngressClass name (ingressClassName or the legacy annotation) whose Ingresses also get
    /// ingress-nginx's unasked-for behaviours, such as the 301 from `/foo` to a path written
    /// `/foo/` (see deploy/docs/migrate-from-ingress-nginx.md); repeatable or comma-separated.
    /// Other classes keep the Ingress API's behaviour; an empty value names none. Annotations
    /// mean what ingress-nginx says in every class.
    #[arg(long = "nginx-compatible-class", value_delimiter = ',', default_value = crate::model::translate::compat::DEFAULT_COMPATIBLE_CLASS)]
    pub nginx_compatible_classes: Vec<String>,
    /// Serve endpoints on loopback and on this node's own addresses (refused by default: they
    /// let an EndpointSlice reach services bound to the node). For hostNetwork backends on this
    /// node, or a manifest directory pointing at apps on loopback, when every EndpointSlice is
    /// trusted. Link-local, unspecified, multicast and broadcast addresses stay refused.
    #[arg(long)]
    pub allow_node_local_endpoints: bool,
    /// The ingress-nginx controller ConfigMap (NAMESPACE/NAME), watched from the API and also
    /// read from the manifest directory: its keys (`use-forwarded-headers`, `hsts`,
    /// `proxy-body-size`, ...) override the flags of the same names and are the defaults
    /// Ingress annotations override; changes apply without a restart. See
    /// deploy/docs/migrate-from-ingress-nginx.md for every key.
    #[arg(long, value_parser = parse_key)]
    pub configmap: Option<Key>,
    /// Serve the rest of an Ingress that carries snippet annotations (`configuration-snippet`,
    /// `server-snippet`, `auth-snippet`, `stream-snippet`, `modsecurity-snippet`). Snippets are
    /// never interpreted; by default such an Ingress is not served at all, since a snippet
    /// may carry a deny or auth rule that serving without it would drop. The ConfigMap key
    /// `allow-snippet-annotations` overrides this flag.
    #[arg(long)]
    pub serve_ingresses_with_snippets: bool,
    /// ingress-nginx's `--disable-catch-all`: an Ingress with `spec.defaultBackend` is not
    /// served at all (its rules neither), with an Error diagnostic; updating an Ingress to
    /// have one takes its routes away. Requests for hosts no rule names then get
    /// `--default-backend-service` (else the built-in 404).
    #[arg(long)]
    pub disable_catch_all: bool,
    /// ingress-nginx's `--default-backend-service` (NAMESPACE/NAME): the Service (its first
    /// port, ready endpoints) that answers requests for hosts no rule names (unless a
    /// catch-all Ingress, `spec.defaultBackend` without rules, does), every host's unmatched
    /// paths (unless the host's first Ingress has a `spec.defaultBackend`), and
    /// `custom-http-errors` of Ingresses without a `default-backend` annotation. Without it,
    /// or while the Service is missing or has no ready endpoint (a Warning says so), those
    /// requests get the built-in 404.
    #[arg(long, value_parser = parse_key, value_name = "NAMESPACE/NAME")]
    pub default_backend_service: Option<Key>,
    /// ingress-nginx's `--enable-ssl-passthrough`: TLS connections on the HTTPS port whose SNI
    /// names the host of an Ingress annotated `ssl-passthrough: "true"` are passed, untouched,
    /// to the pods of its `/` path (they terminate TLS); every other connection is terminated
    /// here as usual. Off by default, as in ingress-nginx: TLS to such a host is then
    /// terminated here, with a warning.
    #[arg(long)]
    pub enable_ssl_passthrough: bool,
    /// ingress-nginx's `--disable-svc-external-name`: Ingress backends whose Service is of
    /// type ExternalName get no upstream (503, with an Error diagnostic on the Ingress)
    /// instead of being proxied to the Service's `externalName`.
    #[arg(long)]
    pub disable_svc_external_name: bool,
}

impl TranslationArgs {
    /// Sets the fields of `config` these flags decide.
    pub fn apply(&self, config: &mut TranslateConfig) {
        config.controller_name.clone_from(&self.controller_name);
        config.ingress_class.clone_from(&self.ingress_class);
        config.watch_without_class = self.watch_ingress_without_class;
        config.allow_node_local_endpoints = self.allow_node_local_endpoints;
        config
            .nginx_compatible_classes
            .clone_from(&self.nginx_compatible_classes);
        config.configmap.clone_from(&self.configmap);
        config.serve_ingresses_with_snippets = self.serve_ingresses_with_snippets;
        config.disable_catch_all = self.disable_catch_all;
        config.default_backend_service = self.default_backend_service.clone();
        config.enable_ssl_passthrough = self.enable_ssl_passthrough;
        config.disable_svc_external_name = self.disable_svc_external_name;
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct SourceArgs {
    /// Directory of Kubernetes manifests (multi-document YAML) to serve; watched for changes.
    #[arg(long, env = "XDP_INGRESS_MANIFESTS")]
    pub manifests: Option<PathBuf>,
    /// Also serve the embedded demo manifests (NodePort `echo`, Ingresses `echo`, `secure`, default backend).
    #[arg(long)]
    pub default_manifests: bool,
    /// Watch the Kubernetes API (in-cluster config unless --kubeconfig is given). Implied by
    /// --kubeconfig, and inside a pod when neither --manifests nor --default-manifests is given.
    #[arg(long)]
    pub kube: bool,
    /// Kubeconfig file for the Kubernetes API source.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Read Secrets (TLS certificates, basic-auth users) and ConfigMaps (those `custom-headers`
    /// names) only in these namespaces (comma-separated) and the --configmap one, namespaced
    /// watches each, so the RBAC needs namespaced Roles there instead of cluster-wide access. An
    /// Ingress whose TLS Secret is elsewhere gets a `TlsSecretNotWatched` diagnostic and the
    /// default certificate; one whose `auth-secret` is elsewhere, `AuthSecretNotWatched` and
    /// 503. Default: every namespace (or --namespace).
    #[arg(long, value_delimiter = ',', value_parser = parse_namespace)]
    pub secret_namespaces: Vec<String>,
    /// The flags that shape translation (class, ConfigMap, compatibility, passthrough...).
    #[command(flatten)]
    pub translation: TranslationArgs,
    /// The ingress's own Service (NAMESPACE/NAME); its endpoints are the node proxies.
    #[arg(long)]
    pub ingress_service: Option<String>,
    /// TLS Secret (NAMESPACE/NAME) for handshakes that match no Ingress host.
    #[arg(long)]
    pub default_ssl_certificate: Option<String>,
    /// This node's name (locality, status addresses).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Addresses written to Ingress `status.loadBalancer` instead of node addresses (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub publish_address: Vec<String>,
    /// `--gateway-address-pool` (`explain` takes the same flag).
    #[command(flatten)]
    pub gateway_pool: GatewayPoolArgs,
    /// Per-source new-connection (TCP SYN) rate limit, SYNs per second (0 to 1000000; 0, the
    /// default: none), enforced in XDP on the proxy's own HTTP and HTTPS listeners on the
    /// node's addresses and on the ingress's own Service (`--ingress-service`, whose own
    /// `xdp-ingress.dev/syn-rate-limit` annotations win there). Excess SYNs are dropped at the
    /// NIC and counted (`drop_syn_rate_limit`); a source is an IPv4 address or an IPv6 /64.
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::model::translate::syn_limit::MAX_SYN_RATE)))]
    pub syn_rate_limit_per_source: u32,
    /// SYNs a source may send at once under `--syn-rate-limit-per-source` (1 to 1000000;
    /// default: 5 times the rate).
    #[arg(long,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::model::translate::syn_limit::MAX_SYN_RATE)))]
    pub syn_rate_limit_burst: Option<u32>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "xdp-ingress-leader")]
    pub election_id: String,
    /// This replica's identity in the election (default: node name, else host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Do not write Ingress status or Events even when leader.
    #[arg(long)]
    pub no_status: bool,
}

impl SourceArgs {
    /// `--kube` or `--kubeconfig`; and in a pod (the API server's env is set) unless a
    /// manifest source was chosen instead.
    pub fn kube_enabled(&self) -> bool {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        self.kube
            || self.kubeconfig.is_some()
            || (in_cluster && self.manifests.is_none() && !self.default_manifests)
    }

    pub fn translate_config(&self) -> Result<TranslateConfig, String> {
        let mut config = TranslateConfig {
            ingress_service: self.ingress_service.as_deref().map(parse_key).transpose()?,
            node_name: self.node_name.clone(),
            default_tls_secret: self
                .default_ssl_certificate
                .as_deref()
                .map(parse_key)
                .transpose()?,
            publish_addresses: self.publish_address.clone(),
            // Filled by `run` from the host's interfaces (I/O stays at the edge).
            node_addresses: Vec::new(),
            secret_namespaces: self.secret_namespaces(),
            proxy_syn_rate_limit: crate::model::translate::syn_limit::limit(
                self.syn_rate_limit_per_source,
                self.syn_rate_limit_burst,
            ),
            // `run` sets the ports the proxy bound.
            gateway_ports: Default::default(),
            gateway_address_pool: crate::model::translate::gateway::addresses::AddressPool {
                ranges: self.gateway_pool.gateway_address_pool.clone(),
            },
            ..TranslateConfig::default()
        };
        self.translation.apply(&mut config);
        Ok(config)
    }

    /// The namespaces whose TLS Secrets are read, sorted; `None` for all (then `--namespace`,
    /// if set, limits them like every namespaced kind).
    pub fn secret_namespaces(&self) -> Option<Vec<String>> {
        if self.secret_namespaces.is_empty() {
            return None;
        }
        let mut v = self.secret_namespaces.clone();
        v.sort();
        v.dedup();
        Some(v)
    }

    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| self.node_name.clone())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| format!("xdp-ingress-{}", std::process::id()))
    }
}

/// A namespace name (RFC 1123 label, as Kubernetes requires).
fn parse_namespace(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a namespace name"))
}

/// `NAMESPACE/NAME`.
pub fn parse_key(s: &str) -> Result<Key, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Key::new(ns, name))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}
