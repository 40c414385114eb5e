//! Plugin call costs: a warm instance, a fresh instance per call, and the
//! same rule compiled natively (the `support-contract` crate itself), so the
//! ratio is the cost of the sandbox.

use std::hint::black_box;
use std::path::Path;

use criterion::Criterion;
use jiff::Timestamp;
use rulehost::contract::{
    Account, AccountStatus, Call, Context, Properties, ServiceRequest, VerifyInput,
};
use rulehost::runtime::{Binding, InstanceMode, Limits, Runtime, RuntimeOptions};
use rulehost_sdk::Verifier as _;

pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{} ({e}): run `cargo xtask plugins` first", path.display()))
}

fn inputs() -> (Context, Call) {
    let ctx = Context {
        service: "support-contract".into(),
        config: [("lapse_days", "10")].into_iter().collect::<Properties>(),
        now: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
    };
    let call = Call::Verify(VerifyInput {
        request: ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: "printer on fire".into(),
            attributes: Properties::default(),
        },
        account: Some(Account {
            id: "acme-1".into(),
            status: AccountStatus::Active,
            paid_up: true,
            tier: "standard".into(),
            contract_end: None,
            contact: None,
            attributes: Properties::default(),
        }),
    });
    (ctx, call)
}

fn native_inputs() -> (
    rulehost_sdk::types::Context,
    rulehost_sdk::types::ServiceRequest,
    rulehost_sdk::types::Account,
) {
    use rulehost_sdk::types as t;
    let ctx = t::Context::new("support-contract", 1_700_000_000).with_config("lapse_days", "10");
    let request = t::ServiceRequest {
        id: "r1".into(),
        account_id: "acme-1".into(),
        description: "printer on fire".into(),
        attributes: vec![],
    };
    let account = t::Account {
        id: "acme-1".into(),
        status: t::AccountStatus::Active,
        paid_up: true,
        tier: "standard".into(),
        contract_end: None,
        contact: None,
        attributes: vec![],
    };
    (ctx, request, account)
}

pub fn plugin_calls(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let plugin = runtime
        .load("support-contract", &plugin_bytes("support-contract"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (ctx, call) = inputs();

    let warm = Binding::new(plugin.clone(), Limits::default());
    c.bench_function("verify/warm-instance", |b| {
        b.iter(|| {
            warm.call(black_box(&ctx), black_box(&call))
                .map(|r| r.outcome)
        })
    });

    // The same rule and inputs on a plugin built for contract 0.1, which
    // passes the service and its config on every call.
    let v0_1 = runtime
        .load("contract-v0-1", &plugin_bytes("contract-v0-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let warm_v0_1 = Binding::new(v0_1, Limits::default());
    c.bench_function("verify/warm-instance-contract-0.1", |b| {
        b.iter(|| {
            warm_v0_1
                .call(black_box(&ctx), black_box(&call))
                .map(|r| r.outcome)
        })
    });

    // And on a plugin built for contract 0.2, configured once per instance
    // like 0.3's but with 0.2's bindings.
    let v0_2 = runtime
        .load("contract-v0-2", &plugin_bytes("contract-v0-2"))
        .unwrap_or_else(|e| panic!("{e}"));
    let warm_v0_2 = Binding::new(v0_2, Limits::default());
    c.bench_function("verify/warm-instance-contract-0.2", |b| {
        b.iter(|| {
            warm_v0_2
                .call(black_box(&ctx), black_box(&call))
                .map(|r| r.outcome)
        })
    });

    // The same call with the fewest strings the contract allows: each string
    // or list argument costs one allocation call into the guest.
    let minimal_ctx = Context {
        config: Properties::default(),
        ..ctx.clone()
    };
    let minimal_call = Call::Verify(VerifyInput {
        request: ServiceRequest {
            id: "r1".into(),
            account_id: "a".into(),
            description: String::new(),
            attributes: Properties::default(),
        },
        account: None,
    });
    c.bench_function("verify/warm-instance-minimal-input", |b| {
        b.iter(|| {
            warm.call(black_box(&minimal_ctx), black_box(&minimal_call))
                .map(|r| r.outcome)
        })
    });

    // And with 16 more strings (8 request attributes): the slope is what
    // each string argument costs.
    let Call::Verify(mut more) = call.clone() else {
        return;
    };
    for i in 0..8 {
        more.request
            .attributes
            .insert(format!("k{i}"), format!("v{i}"));
    }
    let more_strings = Call::Verify(more);
    c.bench_function("verify/warm-instance-16-more-strings", |b| {
        b.iter(|| {
            warm.call(black_box(&ctx), black_box(&more_strings))
                .map(|r| r.outcome)
        })
    });

    let fresh = Binding::new(
        plugin,
        Limits {
            instances: InstanceMode::Fresh,
            ..Limits::default()
        },
    );
    c.bench_function("verify/fresh-instance", |b| {
        b.iter(|| {
            fresh
                .call(black_box(&ctx), black_box(&call))
                .map(|r| r.outcome)
        })
    });

    let (nctx, request, account) = native_inputs();
    c.bench_function("verify/native-rust", |b| {
        b.iter(|| {
            support_contract::SupportContract::verify(
                black_box(&nctx),
                black_box(&request),
                Some(black_box(&account)),
            )
        })
    });
}
