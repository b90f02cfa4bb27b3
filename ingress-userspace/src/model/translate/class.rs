//! Which Ingresses belong to this controller (IngressClass rules, as ingress-nginx applies them).
//!
//! In order: `spec.ingressClassName` names an IngressClass whose `spec.controller` is ours
//! (or, when no IngressClass of that name exists, equals `--ingress-class`); else the legacy
//! `kubernetes.io/ingress.class` annotation equals `--ingress-class` or one of our classes;
//! else (no class at all) one of our IngressClasses carries
//! `ingressclass.kubernetes.io/is-default-class: "true"`, or `--watch-ingress-without-class`.
//! Ingresses of other classes are ignored entirely: no routes, no diagnostics, no status.

use std::collections::{BTreeMap, BTreeSet};

use crate::compact::ingress::Ingress;

use super::{TranslateConfig, diagnostics::Diagnostics};
use crate::{
    model::{ObjectKind, ObjectRef},
    store::Objects,
};

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The IngressClasses that exist, reduced to what the ownership decision needs.
#[derive(Debug, Default)]
pub struct Classes {
    /// IngressClass name -> controller is ours.
    known: BTreeMap<String, bool>,
    ours: BTreeSet<String>,
    ours_is_default: bool,
}

impl Classes {
    pub fn new(objects: &Objects, cfg: &TranslateConfig) -> Classes {
        let mut c = Classes::default();
        for class in objects.ingress_classes.values() {
            let Some(name) = class.metadata.name.clone() else {
                continue;
            };
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            let mine = controller == Some(cfg.controller_name.as_str());
            if mine {
                let default = class
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
                c.ours_is_default |= default;
                c.ours.insert(name.clone());
            }
            c.known.insert(name, mine);
        }
        c
    }

    pub fn owns(&self, ingress: &Ingress, cfg: &TranslateConfig) -> bool {
        if let Some(name) = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
        {
            return match self.known.get(name) {
                Some(mine) => *mine,
                None => name == cfg.ingress_class,
            };
        }
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
        if let Some(value) = legacy {
            return *value == cfg.ingress_class || self.ours.contains(value);
        }
        self.ours_is_default || cfg.watch_without_class
    }
}

/// A Warning (`IngressClassNotOurs`, on the IngressClass) when `--ingress-class` names an
/// IngressClass whose `spec.controller` is another controller's: its Ingresses are that
/// controller's, so nothing of them is served here, which is never what naming the class asked
/// for. The usual case is a takeover from ingress-nginx (`--ingress-class nginx` beside the
/// IngressClass `nginx` of `k8s.io/ingress-nginx`): the message names the flag that serves them.
pub fn check_flag_class(objects: &Objects, cfg: &TranslateConfig, diags: &mut Diagnostics) {
    let Some(class) = objects
        .ingress_classes
        .values()
        .find(|c| c.metadata.name.as_deref() == Some(cfg.ingress_class.as_str()))
    else {
        return;
    };
    let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
    if controller == Some(cfg.controller_name.as_str()) {
        return;
    }
    let name = &cfg.ingress_class;
    let fix = match controller {
        Some(c) => format!("run with --controller-name {c} to serve them here"),
        None => "give it spec.controller".into(),
    };
    diags.warn(
        &ObjectRef::new(ObjectKind::IngressClass, "", name),
        "IngressClassNotOurs",
        format!(
            "IngressClass {name} (--ingress-class) names controller {}, not ours ({}): its \
             Ingresses are left to that controller and none is served; {fix}",
            controller.unwrap_or("(none)"),
            cfg.controller_name
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn class_rules() {
        let cfg = mk_config();
        struct Case {
            name: &'static str,
            classes: Vec<(&'static str, &'static str, bool)>,
            class_name: Option<&'static str>,
            legacy: Option<&'static str>,
            owned: bool,
        }
        let ours = "xdp-ingress.dev/controller";
        let cases = [
            Case {
                name: "class name, our controller",
                classes: vec![("fast", ours, false)],
                class_name: Some("fast"),
                legacy: None,
                owned: true,
            },
            Case {
                name: "class name, other controller",
                classes: vec![("nginx", "k8s.io/ingress-nginx", false)],
                class_name: Some("nginx"),
                legacy: None,
                owned: false,
            },
            Case {
                name: "class name without IngressClass object = --ingress-class",
                classes: vec![],
                class_name: Some("xdp-ingress"),
                legacy: None,
                owned: true,
            },
            Case {
                name: "class name without IngressClass object, other",
                classes: vec![],
                class_name: Some("nginx"),
                legacy: None,
                owned: false,
            },
            Case {
                name: "class name wins over legacy annotation",
                classes: vec![("nginx", "k8s.io/ingress-nginx", false)],
                class_name: Some("nginx"),
                legacy: Some("xdp-ingress"),
                owned: false,
            },
            Case {
                name: "legacy annotation ours",
                classes: vec![],
                class_name: None,
                legacy: Some("xdp-ingress"),
                owned: true,
            },
            Case {
                name: "legacy annotation naming our class",
                classes: vec![("fast", ours, false)],
                class_name: None,
                legacy: Some("fast"),
                owned: true,
            },
            Case {
                name: "legacy annotation other",
                classes: vec![("fast", ours, true)],
                class_name: None,
                legacy: Some("nginx"),
                owned: false,
            },
            Case {
                name: "no class, ours is default",
                classes: vec![("fast", ours, true)],
                class_name: None,
                legacy: None,
                owned: true,
            },
            Case {
                name: "no class, other is default",
                classes: vec![
                    ("fast", ours, false),
                    ("nginx", "k8s.io/ingress-nginx", true),
                ],
                class_name: None,
                legacy: None,
                owned: false,
            },
            Case {
                name: "no class, no default",
                classes: vec![],
                class_name: None,
                legacy: None,
                owned: false,
            },
        ];
        for c in cases {
            let mut objects = Objects::default();
            for (n, ctrl, default) in &c.classes {
                objects.upsert(mk_class(n, ctrl, *default));
            }
            let mut ing = mk_ingress("default", "web", 0, vec![]);
            ing.spec.get_or_insert_default().ingress_class_name = c.class_name.map(str::to_string);
            if let Some(l) = c.legacy {
                ing.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(LEGACY_CLASS_ANNOTATION.into(), l.into());
            }
            let classes = Classes::new(&objects, &cfg);
            assert_eq!(classes.owns(&ing, &cfg), c.owned, "{}", c.name);
        }
        let without = TranslateConfig {
            watch_without_class: true,
            ..mk_config()
        };
        let mut ing = mk_ingress("default", "web", 0, vec![]);
        ing.spec.get_or_insert_default().ingress_class_name = None;
        assert!(Classes::new(&Objects::default(), &without).owns(&ing, &without));
    }
}
