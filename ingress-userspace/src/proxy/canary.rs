//! The canary step of routing: whether a request to a route with a canary goes to the canary
//! backend or the main one, decided per request as ingress-nginx's `balancer.lua`
//! (`route_to_alternative_balancer`):
//!
//! 1. an affinity cookie naming a pod of the main backend → main;
//! 2. an affinity cookie naming a pod of the canary backend → canary;
//! 3. `canary-by-header`: with `canary-by-header-value`, exactly that value → canary; else with
//!    `canary-by-header-pattern`, a value the regex matches → canary; else `always` → canary,
//!    `never` → main; with a pattern that is not a regular expression, any value → main (Lua's
//!    failed `ngx.re.match`). Any other value, or no header, falls through;
//! 4. `canary-by-cookie`: `always` → canary, `never` → main, anything else falls through;
//! 5. the weight: canary with probability `min(weight, total) / total`.
//!
//! Steps 1–4 look only at the request, so `explain` shows them exactly; step 5 is a roll.
//!
//! Before all of them, [`without_endpoints`]: balancer.lua keeps no balancer for a backend
//! without endpoints (`sync_backend`), so with none on the main backend the canary is never
//! consulted (`get_balancer` returns nil: 503, or the route's `default-backend`), and with none
//! on the canary its share stays on the main backend (`route_to_alternative_balancer` finds no
//! alternative balancer).

use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;

use super::upstream::{balance::cookie_value, sticky};
use crate::model::{Canary, CanaryHeaderMatch, CanaryRule, ObjectRef, Upstream};

/// A route's canary, compiled once per snapshot, over upstream handles `U`.
#[derive(Debug)]
pub struct CompiledCanary<U> {
    /// The canary Ingress.
    pub object: ObjectRef,
    pub upstream: U,
    /// The canary backend as translation built it (endpoints and affinity, for step 2).
    pub spec: Arc<Upstream>,
    pub rule: CanaryRule,
    header: HeaderTest,
}

#[derive(Debug)]
enum HeaderTest {
    AlwaysNever,
    Exact(String),
    Regex(Regex),
    /// The pattern is not a regular expression: the header sends to the main backend.
    Invalid,
}

/// Which backend a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Main,
    Canary,
}

/// The step that decided (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// One of the two backends has no endpoints ([`without_endpoints`]).
    NoEndpoints,
    MainAffinity,
    CanaryAffinity,
    Header,
    Cookie,
    Weight,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub side: Side,
    pub step: Step,
}

impl<U> CompiledCanary<U> {
    /// Compiles `c`; the pattern was checked by translation, so an error here is a regex over
    /// the size limit.
    pub fn compile(
        c: &Canary,
        resolve: impl FnOnce(&Arc<Upstream>) -> U,
    ) -> Result<Self, regex::Error> {
        let header = match &c.rule.header_match {
            CanaryHeaderMatch::AlwaysNever => HeaderTest::AlwaysNever,
            CanaryHeaderMatch::Exact(v) => HeaderTest::Exact(v.clone()),
            CanaryHeaderMatch::Regex(r) => HeaderTest::Regex(Regex::new(r)?),
            CanaryHeaderMatch::InvalidRegex(_) => HeaderTest::Invalid,
        };
        Ok(CompiledCanary {
            object: c.object.clone(),
            upstream: resolve(&c.upstream),
            spec: Arc::clone(&c.upstream),
            rule: c.rule.clone(),
            header,
        })
    }

    /// Steps 1–4: the decision the request itself makes, if any. `main`: the route's main
    /// backend.
    pub fn by_request(&self, main: Option<&Upstream>, headers: &HeaderMap) -> Option<Decision> {
        let decided = |side, step| Some(Decision { side, step });
        if main.is_some_and(|m| affinitized(m, headers)) {
            return decided(Side::Main, Step::MainAffinity);
        }
        if affinitized(&self.spec, headers) {
            return decided(Side::Canary, Step::CanaryAffinity);
        }
        // nginx's `$http_name`: the first field of that name.
        let value = self
            .rule
            .header
            .as_deref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok());
        if let Some(v) = value {
            let side = match &self.header {
                HeaderTest::Exact(want) => (v == want).then_some(Side::Canary),
                HeaderTest::Regex(re) => re.is_match(v).then_some(Side::Canary),
                HeaderTest::AlwaysNever => always_never(v),
                HeaderTest::Invalid => Some(Side::Main),
            };
            if let Some(side) = side {
                return decided(side, Step::Header);
            }
        }
        let cookie = self
            .rule
            .cookie
            .as_deref()
            .and_then(|name| cookie_value(headers, name));
        if let Some(side) = cookie.and_then(always_never) {
            return decided(side, Step::Cookie);
        }
        None
    }

    /// Step 5, with `roll(total)` a uniform draw from `1..=total` (Lua's `math.random(total)`).
    pub fn by_weight(&self, roll: impl FnOnce(u32) -> u32) -> Decision {
        let total = self.rule.weight_total.max(1);
        let side = if self.rule.weight > 0 && roll(total) <= self.rule.weight {
            Side::Canary
        } else {
            Side::Main
        };
        Decision {
            side,
            step: Step::Weight,
        }
    }

    /// The whole decision, rolling for the weight when the request decides nothing.
    pub fn decide(&self, main: Option<&Upstream>, headers: &HeaderMap) -> Decision {
        self.by_request(main, headers)
            .unwrap_or_else(|| self.by_weight(|total| rand::random_range(1..=total)))
    }
}

