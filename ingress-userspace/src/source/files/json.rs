//! A manifest file that is one JSON document (as `kubectl get -o json` writes), parsed straight
//! into the store's types: no `serde_json::Value` of the whole text first (issue 13: at 10k
//! Ingresses the cold start was mostly building and dropping those values).
//!
//! A JSON object names its kind anywhere among its members, usually second after
//! `apiVersion`. The members before `kind` are read as values and kept; once the kind is
//! known they are handed to its type followed by the members still in the text. A `List`'s
//! `items` are read one object at a time the same way. The objects and errors are those the
//! value path ([`super::collect`]) gives: anything but an object with a `kind` the store holds
//! is skipped, a type error names its document and kind, a syntax error is `Json`.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess, Visitor,
    value::MapAccessDeserializer,
};
use serde_json::{Value, error::Category};

use super::{ManifestError, collect, decode, named};
use crate::store::Object;

/// The objects of `text`, one JSON document (all or nothing).
pub(super) fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    let mut failed = Failed::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Doc {
        out: &mut out,
        failed: &mut failed,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match parsed {
        Ok(()) => Ok(out),
        Err(e) => Err(failed.into_error(e)),
    }
}

/// What the deserializer's error does not say about a failure.
#[derive(Default)]
struct Failed {
    /// The kind of the object last handed to its type.
    kind: Option<String>,
    /// A failure that is not the deserializer's (an object without a name).
    ours: Option<ManifestError>,
}

impl Failed {
    fn into_error(self, e: serde_json::Error) -> ManifestError {
        if let Some(ours) = self.ours {
            return ours;
        }
        match (self.kind, e.classify()) {
            // Only an object's type refuses well-formed JSON here: the rest reads any value.
            (Some(kind), Category::Data) => ManifestError::Object {
                index: 0,
                kind,
                source: e,
            },
            _ => ManifestError::Json(e),
        }
    }

    /// Keeps `e` and gives the error that stops the parse.
    fn ours<E: de::Error>(&mut self, e: ManifestError) -> E {
        let stop = E::custom(&e);
        self.ours = Some(e);
        stop
    }
}

/// Values that are not objects have no kind: skipped, as the value path skips them.
macro_rules! skip_non_objects {
    () => {
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
    };
}

/// One document (or `List` item): its objects go to `out`.
struct Doc<'a> {
    out: &'a mut Vec<Object>,
    failed: &'a mut Failed,
}

impl<'de> DeserializeSeed<'de> for Doc<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Doc<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }
    skip_non_objects!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut before = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            let is_kind = key == "kind";
            before.push((key, value));
            if is_kind {
                let kind = before[before.len() - 1].1.as_str().unwrap_or_default();
                return self.object(kind.to_string(), before, map);
            }
        }
        // No kind: skipped.
        Ok(())
    }
}

