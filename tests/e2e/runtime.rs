//! The runtime on real components: hostile plugins are confined to their own
//! call, warm instances are reused and recycled, the contract is enforced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rulehost::contract::{
    Account, AccountStatus, Association, Billing, Call, Capability, Charge, Communication, Contact,
    Context, Failure, FailureCode, OnEventInput, Outcome, Participant, Plan, PlanAccount, PlanKind,
    Procedure, ProcedureInput, Properties, ResetInput, RestrictionInput, ServiceRequest, Session,
    SessionEvent, SessionEventAt, Usage, Verdict, VerifyInput,
};
use rulehost::runtime::{
    Binding, CallErrorKind, InstanceMode, Limits, LoadErrorKind, Runtime, RuntimeOptions,
};

use crate::support::{load, plugin_bytes, runtime};

fn ctx() -> Context {
    Context {
        service: "test".into(),
        config: Properties::default(),
        now: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
    }
}

fn verify_account() -> Account {
    Account {
        id: "acme-1".into(),
        status: AccountStatus::Active,
        paid_up: true,
        tier: "standard".into(),
        contract_end: None,
        contact: None,
        attributes: Properties::default(),
    }
}

fn verify_call(status: AccountStatus) -> Call {
    Call::Verify(VerifyInput {
        request: ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: Properties::default(),
        },
        account: Some(Account {
            status,
            ..verify_account()
        }),
    })
}

fn binding(runtime: &Runtime, name: &str) -> Binding {
    Binding::new(load(runtime, name), Limits::default())
}

#[allow(clippy::panic)] // a test helper: an unexpected answer fails the test
fn fault(binding: &Binding) -> (CallErrorKind, String, Duration) {
    let started = Instant::now();
    match binding.call(&ctx(), &verify_call(AccountStatus::Active)) {
        Ok(report) => panic!("expected a fault, got {:?}", report.outcome),
        Err(e) => (e.kind.clone(), e.to_string(), started.elapsed()),
    }
}

#[test]
fn sample_verifier_answers_on_a_warm_instance() {
    let rt = runtime();
    let b = binding(&rt, "support-contract");
    for _ in 0..5 {
        let report = b
            .call(&ctx(), &verify_call(AccountStatus::Active))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            report.outcome,
            Outcome::Verdict(Verdict::Pass {
                level: "standard".into()
            })
        );
    }
    assert_eq!(
        b.stats.instantiations.load(Ordering::Relaxed),
        1,
        "sequential calls reuse one warm instance"
    );
    assert_eq!(
        b.plugin().capabilities(),
        &[Capability::Verifier, Capability::Reconciler]
    );
}

