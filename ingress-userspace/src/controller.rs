//! The control loop: source events -> store -> debounced translation -> one snapshot applied to
//! every plane, then published on a watch channel (status writer, `explain`, tests).
//!
//! An event that arrives alone is translated at once. Events that keep coming (queued behind
//! one another) are folded into one translation once `debounce` passes without another (but
//! at most `max_delay` after the first). A plane that fails to apply keeps what it had; the others
//! still move on. Event-to-live latency (from the first event of a batch to the last plane
//! returning) is recorded for every snapshot.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus_client::{
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info};

use crate::{
    model::{
        Snapshot,
        translate::{Changed, Translator},
    },
    source::SourceEvent,
    store::Store,
};

#[derive(Debug, thiserror::Error)]
#[error("{plane}: {message}")]
pub struct ApplyError {
    pub plane: String,
    pub message: String,
}

/// A plane that serves snapshots (the L7 proxy, the XDP maps, ...).
pub trait SnapshotSink: Send {
    fn name(&self) -> &str;
    /// Makes `snapshot` live. On error the plane must keep serving its previous snapshot.
    fn apply(&mut self, snapshot: &Arc<Snapshot>) -> Result<(), String>;
}

struct FnSink<F> {
    name: String,
    f: F,
}

impl<F> SnapshotSink for FnSink<F>
where
    F: FnMut(&Arc<Snapshot>) -> Result<(), String> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn apply(&mut self, snapshot: &Arc<Snapshot>) -> Result<(), String> {
        (self.f)(snapshot)
    }
}

/// A sink from a closure, e.g. `sink("l7", move |s| { proxy.apply(s.clone()); Ok(()) })`.
pub fn sink<F>(name: &str, f: F) -> Box<dyn SnapshotSink>
where
    F: FnMut(&Arc<Snapshot>) -> Result<(), String> + Send + 'static,
{
    Box::new(FnSink {
        name: name.to_string(),
        f,
    })
}

#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Quiet time that ends a batch of events that keep coming (a lone event does not wait).
    pub debounce: Duration,
    /// Longest a batch may wait after its first event.
    pub max_delay: Duration,
    /// Prometheus metrics to update (register them with [`ControlMetrics::register`]).
    pub metrics: Option<ControlMetrics>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            debounce: Duration::from_millis(20),
            max_delay: Duration::from_millis(250),
            metrics: None,
        }
    }
}

/// Label of `xdp_ingress_control_unsupported_annotations`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AnnotationLabels {
    pub annotation: String,
}

/// Prometheus metrics of the control loop (cheap clones of shared counters).
#[derive(Clone, Debug)]
pub struct ControlMetrics {
    pub source_events: Counter,
    pub snapshots: Counter,
    pub apply_errors: Counter,
    pub snapshot_version: Gauge,
    pub diagnostics: Gauge,
    /// Owned Ingresses carrying each annotation nothing acts on (by name without prefix).
    pub unsupported_annotations: Family<AnnotationLabels, Gauge>,
    pub translate_seconds: Histogram,
    pub event_to_live_seconds: Histogram,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics::new()
    }
}

impl ControlMetrics {
    pub fn new() -> ControlMetrics {
        ControlMetrics {
            source_events: Counter::default(),
            snapshots: Counter::default(),
            apply_errors: Counter::default(),
            snapshot_version: Gauge::default(),
            diagnostics: Gauge::default(),
            unsupported_annotations: Family::default(),
            translate_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            event_to_live_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }

    /// Adds the metrics to `registry` (under its prefix, e.g. `xdp_ingress_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("control");
        r.register(
            "source_events",
            "Object changes received from the sources",
            self.source_events.clone(),
        );
        r.register(
            "snapshots",
            "Snapshots translated and applied",
            self.snapshots.clone(),
        );
        r.register(
            "apply_errors",
            "Snapshots a plane failed to apply (it kept the previous one)",
            self.apply_errors.clone(),
        );
        r.register(
            "snapshot_version",
            "Version of the live snapshot",
            self.snapshot_version.clone(),
        );
        r.register(
            "diagnostics",
            "Diagnostics in the live snapshot",
            self.diagnostics.clone(),
        );
        r.register(
            "unsupported_annotations",
            "Ingresses of this class carrying an annotation that is ignored (not yet implemented, \
             refused, snippet or unknown), by annotation name without prefix",
            self.unsupported_annotations.clone(),
        );
        r.register(
            "translate_seconds",
            "Time to translate the store into a snapshot",
            self.translate_seconds.clone(),
        );
        r.register(
            "event_to_live_seconds",
            "From a source event arriving to its snapshot being live in every plane",
            self.event_to_live_seconds.clone(),
        );
    }
}

