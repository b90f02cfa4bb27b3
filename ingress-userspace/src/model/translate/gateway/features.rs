//! What this implementation claims in its GatewayClasses' `status.supportedFeatures`
//! (Gateway API v1 `GatewayClassStatus.supportedFeatures`, read by the conformance suite
//! v1.3+ to know which tests apply): the feature names of the gateway-api repository's
//! `pkg/features/*.go`, only those whose conformance scenarios this repository's tests pass
//! (tests/l7_gateway.rs, tests/l7_tlsroute.rs and the translation tests). Left out on
//! purpose: mesh features, `HTTPRouteDestinationPortMatching`,
//! `HTTPRouteBackendURLRewrite` and `HTTPRouteBackendRequestRedirect` (a backendRef's own
//! filters other than header modifiers are not applied), `GatewayHTTPListenerIsolation`,
//! `GatewayInfrastructurePropagation` and `GatewayAddressEmpty` (not tested here),
//! `HTTPRouteRetryBackendTimeout` and `HTTPRouteRetryConnectionError` (not tested here).

/// Sorted in ascending order, as the spec requires of the list ("It MUST be sorted in
/// ascending alphabetical order by the Name key").
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "GRPCRouteRequestHeaderModifier",
    "Gateway",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
    "UDPRoute",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's order (ascending by name), no repeats, and at most the CRD's 64 items
    /// (`+kubebuilder:validation:MaxItems=64`).
    #[test]
    fn sorted_unique_and_within_the_crds_bound() {
        assert!(SUPPORTED_FEATURES.windows(2).all(|w| w[0] < w[1]));
        assert!(SUPPORTED_FEATURES.len() <= 64);
    }
}
