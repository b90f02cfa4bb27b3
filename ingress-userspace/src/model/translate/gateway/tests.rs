//! Translation of Gateway API objects: expectations from the Gateway API v1 reference and the
//! conformance suite (conformance/tests/*.yaml of kubernetes-sigs/gateway-api).