/// What the loop measured, shared with metrics and tests.
#[derive(Clone, Debug, Default)]
pub struct LoopStats {
    pub snapshots: u64,
    pub events: u64,
    pub apply_errors: u64,
    pub last_translate: Duration,
    /// Recent event-to-live latencies (a ring of the last [`LATENCY_WINDOW`]).
    latencies: Vec<Duration>,
    next: usize,
}

pub const LATENCY_WINDOW: usize = 4096;

impl LoopStats {
    pub fn record_latency(&mut self, d: Duration) {
        if self.latencies.len() < LATENCY_WINDOW {
            self.latencies.push(d);
        } else {
            self.latencies[self.next] = d;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    /// `p` in 0..=100 over the recent window; `None` before the first snapshot.
    pub fn latency_percentile(&self, p: f64) -> Option<Duration> {
        let mut v = self.latencies.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(idx.min(v.len() - 1)).copied()
    }
}

/// The running loop: where sources send, where snapshots come out.
pub struct ControlLoop {
    pub events: mpsc::Sender<SourceEvent>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub stats: Arc<Mutex<LoopStats>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the loop. It ends when every event sender is dropped.
pub fn spawn(
    translator: Translator,
    sinks: Vec<Box<dyn SnapshotSink>>,
    config: LoopConfig,
) -> ControlLoop {
    let (events, rx) = mpsc::channel(1024);
    let (tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let stats = Arc::new(Mutex::new(LoopStats::default()));
    let task = tokio::spawn(run(
        rx,
        Store::new(),
        translator,
        sinks,
        tx,
        stats.clone(),
        config,
    ));
    ControlLoop {
        events,
        snapshots,
        stats,
        task,
    }
}

/// Applies one event; true when the next snapshot may differ (an EndpointSlice or Secret that
/// nothing uses changes the store but not the snapshot). `changed` collects the Services whose
/// endpoints changed and the Ingresses that changed, and becomes `None` once anything else
/// changes.
fn apply(
    store: &mut Store,
    translator: &Translator,
    ev: SourceEvent,
    changed: &mut Option<Changed>,
) -> bool {
    let affects = match store.layer(ev.source) {
        Some(layer) => {
            if let Some(c) = changed.as_mut()
                && !c.add(layer, &ev.change)
            {
                *changed = None;
            }
            translator.affects(layer, &ev.change)
        }
        None => {
            *changed = None;
            true
        }
    };
    store.apply(ev.source, ev.change) && affects
}

async fn run(
    mut rx: mpsc::Receiver<SourceEvent>,
    mut store: Store,
    mut translator: Translator,
    mut sinks: Vec<Box<dyn SnapshotSink>>,
    tx: watch::Sender<Arc<Snapshot>>,
    stats: Arc<Mutex<LoopStats>>,
    config: LoopConfig,
) {
    let mut open = true;
    while open {
        let Some(ev) = rx.recv().await else { break };
        let mut first = ev.at;
        let mut count = 1u64;
        let mut what = Some(Changed::default());
        let mut changed = apply(&mut store, &translator, ev, &mut what);
        // A lone event goes live at once; only events that keep coming (already queued behind
        // it, e.g. while the last snapshot was being made) wait for a quiet `debounce`.
        let deadline = Instant::now() + config.max_delay;
        let mut burst = false;
        while Instant::now() < deadline
            && let Ok(ev) = rx.try_recv()
        {
            first = first.min(ev.at);
            count += 1;
            burst = true;
            changed |= apply(&mut store, &translator, ev, &mut what);
        }
        while burst && Instant::now() < deadline {
            let wait = config
                .debounce
                .min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(ev)) => {
                    first = first.min(ev.at);
                    count += 1;
                    changed |= apply(&mut store, &translator, ev, &mut what);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Ok(mut s) = stats.lock() {
            s.events += count;
        }
        if !changed {
            debug!(events = count, "no change in the store");
            continue;
        }
        // Off the async workers: a large translation must not stall the proxy's tasks.
        let (done, result) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let snapshot = translator.translate_changed(&store.view(), what.as_ref());
            let _ = done.send((store, translator, snapshot, t0.elapsed()));
            // What translating freed goes back to the OS (not into the high-water mark), after
            // the snapshot is on its way: this thread's heap is where that garbage is.
            crate::allocator::release_free_memory();
        });
        let (s, t, snapshot, translate_time) = match result.await {
            Ok(r) => r,
            Err(_) => {
                error!("translation panicked; control loop stops, planes keep their snapshot");
                return;
            }
        };
        (store, translator) = (s, t);
        // Planes apply off the async workers too: the XDP plane's map writes are syscalls (a
        // Maglev table is thousands), and the proxy's tasks must not wait behind them.
        let applying = Arc::clone(&snapshot);
        let (s, errors) = match tokio::task::spawn_blocking(move || {
            let mut errors = 0;
            for s in &mut sinks {
                if let Err(e) = s.apply(&applying) {
                    errors += 1;
                    error!(plane = s.name(), version = applying.version, error = %e, "plane kept its previous snapshot");
                }
            }
            (sinks, errors)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "a plane panicked; control loop stops, planes keep their snapshot");
                return;
            }
        };
        sinks = s;
        let latency = first.elapsed();
        info!(
            version = snapshot.version,
            hosts = snapshot.l7.host_count(),
            l4_services = snapshot.l4.len(),
            diagnostics = snapshot.diagnostics.len(),
            translate_us = translate_time.as_micros() as u64,
            event_to_live_us = latency.as_micros() as u64,
            "snapshot live"
        );
        let (version, diagnostics) = (snapshot.version, snapshot.diagnostics.len());
        if let Some(m) = &config.metrics {
            m.unsupported_annotations.clear();
            for (name, n) in &snapshot.unsupported_annotations {
                m.unsupported_annotations
                    .get_or_create(&AnnotationLabels {
                        annotation: name.clone(),
                    })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        // Freeing a large snapshot takes milliseconds: not on an async worker either.
        let old = tx.send_replace(snapshot);
        tokio::task::spawn_blocking(move || {
            drop(old);
            crate::allocator::release_free_memory();
        });
        if let Some(m) = &config.metrics {
            m.source_events.inc_by(count);
            m.snapshots.inc();
            m.apply_errors.inc_by(errors);
            m.snapshot_version
                .set(i64::try_from(version).unwrap_or(i64::MAX));
            m.diagnostics
                .set(i64::try_from(diagnostics).unwrap_or(i64::MAX));
            m.translate_seconds.observe(translate_time.as_secs_f64());
            m.event_to_live_seconds.observe(latency.as_secs_f64());
        }
        if let Ok(mut s) = stats.lock() {
            s.snapshots += 1;
            s.apply_errors += errors;
            s.last_translate = translate_time;
            s.record_latency(latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::translate::TranslateConfig,
        source::SourceEvent,
        store::{Change, SourceId},
    };

    #[tokio::test]
    async fn events_are_batched_and_applied_to_every_plane() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let ok = sink("ok", move |s| {
            s2.lock().unwrap().push(s.version);
            Ok(())
        });
        let failing = sink("failing", |_| Err("nope".into()));
        let metrics = ControlMetrics::new();
        let mut registry = Registry::with_prefix("xdp_ingress");
        metrics.register(&mut registry);
        let ctl = spawn(
            Translator::new(TranslateConfig::default()),
            vec![failing, ok],
            LoopConfig {
                metrics: Some(metrics),
                ..Default::default()
            },
        );
        let objects = crate::source::files::default_objects().unwrap();
        // Ten events in a burst: one translation.
        for _ in 0..10 {
            ctl.events
                .send(SourceEvent::new(
                    SourceId::Files,
                    Change::ReplaceAll(Box::new(objects.clone())),
                ))
                .await
                .unwrap();
        }
        let mut rx = ctl.snapshots.clone();
        rx.wait_for(|s| s.version == 1).await.unwrap();
        assert_eq!(rx.borrow().l4.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            [1],
            "the working plane got it despite the failing one"
        );
        let st = ctl.stats.lock().unwrap().clone();
        assert_eq!((st.snapshots, st.events, st.apply_errors), (1, 10, 1));
        assert!(st.latency_percentile(50.0).is_some());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("xdp_ingress_control_event_to_live_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("xdp_ingress_control_source_events_total 10"),
            "{text}"
        );
        assert!(
            text.contains("xdp_ingress_control_apply_errors_total 1"),
            "{text}"
        );
    }

    /// The XDP plane writes maps with syscalls: planes run on the blocking pool, not on the
    /// runtime's workers (this runtime has one, the test's own thread).
    #[tokio::test]
    async fn planes_apply_off_the_async_workers() {
        let worker = std::thread::current().id();
        let on = Arc::new(Mutex::new(None));
        let on2 = on.clone();
        let plane = sink("xdp", move |_| {
            *on2.lock().unwrap() = Some(std::thread::current().id());
            Ok(())
        });
        let ctl = spawn(
            Translator::new(TranslateConfig::default()),
            vec![plane],
            LoopConfig::default(),
        );
        let objects = crate::source::files::default_objects().unwrap();
        ctl.events
            .send(SourceEvent::new(
                SourceId::Files,
                Change::ReplaceAll(Box::new(objects)),
            ))
            .await
            .unwrap();
        let mut rx = ctl.snapshots.clone();
        rx.wait_for(|s| s.version == 1).await.unwrap();
        let applied_on = on.lock().unwrap().expect("the plane was applied");
        assert_ne!(applied_on, worker);
    }
}
