//! Generated bindings, private to the SDK: authors use the traits and types
//! re-exported from the crate root instead.
//!
//! Each export is generated from its own single-export world, so that a
//! plugin exports exactly the capabilities it implements (wit-component would
//! otherwise demand a definition for every export of one big world). The
//! first world, `setup`, defines the shared types and the `host` import; the
//! others reuse them with `with`.

pub mod setup_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "setup-plugin",
        pub_export_macro: true,
        default_bindings_module: "rulehost_sdk::__private::setup_world",
        additional_derives: [PartialEq],
    });
}

pub mod verifier_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "verifier-plugin",
        pub_export_macro: true,
        default_bindings_module: "rulehost_sdk::__private::verifier_world",
        with: {
            "rulehost:plugin/types@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::types,
            "rulehost:plugin/host@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::host,
        },
    });
}

pub mod reconciler_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "reconciler-plugin",
        pub_export_macro: true,
        default_bindings_module: "rulehost_sdk::__private::reconciler_world",
        with: {
            "rulehost:plugin/types@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::types,
            "rulehost:plugin/host@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::host,
        },
    });
}

pub mod plan_policy_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "plan-policy-plugin",
        pub_export_macro: true,
        default_bindings_module: "rulehost_sdk::__private::plan_policy_world",
        with: {
            "rulehost:plugin/types@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::types,
            "rulehost:plugin/host@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::host,
        },
    });
}

pub mod session_charging_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "session-charging-plugin",
        pub_export_macro: true,
        default_bindings_module: "rulehost_sdk::__private::session_charging_world",
        with: {
            "rulehost:plugin/types@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::types,
            "rulehost:plugin/host@0.3.0": crate::__private_bindings::setup_world::rulehost::plugin::host,
        },
    });
}
