//! `status.loadBalancer.ingress` of owned Ingresses: set to the snapshot's status addresses,
//! and removed from Ingresses that stop being ours. Only writes what differs from what this
//! leader last wrote; failures are retried on the next sync.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::model::{ObjectRef, Snapshot};

pub struct StatusWriter {
    client: kube::Client,
    written: BTreeMap<ObjectRef, Vec<String>>,
}

/// The `status.loadBalancer.ingress` list for `addresses` (IPs as `ip`, names as `hostname`).
pub fn load_balancer_ingress(addresses: &[String]) -> Value {
    Value::Array(
        addresses
            .iter()
            .map(|a| {
                if a.parse::<std::net::IpAddr>().is_ok() {
                    json!({"ip": a})
                } else {
                    json!({"hostname": a})
                }
            })
            .collect(),
    )
}

impl StatusWriter {
    pub fn new(client: kube::Client) -> StatusWriter {
        StatusWriter {
            client,
            written: BTreeMap::new(),
        }
    }

    /// Forget what was written (new leadership term): everything is written again.
    pub fn forget(&mut self) {
        self.written.clear();
    }

    pub async fn sync(&mut self, snapshot: &Snapshot) {
        let want = &snapshot.status_addresses;
        for r in snapshot.owned_ingresses.iter() {
            if self.written.get(r) == Some(want) {
                continue;
            }
            let patch =
                json!({"status": {"loadBalancer": {"ingress": load_balancer_ingress(want)}}});
            if self.patch(r, patch).await {
                self.written.insert(r.clone(), want.clone());
            }
        }
        let gone: Vec<ObjectRef> = self
            .written
            .keys()
            .filter(|r| snapshot.owned_ingresses.binary_search(r).is_err())
            .cloned()
            .collect();
        for r in gone {
            let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
            if self.patch(&r, patch).await {
                self.written.remove(&r);
            }
        }
    }

    /// True when done (or the Ingress no longer exists).
    async fn patch(&self, r: &ObjectRef, patch: Value) -> bool {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &r.namespace);
        match api
            .patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                debug!(ingress = %r, "status written");
                true
            }
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(e) => {
                warn!(ingress = %r, error = %e, "writing Ingress status failed; will retry");
                false
            }
        }
    }
}
