//! The Kubernetes API source (kube-rs watchers). Filled in by the next commit.
