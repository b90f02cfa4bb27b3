//! Collects per-object diagnostics during one translation.

use crate::model::{Diagnostic, ObjectRef, Severity};

#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn error(&mut self, object: &ObjectRef, reason: &str, message: impl Into<String>) {
        self.push(object, Severity::Error, reason, message.into());
    }

    pub fn info(&mut self, object: &ObjectRef, reason: &str, message: impl Into<String>) {
        self.push(object, Severity::Info, reason, message.into());
    }

    pub fn warn(&mut self, object: &ObjectRef, reason: &str, message: impl Into<String>) {
        self.push(object, Severity::Warning, reason, message.into());
    }

    fn push(&mut self, object: &ObjectRef, severity: Severity, reason: &str, message: String) {
        self.0.push(Diagnostic {
            object: object.clone(),
            severity,
            reason: reason.to_string(),
            message,
        });
    }

    /// Sorted and without duplicates (one bad backend used by many paths reports once).
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.0.sort();
        self.0.dedup();
        self.0
    }
}