impl Doc<'_> {
    /// The object of `kind` whose members `before` were read, the rest still in `map`.
    fn object<'de, A: MapAccess<'de>>(
        self,
        kind: String,
        before: Vec<(String, Value)>,
        mut map: A,
    ) -> Result<(), A::Error> {
        if kind == "List" {
            return self.list(before, map);
        }
        self.failed.kind = Some(kind.clone());
        let members = MapAccessDeserializer::new(Chain {
            before: before.into_iter(),
            pending: None,
            rest: &mut map,
        });
        let Some(object) = decode(&kind, members) else {
            tracing::debug!(kind, "manifest kind not read; skipped");
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        named(object?, 0, kind, self.out).map_err(|e| self.failed.ours(e))
    }

    /// A `List`'s items, each an object of its own.
    fn list<'de, A: MapAccess<'de>>(
        self,
        before: Vec<(String, Value)>,
        mut map: A,
    ) -> Result<(), A::Error> {
        // `items` written before `kind` is a value already: read as the value path reads it.
        for (key, value) in before {
            if let ("items", Value::Array(items)) = (key.as_str(), value) {
                for item in items {
                    collect(item, 0, self.out).map_err(|e| self.failed.ours(e))?;
                }
            }
        }
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(Items(Doc {
                    out: &mut *self.out,
                    failed: &mut *self.failed,
                }))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A `List`'s `items`: an array of documents (anything else is skipped, as the value path does).
struct Items<'a>(Doc<'a>);

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a List's items")
    }
    skip_non_objects!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Doc { out, failed } = self.0;
        while seq
            .next_element_seed(Doc {
                out: &mut *out,
                failed: &mut *failed,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// An object's members: those read before its `kind` (as values), then the rest of `rest`.
struct Chain<'m, A> {
    before: std::vec::IntoIter<(String, Value)>,
    /// The value of the member whose key was given last, if it was one of `before`.
    pending: Option<Value>,
    rest: &'m mut A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Chain<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.before.next() {
            Some((key, value)) => {
                self.pending = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some(value) => seed.deserialize(value).map_err(de::Error::custom),
            None => self.rest.next_value_seed(seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` through this parse and through the value path: the same objects, or errors
    /// with the same text up to the position this parse adds.
    fn same_as_values(text: &str) -> Result<Vec<Object>, String> {
        let direct = parse(text);
        let value: Value = serde_json::from_str(text).unwrap();
        let mut via = Vec::new();
        let via = collect(value, 0, &mut via).map(|()| via);
        match (direct, via) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                Ok(a)
            }
            (Err(a), Err(b)) => {
                let (a, b) = (a.to_string(), b.to_string());
                assert!(a.starts_with(&b), "{a} / {b}");
                Err(a)
            }
            (a, b) => panic!("{text}: {a:?} / {b:?}"),
        }
    }

    #[test]
    fn objects_are_those_of_the_value_path() {
        let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","annotations":{"xdp-ingress.dev/l4-acceleration":"true"}},"spec":{"ports":[{"port":80}]}}"#;
        assert_eq!(same_as_values(svc).unwrap().len(), 1);
        // `kind` first, last, and after members that are objects.
        let kind_last = r#"{"metadata":{"name":"a","namespace":"n"},"spec":{"rules":[{"host":"a.example.com"}]},"apiVersion":"networking.k8s.io/v1","kind":"Ingress"}"#;
        assert_eq!(same_as_values(kind_last).unwrap().len(), 1);
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{}},"items":[{svc},{kind_last},
            {{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"d"}},"spec":{{"x":[1,{{}}]}}}},
            null,3,"s",[1],{{"no":"kind"}},
            {{"kind":"List","items":[{svc}]}},{{"kind":"List","items":{{"a":1}}}}]}}"#
        );
        assert_eq!(same_as_values(&list).unwrap().len(), 3);
        // `items` before `kind`.
        let items_first = format!(r#"{{"items":[{svc}],"kind":"List"}}"#);
        assert_eq!(same_as_values(&items_first).unwrap().len(), 1);
        for nothing in [
            "null",
            "[]",
            "3",
            r#"{"kind":5}"#,
            r#"{"a":{"kind":"Service"}}"#,
        ] {
            assert_eq!(same_as_values(nothing).unwrap(), []);
        }
        let secret = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"},"data":{"a":"b24="},"stringData":{"b":"x"}}"#;
        let Object::Secret(s) = &same_as_values(secret).unwrap()[0] else {
            panic!("not a Secret")
        };
        assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(s.data.as_ref().unwrap()["b"].0, b"x");
    }

    #[test]
    fn errors_are_those_of_the_value_path() {
        let e = same_as_values(
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":3}}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("document 0: Service does not parse: "), "{e}");
        // A type error in a member read before the kind.
        let e = same_as_values(
            r#"{"spec":{"ports":3},"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("document 0: Service does not parse: "), "{e}");
        let e = same_as_values(
            r#"{"kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e, "document 0: Service has no metadata.name");
        let e = same_as_values(r#"{"apiVersion":"v2","kind":"Service","metadata":{"name":"a"}}"#)
            .unwrap_err();
        assert!(e.starts_with("document 0: Service does not parse: "), "{e}");
        // Syntax errors, inside an object and after the document.
        for text in [
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[}}"#,
            r#"{"kind":"Node","metadata":{"name":"a"}} x"#,
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("JSON does not parse: "), "{e}");
            assert!(e.contains("line 1 column"), "{e}");
        }
    }
}
