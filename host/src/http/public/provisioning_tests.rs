//! The provisioning pages on a real provisioning.
