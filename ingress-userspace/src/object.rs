//! What the whole pipeline names objects and their problems by: sources report a manifest
//! file that does not parse, the store keeps it, translation adds its own, and status and
//! `explain` show them. Below `store` and `model`, so that neither imports the other's types
//! against the pipeline's direction (the model re-exports these).

/// Which Kubernetes object something came from, for diagnostics, status and `explain`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ObjectKind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    Node,
    ConfigMap,
    /// Namespaces: only their labels, for Gateway `allowedRoutes` selectors.
    Namespace,
    GatewayClass,
    Gateway,
    HTTPRoute,
    GRPCRoute,
    ReferenceGrant,
    /// Gateway API L4 routes (served by the XDP path).
    TCPRoute,
    UDPRoute,
    /// Gateway API TLS passthrough routes (served by the proxy, by SNI).
    TLSRoute,
    BackendTLSPolicy,
    /// GEP-1713 (standard since Gateway API v1.5): more listeners for a Gateway.
    ListenerSet,
    /// A file of the manifest directory (name = path); for files that do not parse.
    ManifestFile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Severity {
    /// Nothing is wrong with what is ours: a note (an object left to another controller),
    /// logged at info level, never an Event.
    Info,
    /// The object works, but not fully as written (e.g. an unknown annotation value).
    Warning,
    /// The object, or part of it, is not served.
    Error,
}

/// A problem with one object. Only that object (or the part named) is affected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Diagnostic {
    pub object: ObjectRef,
    pub severity: Severity,
    /// CamelCase, as a Kubernetes Event reason (`ServiceNotFound`, `InvalidTlsSecret`, ...).
    pub reason: String,
    pub message: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{:?} {}", self.kind, self.name)
        } else {
            write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