#[test]
fn infinite_loop_times_out_within_the_limit_and_names_the_plugin() {
    let rt = runtime();
    let b = binding(&rt, "hostile-loop");
    let (kind, message, elapsed) = fault(&b);
    assert_eq!(
        kind,
        CallErrorKind::Timeout {
            limit: Duration::from_millis(50)
        }
    );
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    assert!(
        message.contains("hostile-loop")
            && message.contains("sha256:")
            && message.contains("timed out after 50 ms"),
        "{message}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let rt = runtime();
    let b = binding(&rt, "hostile-memory");
    let (kind, message, _) = fault(&b);
    assert_eq!(
        kind,
        CallErrorKind::MemoryLimit { limit: 16 << 20 },
        "{message}"
    );
    assert!(
        message.contains("exceeded its memory limit of 16 MiB"),
        "{message}"
    );
}

#[test]
fn panic_becomes_a_trap_carrying_the_panic_message() {
    let rt = runtime();
    let b = binding(&rt, "hostile-panic");
    let (kind, message, _) = fault(&b);
    assert!(matches!(kind, CallErrorKind::Trap(_)), "{kind:?}");
    assert!(
        message.contains("hostile plugin panicked on purpose"),
        "{message}"
    );
}

#[test]
fn oversize_output_is_refused() {
    let rt = runtime();
    let b = binding(&rt, "hostile-output");
    let (kind, message, _) = fault(&b);
    assert!(
        matches!(kind, CallErrorKind::OutputTooLarge { limit, .. } if limit == 1 << 20),
        "{message}"
    );
}

#[test]
fn a_plugin_for_another_contract_version_is_refused_naming_both() {
    let rt = runtime();
    let err = rt
        .load("hostile-contract", &plugin_bytes("hostile-contract"))
        .err();
    let err = err.unwrap_or_else(|| panic!("a 2.0.0 plugin was accepted"));
    assert!(matches!(err.kind, LoadErrorKind::ContractVersion { .. }));
    let message = err.to_string();
    assert!(
        message.contains("rulehost:plugin@2.0.0")
            && message.contains("this host serves rulehost:plugin@0.1.0, @0.2.0 and @0.3.0")
            && message.contains("rebuild it against rulehost-sdk 0.3"),
        "{message}"
    );
}

#[test]
fn a_plugin_built_for_contract_0_1_still_loads_and_gets_the_context_on_every_call() {
    let rt = runtime();
    let b = binding(&rt, "contract-v0-1");
    assert_eq!(b.plugin().contract().to_string(), "0.1.0");
    assert_eq!(b.plugin().capabilities(), &[Capability::Verifier]);
    for level in ["gold", "silver", "gold"] {
        let ctx = Context {
            config: [("level", level)].into_iter().collect(),
            ..ctx()
        };
        let report = b
            .call(&ctx, &verify_call(AccountStatus::Active))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            report.outcome,
            Outcome::Verdict(Verdict::Pass {
                level: level.into()
            })
        );
    }
    assert_eq!(b.stats.instantiations.load(Ordering::Relaxed), 1);
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

fn plan(id: &str, kind: PlanKind, config: &[(&str, &str)]) -> Plan {
    Plan {
        id: id.into(),
        kind,
        config: config.iter().copied().collect(),
        max_destinations: Some(3),
    }
}

/// Usage since 2026-11-16 with these (destination, uses) associations.
fn plan_usage(total_uses: u64, associations: &[(&str, u64)]) -> Usage {
    Usage {
        total_uses,
        recent_uses: vec![at("2026-11-20T12:00:00Z")],
        counters_since: at("2026-11-16T00:00:00Z"),
        associations: associations
            .iter()
            .map(|(destination, uses)| Association {
                destination: (*destination).into(),
                associated_at: at("2026-11-17T09:00:00Z"),
                uses: *uses,
                last_used: Some(at("2026-11-20T12:00:00Z")),
                expires_at: None,
            })
            .collect(),
    }
}

fn restriction_call(plan: Plan, balance: i64, total_uses: u64, start: &str) -> Call {
    Call::Restriction(RestrictionInput {
        plan,
        account: PlanAccount {
            id: "acme-1".into(),
            group: "retail".into(),
            billing: Billing::Prepaid,
            balance,
        },
        usage: plan_usage(total_uses, &[]),
        communication: Communication {
            id: "c1".into(),
            access_method: "08005550100".into(),
            access_groups: vec!["mobile".into(), "toll-free".into()],
            carrier: "telco".into(),
            destination: "4420794601".into(),
            region: "uk".into(),
            start: at(start),
            sequence: 4,
            attributes: Properties::default(),
        },
    })
}

fn outcome(b: &Binding, call: &Call) -> Outcome {
    b.call(&ctx(), call)
        .map(|r| r.outcome)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_plugin_built_for_contract_0_2_still_loads_and_serves_verify_restriction_and_reset() {
    let rt = runtime();
    let b = binding(&rt, "contract-v0-2");
    assert_eq!(b.plugin().contract().to_string(), "0.2.0");
    assert_eq!(
        b.plugin().capabilities(),
        &[Capability::Verifier, Capability::PlanPolicy]
    );
    let gold = Context {
        config: [("level", "gold")].into_iter().collect(),
        ..ctx()
    };
    let report = b
        .call(&gold, &verify_call(AccountStatus::Active))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.outcome,
        Outcome::Verdict(Verdict::Pass {
            level: "gold".into()
        })
    );

    // 0.2's restriction sees the account id and the first access group,
    // and its `option<string>` names no alternate.
    let three = plan("basic", PlanKind::PayAsYouGo, &[("max_uses", "3")]);
    assert_eq!(
        outcome(
            &b,
            &restriction_call(three.clone(), 0, 3, "2026-11-20T14:30:00Z")
        ),
        Outcome::Restriction {
            restricted: true,
            reason: Some("at most 3 uses of `basic` by acme-1 via mobile; 3 used".into()),
            alternate: None,
        }
    );
    assert_eq!(
        outcome(&b, &restriction_call(three, 0, 2, "2026-11-20T14:30:00Z")),
        Outcome::Restriction {
            restricted: false,
            reason: None,
            alternate: None,
        }
    );

    // 0.2's reset-due, asked once per association, makes one reset.
    let reset = |associations: &[(&str, u64)]| {
        outcome(
            &b,
            &Call::Reset(ResetInput {
                plan: plan(
                    "unlimited-5",
                    PlanKind::Unlimited,
                    &[("reset_after_destination_uses", "5")],
                ),
                usage: plan_usage(14, associations),
            }),
        )
    };
    assert_eq!(
        reset(&[("+441", 5), ("+442", 2), ("+443", 7)]),
        Outcome::Reset {
            reset: true,
            dissociate: vec!["+441".into(), "+443".into()],
            reset_counters: false,
            reason: String::new(),
        }
    );
    assert_eq!(
        reset(&[("+442", 2)]),
        Outcome::Reset {
            reset: false,
            dissociate: vec![],
            reset_counters: false,
            reason: String::new(),
        }
    );
}

#[test]
fn contract_0_3_plans_get_the_account_and_name_an_alternate_and_what_to_reset() {
    let rt = runtime();
    let b = binding(&rt, "prepaid-calling");
    assert_eq!(b.plugin().contract().to_string(), "0.3.0");
    assert_eq!(b.plugin().capabilities(), &[Capability::PlanPolicy]);
    let friday = plan(
        "friday-special",
        PlanKind::PayAsYouGo,
        &[
            ("window_day", "friday"),
            ("window_start", "14:00"),
            ("window_end", "16:00"),
            ("min_balance", "500"),
            ("alternate_plan", "standard"),
        ],
    );
    let restriction =
        |balance, start| outcome(&b, &restriction_call(friday.clone(), balance, 0, start));
    assert_eq!(
        restriction(1_000, "2026-11-20T14:30:00Z"),
        Outcome::Restriction {
            restricted: false,
            reason: None,
            alternate: None,
        }
    );
    assert_eq!(
        restriction(1_000, "2026-11-19T14:30:00Z"),
        Outcome::Restriction {
            restricted: true,
            reason: Some("usable only on Friday 14:00-16:00".into()),
            alternate: Some("standard".into()),
        }
    );
    assert_eq!(
        restriction(120, "2026-11-20T14:30:00Z"),
        Outcome::Restriction {
            restricted: true,
            reason: Some("the balance is 120, below the 500 this plan needs".into()),
            alternate: Some("standard".into()),
        }
    );

    let reset = Call::Reset(ResetInput {
        plan: plan(
            "unlimited-20",
            PlanKind::Unlimited,
            &[("reset_after_total_uses", "20")],
        ),
        usage: plan_usage(20, &[("+441", 12), ("+442", 8)]),
    });
    assert_eq!(
        outcome(&b, &reset),
        Outcome::Reset {
            reset: true,
            dissociate: vec!["+441".into(), "+442".into()],
            reset_counters: true,
            reason: "reset after 20 uses of the plan".into(),
        }
    );
}

#[test]
fn contract_0_3_sessions_end_with_charges_that_name_their_period() {
    let rt = runtime();
    let b = binding(&rt, "conference-split");
    assert_eq!(b.plugin().contract().to_string(), "0.3.0");
    let person = |id: &str, account: &str, joined: &str| Participant {
        id: id.into(),
        account_id: account.into(),
        joined_at: at(joined),
        attributes: [("role", "guest")].into_iter().collect(),
    };
    let call = Call::OnEvent(OnEventInput {
        session: Session {
            id: "conf-1".into(),
            started_at: at("2026-11-20T14:00:00Z"),
            last_event_at: at("2026-11-20T14:01:00Z"),
            attributes: [("topic", "review")].into_iter().collect(),
            participants: vec![
                person("p2", "acme-2", "2026-11-20T14:01:00Z"),
                person("p1", "acme-1", "2026-11-20T14:00:00Z"),
            ],
        },
        event: SessionEventAt {
            at: at("2026-11-20T14:02:30Z"),
            event: SessionEvent::End {},
        },
    });
    let charge = |participant: &str, account: &str, amount, description: &str| Charge {
        participant: participant.into(),
        account_id: account.into(),
        amount,
        description: description.into(),
        period_start: at("2026-11-20T14:01:00Z"),
        period_end: at("2026-11-20T14:02:30Z"),
    };
    assert_eq!(
        outcome(&b, &call),
        Outcome::Charges {
            charges: vec![
                charge(
                    "p1",
                    "acme-1",
                    8,
                    "90 s at 10/min among 2 participants: 8 of 15"
                ),
                charge(
                    "p2",
                    "acme-2",
                    7,
                    "90 s at 10/min among 2 participants: 7 of 15"
                ),
            ]
        }
    );
}

#[test]
fn a_warm_instance_is_configured_again_when_its_service_or_config_changes() {
    let rt = runtime();
    let b = binding(&rt, "support-contract");
    assert_eq!(b.plugin().contract().to_string(), "0.3.0");
    assert_eq!(
        rulehost_sdk::CONTRACT_VERSION,
        rulehost::contract::CURRENT_CONTRACT.to_string(),
        "the SDK builds for the newest contract the host serves"
    );
    let call = Call::Procedure(ProcedureInput {
        request: ServiceRequest {
            id: "r1".into(),
            account_id: "acme-1".into(),
            description: String::new(),
            attributes: Properties::default(),
        },
        failure: Failure {
            code: FailureCode::Expired,
            reason: "expired".into(),
        },
        account: Some(Account {
            contact: Some(Contact {
                name: "Ann".into(),
                email: "ann@example.com".into(),
            }),
            ..verify_account()
        }),
    });
    let lapse_after = |service: &str, days: &str| {
        let ctx = Context {
            service: service.into(),
            config: [("lapse_days", days)].into_iter().collect(),
            ..ctx()
        };
        match b.call(&ctx, &call).map(|r| r.outcome) {
            Ok(Outcome::Procedure(Procedure::Async(notice))) => Ok(notice.lapse_after),
            Ok(Outcome::Error { error }) => Err(error),
            other => panic!("expected a notice, got {other:?}"),
        }
    };
    const DAY: u64 = 86_400;
    assert_eq!(lapse_after("a", "3"), Ok(3 * DAY));
    assert_eq!(lapse_after("a", "3"), Ok(3 * DAY));
    assert_eq!(lapse_after("a", "5"), Ok(5 * DAY), "the config changed");
    assert_eq!(lapse_after("b", "5"), Ok(5 * DAY), "the service changed");
    let refused = lapse_after("b", "ten").unwrap_err();
    assert!(refused.contains("lapse_days"), "{refused}");
    assert_eq!(lapse_after("a", "3"), Ok(3 * DAY));
    assert_eq!(
        b.stats.instantiations.load(Ordering::Relaxed),
        1,
        "one instance served every config"
    );
}

#[test]
fn a_contract_0_3_plugin_without_setup_is_refused_saying_so() {
    let rt = runtime();
    let err = rt
        .load("hostile-no-setup", &plugin_bytes("hostile-no-setup"))
        .err();
    let err = err.unwrap_or_else(|| panic!("a plugin without `setup` was accepted"));
    assert!(matches!(err.kind, LoadErrorKind::Exports(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("must export `rulehost:plugin/setup@0.3.0`"),
        "{message}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let rt = runtime();
    let err = rt.load("garbage", b"\0asm not really").err();
    assert!(err.is_some_and(
        |e| matches!(e.kind, LoadErrorKind::Compile(_)) && e.to_string().contains("garbage")
    ));
}

#[test]
fn wasi_is_deny_all_and_output_goes_to_the_log() {
    let rt = runtime();
    let b = binding(&rt, "hostile-escape");
    let report = b
        .call(&ctx(), &verify_call(AccountStatus::Active))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.outcome,
        Outcome::Verdict(Verdict::Pass {
            level: "fs=denied env=denied dir=denied net=denied".into()
        })
    );
    let logs: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert!(logs.contains(&("info", "hello from log")), "{logs:?}");
    assert!(logs.contains(&("stdout", "hello from stdout")), "{logs:?}");
    assert!(logs.contains(&("stderr", "hello from stderr")), "{logs:?}");
}

#[test]
fn a_call_that_times_out_counts_as_slow_and_as_a_fault() {
    let rt = runtime();
    let b = binding(&rt, "hostile-loop");
    let call = verify_call(AccountStatus::Active);
    let timed_out = b.call(&ctx(), &call).unwrap_err();
    assert_eq!(
        timed_out.kind,
        CallErrorKind::Timeout {
            limit: Duration::from_millis(50)
        }
    );
    assert_eq!(b.stats.faults.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats.slow_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn a_fault_recycles_the_instance_and_the_next_call_still_works() {
    let rt = runtime();
    let looping = binding(&rt, "hostile-loop");
    let good = binding(&rt, "support-contract");
    let _ = fault(&looping);
    let _ = fault(&looping);
    assert_eq!(
        looping.stats.instantiations.load(Ordering::Relaxed),
        2,
        "a faulted instance is never reused"
    );
    assert_eq!(looping.stats.faults.load(Ordering::Relaxed), 2);
    assert_eq!(looping.idle_instances(), 0);
    assert!(
        good.call(&ctx(), &verify_call(AccountStatus::Active))
            .is_ok()
    );
}

#[test]
fn other_calls_keep_flowing_while_a_plugin_spins() {
    let rt = runtime();
    let looping = Arc::new(binding(&rt, "hostile-loop"));
    let good = Arc::new(binding(&rt, "support-contract"));
    let spinner = {
        let looping = looping.clone();
        std::thread::spawn(move || {
            (0..4)
                .filter(|_| {
                    looping
                        .call(&ctx(), &verify_call(AccountStatus::Active))
                        .is_err()
                })
                .count()
        })
    };
    let mut answered = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(150) {
        if good
            .call(&ctx(), &verify_call(AccountStatus::Expired))
            .is_ok()
        {
            answered += 1;
        }
    }
    assert_eq!(
        spinner.join().unwrap_or(0),
        4,
        "every spinning call timed out"
    );
    assert!(
        answered > 100,
        "only {answered} good calls answered while another plugin spun"
    );
}

#[test]
fn fresh_mode_instantiates_per_call() {
    let rt = runtime();
    let limits = Limits {
        instances: InstanceMode::Fresh,
        ..Limits::default()
    };
    let b = Binding::new(load(&rt, "support-contract"), limits);
    for _ in 0..3 {
        assert!(b.call(&ctx(), &verify_call(AccountStatus::Active)).is_ok());
    }
    assert_eq!(b.stats.instantiations.load(Ordering::Relaxed), 3);
    assert_eq!(b.idle_instances(), 0);
}

#[test]
fn warm_instances_are_recycled_after_max_calls() {
    let rt = runtime();
    let limits = Limits {
        max_calls_per_instance: 2,
        ..Limits::default()
    };
    let b = Binding::new(load(&rt, "support-contract"), limits);
    for _ in 0..5 {
        assert!(b.call(&ctx(), &verify_call(AccountStatus::Active)).is_ok());
    }
    assert_eq!(b.stats.instantiations.load(Ordering::Relaxed), 3);
}

#[test]
fn a_call_the_plugin_does_not_export_is_an_error_not_a_fault() {
    let rt = runtime();
    let b = binding(&rt, "conference-split");
    let (kind, message, _) = fault(&b);
    assert_eq!(kind, CallErrorKind::Unsupported(Capability::Verifier));
    assert!(message.contains("does not export `verifier`"), "{message}");
    assert_eq!(b.stats.instantiations.load(Ordering::Relaxed), 0);
}

#[test]
fn compiled_plugins_are_cached_by_digest() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    };
    let first = Runtime::new(options.clone()).unwrap_or_else(|e| panic!("{e}"));
    let plugin = load(&first, "support-contract");
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&plugin.digest().hex()), "{cached:?}");
    // A second runtime (a restart) loads from the cache and still answers.
    let second = Runtime::new(options).unwrap_or_else(|e| panic!("{e}"));
    let again = load(&second, "support-contract");
    assert_eq!(again.digest(), plugin.digest());
    let b = Binding::new(again, Limits::default());
    assert!(b.call(&ctx(), &verify_call(AccountStatus::Active)).is_ok());
    // A corrupt artifact is ignored and recompiled, never trusted. (Replaced
    // by rename, as the cache itself writes: the old one may still be mapped.)
    let tmp = dir.path().join("corrupt.tmp");
    std::fs::write(&tmp, b"garbage").unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.path().join(&cached[0])).unwrap_or_else(|e| panic!("{e}"));
    let third = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        third
            .load("support-contract", &plugin_bytes("support-contract"))
            .is_ok()
    );
}
