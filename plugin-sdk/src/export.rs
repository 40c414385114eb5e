//! The one macro a plugin calls.

/// Exports a type as a rulehost plugin offering the listed capabilities.
///
/// ```ignore
/// rulehost_sdk::export!(SupportContract: verifier, reconciler);
/// ```
///
/// Capabilities: `verifier`, `reconciler`, `plan_policy`, `session_charging`;
/// the type must implement the matching trait for each. The component exports
/// exactly these interfaces, plus `setup` (which every plugin exports), which
/// is how the host learns what the plugin offers. On targets other than wasm32 the macro expands to nothing that
/// runs, so the same crate builds natively for `cargo test`.
#[macro_export]
macro_rules! export {
    ($ty:ty : $($capability:ident),+ $(,)?) => {
        // Every plugin exports `setup`: the host configures each instance
        // with its service and config before the first call.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RulehostSetup = $crate::__private::Setup;
            $crate::__private::setup_world::export!(
                RulehostSetup with_types_in $crate::__private::setup_world
            );
        };
        $( $crate::__export_capability!($capability, $ty); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_capability {
    (verifier, $ty:ty) => {
        // Checked on every target, so a native build catches a missing impl.
        const _: fn() = || {
            fn implements<T: $crate::Verifier>() {}
            implements::<$ty>();
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RulehostVerifierAdapter = $crate::__private::Adapter<$ty>;
            $crate::__private::verifier_world::export!(
                RulehostVerifierAdapter with_types_in $crate::__private::verifier_world
            );
        };
    };
    (reconciler, $ty:ty) => {
        // Checked on every target, so a native build catches a missing impl.
        const _: fn() = || {
            fn implements<T: $crate::Reconciler>() {}
            implements::<$ty>();
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RulehostReconcilerAdapter = $crate::__private::Adapter<$ty>;
            $crate::__private::reconciler_world::export!(
                RulehostReconcilerAdapter with_types_in $crate::__private::reconciler_world
            );
        };
    };
    (plan_policy, $ty:ty) => {
        // Checked on every target, so a native build catches a missing impl.
        const _: fn() = || {
            fn implements<T: $crate::PlanPolicy>() {}
            implements::<$ty>();
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RulehostPlanPolicyAdapter = $crate::__private::Adapter<$ty>;
            $crate::__private::plan_policy_world::export!(
                RulehostPlanPolicyAdapter with_types_in $crate::__private::plan_policy_world
            );
        };
    };
    (session_charging, $ty:ty) => {
        // Checked on every target, so a native build catches a missing impl.
        const _: fn() = || {
            fn implements<T: $crate::SessionCharging>() {}
            implements::<$ty>();
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type RulehostSessionChargingAdapter = $crate::__private::Adapter<$ty>;
            $crate::__private::session_charging_world::export!(
                RulehostSessionChargingAdapter with_types_in $crate::__private::session_charging_world
            );
        };
    };
    ($other:ident, $ty:ty) => {
        compile_error!(concat!(
            "unknown capability `",
            stringify!($other),
            "`: expected verifier, reconciler, plan_policy or session_charging"
        ));
    };
}
