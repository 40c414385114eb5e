//! Rendering tests of the provisioning pages.