/// The decision when the main backend or the canary backend has no endpoints: the main side
/// (module docs), before any step looks at the request. `main`, `canary`: the backends as the
/// current snapshot has them.
pub fn without_endpoints(main: &Upstream, canary: &Upstream) -> Option<Decision> {
    (main.endpoints.is_empty() || canary.endpoints.is_empty()).then_some(Decision {
        side: Side::Main,
        step: Step::NoEndpoints,
    })
}

fn always_never(v: &str) -> Option<Side> {
    match v {
        "always" => Some(Side::Canary),
        "never" => Some(Side::Main),
        _ => None,
    }
}

/// Whether the request carries an affinity cookie `up` issued (ingress-nginx's sticky
/// balancer `is_affinitized`: the cookie's backend part is this backend's, whether or not its
/// pod still exists).
pub fn affinitized(up: &Upstream, headers: &HeaderMap) -> bool {
    let Some(aff) = &up.affinity else {
        return false;
    };
    sticky::request_cookie(aff, headers)
        .and_then(|c| c.backend)
        .is_some_and(|b| b == sticky::backend_tag(&up.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CookieAffinity;
    use crate::proxy::fixtures::upstream_at;

    fn canary(rule: CanaryRule, up: Arc<Upstream>) -> CompiledCanary<()> {
        let c = Canary {
            object: ObjectRef::new(crate::model::ObjectKind::Ingress, "d", "c"),
            upstream: up,
            rule,
        };
        CompiledCanary::compile(&c, |_| ()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn side(c: &CompiledCanary<()>, main: &Upstream, h: &[(&str, &str)]) -> Option<(Side, Step)> {
        c.by_request(Some(main), &headers(h))
            .map(|d| (d.side, d.step))
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let main = upstream_at("main", &["10.0.0.1:80".parse().unwrap()]);
        let c = canary(
            CanaryRule {
                header: Some("x-canary".into()),
                cookie: Some("cn".into()),
                weight: 0,
                weight_total: 100,
                ..Default::default()
            },
            upstream_at("canary", &["10.0.0.2:80".parse().unwrap()]),
        );
        use {Side::*, Step::*};
        assert_eq!(
            side(&c, &main, &[("x-canary", "always")]),
            Some((Canary, Header))
        );
        assert_eq!(
            side(&c, &main, &[("x-canary", "never")]),
            Some((Main, Header))
        );
        // Header beats cookie; an unknown header value falls through to the cookie.
        let both = [("x-canary", "never"), ("cookie", "cn=always")];
        assert_eq!(side(&c, &main, &both), Some((Main, Header)));
        let other = [("x-canary", "maybe"), ("cookie", "a=1; cn=always")];
        assert_eq!(side(&c, &main, &other), Some((Canary, Cookie)));
        assert_eq!(
            side(&c, &main, &[("cookie", "cn=never")]),
            Some((Main, Cookie))
        );
        assert_eq!(side(&c, &main, &[("cookie", "cn=sometimes")]), None);
        assert_eq!(side(&c, &main, &[]), None);
        // Weight 0 never, weight ≥ total always; the roll is `1..=total`.
        assert_eq!(c.by_weight(|_| 1).side, Main);
        let mut w = canary(
            CanaryRule {
                weight: 20,
                weight_total: 100,
                ..Default::default()
            },
            upstream_at("canary", &[]),
        );
        assert_eq!(w.by_weight(|_| 20).side, Canary);
        assert_eq!(w.by_weight(|_| 21).side, Main);
        w.rule.weight = 500;
        assert_eq!(w.by_weight(|t| t).side, Canary);
    }

    #[test]
    fn header_value_and_pattern_replace_always_never() {
        let main = upstream_at("main", &[]);
        let up = upstream_at("canary", &[]);
        let exact = canary(
            CanaryRule {
                header: Some("x-region".into()),
                header_match: CanaryHeaderMatch::Exact("eu".into()),
                cookie: Some("cn".into()),
                ..Default::default()
            },
            up.clone(),
        );
        use {Side::*, Step::*};
        assert_eq!(
            side(&exact, &main, &[("x-region", "eu")]),
            Some((Canary, Header))
        );
        // `always`/`never` mean nothing with a value set; a mismatch falls through.
        assert_eq!(side(&exact, &main, &[("x-region", "always")]), None);
        let never = [("x-region", "never"), ("cookie", "cn=always")];
        assert_eq!(side(&exact, &main, &never), Some((Canary, Cookie)));
        let pattern = canary(
            CanaryRule {
                header: Some("x-region".into()),
                header_match: CanaryHeaderMatch::Regex("^(eu|us)-".into()),
                ..Default::default()
            },
            up,
        );
        assert_eq!(
            side(&pattern, &main, &[("x-region", "us-east")]),
            Some((Canary, Header))
        );
        assert_eq!(side(&pattern, &main, &[("x-region", "ap-east")]), None);
    }

    /// ingress-nginx's e2e test "should routes to mainline upstream when the given Regex causes
    /// error": pattern `[][**da?$&*`, header `DoCanary` and cookie `always` → main. The header
    /// decides before the cookie; without the header the cookie still does.
    #[test]
    fn an_invalid_pattern_sends_a_request_with_the_header_to_main() {
        let main = upstream_at("main", &[]);
        let broken = canary(
            CanaryRule {
                header: Some("canarybyheader".into()),
                header_match: CanaryHeaderMatch::InvalidRegex("[][**da?$&*".into()),
                cookie: Some("canarybycookie".into()),
                ..Default::default()
            },
            upstream_at("canary", &[]),
        );
        use {Side::*, Step::*};
        let both = [
            ("canarybyheader", "DoCanary"),
            ("cookie", "canarybycookie=always"),
        ];
        assert_eq!(side(&broken, &main, &both), Some((Main, Header)));
        assert_eq!(
            side(&broken, &main, &[("canarybyheader", "always")]),
            Some((Main, Header))
        );
        let cookie = [("cookie", "canarybycookie=always")];
        assert_eq!(side(&broken, &main, &cookie), Some((Canary, Cookie)));
    }

    #[test]
    fn affinity_cookie_keeps_a_client_on_its_side() {
        let aff = CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            mode: Default::default(),
            max_age: None,
            expires: None,
            path: None,
            domain: None,
            same_site: None,
            conditional_same_site_none: false,
            secure: false,
            change_on_failure: false,
        };
        let with_aff = |u: Arc<Upstream>| {
            let mut u = (*u).clone();
            u.affinity = Some(Box::new(aff.clone()));
            u
        };
        // One pod in both Services: the cookie's backend part, not its pod, decides.
        let pod = "10.0.0.1:80".parse().unwrap();
        let main = with_aff(upstream_at("main", &[pod]));
        let c = canary(
            CanaryRule {
                header: Some("x-canary".into()),
                ..Default::default()
            },
            Arc::new(with_aff(upstream_at("canary", &[pod]))),
        );
        use {Side::*, Step::*};
        let cookie = |key: &str, up: &Upstream| {
            format!("INGRESSCOOKIE={key}|{}", sticky::backend_tag(&up.id))
        };
        let to_main = cookie("0123456789abcdef", &main);
        let to_canary = cookie("0123456789abcdef", &c.spec);
        // Affinity comes first, even before `always`/`never` (balancer.lua).
        let h = [("cookie", to_main.as_str()), ("x-canary", "always")];
        assert_eq!(side(&c, &main, &h), Some((Main, MainAffinity)));
        let h = [("cookie", to_canary.as_str()), ("x-canary", "never")];
        assert_eq!(side(&c, &main, &h), Some((Canary, CanaryAffinity)));
        // A cookie without a backend part, or another backend's, decides nothing.
        assert_eq!(side(&c, &main, &[("cookie", "INGRESSCOOKIE=ffff")]), None);
        let other = format!("INGRESSCOOKIE=ffff|{}", sticky::backend_tag("x/y:80"));
        assert_eq!(side(&c, &main, &[("cookie", other.as_str())]), None);
    }
}
