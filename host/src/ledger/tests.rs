//! Unit tests of the ledger: references, prepaid and postpaid charges, the
//! balance against the sum of the ledger, PINs and accounts in bulk.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::store::Store;
use crate::store::entitlement::{account_version, get_account};

/// A fixed sequence of bytes (SplitMix64), so that tests repeat.
struct Seeded(u64);

impl Random for Seeded {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), LedgerError> {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// Always the same bytes: every draw collides with the last.
struct Stuck(u8);

impl Random for Stuck {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), LedgerError> {
        buf.fill(self.0);
        Ok(())
    }
}

fn account(id: &str, billing: Billing) -> AccountRow {
    AccountRow::for_test(id, billing.as_str())
}

fn store_with(ids: &[(&str, Billing)]) -> Store {
    let store = Store::in_memory().unwrap();
    store
        .write(|tx| {
            for (id, billing) in ids {
                put_account(tx, &account(id, *billing))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store
}

fn balance(store: &Store, id: &str) -> i64 {
    store.read(|c| q::balance(c, id)).unwrap().unwrap()
}

fn sum(store: &Store, id: &str) -> i64 {
    store.read(|c| q::sum_of_ledger(c, id)).unwrap()
}

fn rows(store: &Store, id: &str) -> usize {
    store
        .read(|c| q::movements(c, id, None, 1000))
        .unwrap()
        .len()
}

#[test]
fn a_top_up_is_credited_once_per_reference_and_a_reused_one_is_refused() {
    let store = store_with(&[("acme", Billing::Prepaid)]);
    let version = store.read(|c| account_version(c, "acme")).unwrap();
    let first = store
        .write(|tx| topup(tx, "acme", 500, "pay-1", 10))
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(
        (
            first.movement.kind,
            first.movement.amount,
            first.movement.balance_after
        ),
        (Kind::Topup, 500, 500)
    );
    let again = store
        .write(|tx| topup(tx, "acme", 500, "pay-1", 99))
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.movement, first.movement, "the first answer");
    for reuse in [
        store.write(|tx| topup(tx, "acme", 501, "pay-1", 11)),
        store.write(|tx| refund(tx, "acme", 500, "pay-1", 11, None)),
    ] {
        let e = reuse.unwrap_err();
        assert!(
            matches!(&e, LedgerError::ReferenceReused { reference, .. } if reference == "pay-1"),
            "{e}"
        );
        assert!(e.to_string().contains("a topup of 500"), "{e}");
    }
    let charged = store.write(|tx| charge(tx, "acme", Billing::Prepaid, 500, "pay-1", 11, None));
    assert!(matches!(charged, Err(LedgerError::ReferenceReused { .. })));
    assert_eq!((balance(&store, "acme"), rows(&store, "acme")), (500, 1));
    // The same reference is another account's own.
    let store2 = store_with(&[("acme", Billing::Prepaid), ("other", Billing::Prepaid)]);
    store2.write(|tx| topup(tx, "acme", 1, "r", 1)).unwrap();
    assert!(
        !store2
            .write(|tx| topup(tx, "other", 2, "r", 1))
            .unwrap()
            .replayed
    );
    assert_eq!(
        store.read(|c| account_version(c, "acme")).unwrap(),
        version,
        "money moved the account's version"
    );
}

#[test]
fn bad_amounts_references_and_accounts_are_refused_and_change_nothing() {
    let store = store_with(&[("acme", Billing::Prepaid)]);
    for amount in [0, -1, i64::MIN] {
        let e = store
            .write(|tx| topup(tx, "acme", amount, "r", 1))
            .unwrap_err();
        assert!(matches!(e, LedgerError::InvalidAmount { .. }), "{e}");
        assert!(e.to_string().starts_with("`amount` is"), "{e}");
    }
    let e = store
        .write(|tx| charge(tx, "acme", Billing::Postpaid, -1, "r", 1, None))
        .unwrap_err();
    assert!(matches!(e, LedgerError::InvalidAmount { .. }), "{e}");
    for reference in ["", &"x".repeat(201), "a\nb", "a\u{0}b", "tab\there"] {
        let e = store
            .write(|tx| topup(tx, "acme", 5, reference, 1))
            .unwrap_err();
        assert!(
            matches!(&e, LedgerError::Invalid(m) if m.starts_with("`reference`")),
            "{reference:?}: {e}"
        );
    }
    store
        .write(|tx| topup(tx, "acme", 5, &"x".repeat(200), 1))
        .unwrap();
    let e = store
        .write(|tx| topup(tx, "nobody", 5, "r", 1))
        .unwrap_err();
    assert!(
        matches!(e, LedgerError::NoAccount(ref id) if id == "nobody"),
        "{e}"
    );
    let e = store
        .write(|tx| charge(tx, "nobody", Billing::Prepaid, 5, "r", 1, None))
        .unwrap_err();
    assert!(matches!(e, LedgerError::NoAccount(_)), "{e}");
    // Past what 64 bits keep: refused, not wrapped or rounded.
    store
        .write(|tx| topup(tx, "acme", i64::MAX - 5, "big", 1))
        .unwrap();
    let e = store
        .write(|tx| topup(tx, "acme", 1, "over", 1))
        .unwrap_err();
    assert!(matches!(e, LedgerError::Invalid(_)), "{e}");
    assert_eq!(balance(&store, "acme"), i64::MAX);
    assert_eq!(sum(&store, "acme"), i64::MAX);
}

#[test]
fn prepaid_is_charged_at_most_its_balance_and_the_rest_is_uncovered() {
    let store = store_with(&[("acme", Billing::Prepaid)]);
    store.write(|tx| topup(tx, "acme", 100, "t", 1)).unwrap();
    let detail = json!({"communication": "c-1"});
    let first = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 150, "c-1", 2, Some(&detail)))
        .unwrap();
    assert_eq!(
        (
            first.charged,
            first.uncovered,
            first.balance_after,
            first.replayed
        ),
        (100, 50, 0, false)
    );
    // Nothing left: a row of zero keeps the reference and what was not paid.
    let dry = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 30, "c-2", 3, None))
        .unwrap();
    assert_eq!((dry.charged, dry.uncovered, dry.balance_after), (0, 30, 0));
    assert!(dry.movement_id.is_some());
    // Replayed after a top-up: the first answer, nothing taken now.
    store.write(|tx| topup(tx, "acme", 1000, "t2", 4)).unwrap();
    let replay = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 150, "c-1", 5, Some(&detail)))
        .unwrap();
    assert_eq!(
        replay,
        Charged {
            replayed: true,
            ..first
        }
    );
    let e = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 100, "c-1", 5, None))
        .unwrap_err();
    assert!(matches!(e, LedgerError::ReferenceReused { .. }), "{e}");
    assert!(e.to_string().contains("a debit of 150"), "{e}");
    assert_eq!(balance(&store, "acme"), 1000);
    // Zero records nothing.
    let zero = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 0, "c-0", 6, None))
        .unwrap();
    assert_eq!(
        zero,
        Charged {
            charged: 0,
            uncovered: 0,
            balance_after: 1000,
            replayed: false,
            movement_id: None
        }
    );
    assert_eq!(rows(&store, "acme"), 4);
    let ledger = store.read(|c| q::movements(c, "acme", None, 10)).unwrap();
    assert_eq!(ledger[1].detail, Some(detail));
    assert_eq!((ledger[1].amount, ledger[1].uncovered), (-100, 50));
    assert_eq!(sum(&store, "acme"), balance(&store, "acme"));
}

#[test]
fn postpaid_is_charged_in_full_and_owes_a_negative_balance() {
    let store = store_with(&[("acme", Billing::Postpaid)]);
    store.write(|tx| topup(tx, "acme", 100, "t", 1)).unwrap();
    let c = store
        .write(|tx| charge(tx, "acme", Billing::Postpaid, 150, "c-1", 2, None))
        .unwrap();
    assert_eq!((c.charged, c.uncovered, c.balance_after), (150, 0, -50));
    let c = store
        .write(|tx| charge(tx, "acme", Billing::Postpaid, 70, "c-2", 3, None))
        .unwrap();
    assert_eq!(c.balance_after, -120);
    // Billed prepaid from a debt: nothing more is taken.
    let c = store
        .write(|tx| charge(tx, "acme", Billing::Prepaid, 10, "c-3", 4, None))
        .unwrap();
    assert_eq!((c.charged, c.uncovered, c.balance_after), (0, 10, -120));
    let r = store
        .write(|tx| {
            refund(
                tx,
                "acme",
                20,
                "back-1",
                5,
                Some(&json!({"why": "dropped"})),
            )
        })
        .unwrap();
    assert_eq!(
        (r.movement.kind, r.movement.balance_after),
        (Kind::Refund, -100)
    );
    assert_eq!(sum(&store, "acme"), -100);
    // Past the smallest balance kept: refused.
    store
        .write(|tx| {
            charge(
                tx,
                "acme",
                Billing::Postpaid,
                i64::MAX - 200,
                "huge",
                6,
                None,
            )
        })
        .unwrap();
    assert_eq!(balance(&store, "acme"), -i64::MAX + 100);
    let e = store
        .write(|tx| charge(tx, "acme", Billing::Postpaid, 200, "huger", 7, None))
        .unwrap_err();
    assert!(matches!(e, LedgerError::Invalid(_)), "{e}");
    assert_eq!(sum(&store, "acme"), balance(&store, "acme"));
}

/// One step of a random sequence of movements.
#[derive(Debug, Clone)]
enum Step {
    Topup(i64, u8),
    Charge(i64, u8, bool),
    Refund(i64, u8),
}

fn step() -> impl Strategy<Value = Step> {
    // Few references, so that replays and reuses happen.
    prop_oneof![
        (1..1_000i64, 0..12u8).prop_map(|(a, r)| Step::Topup(a, r)),
        (0..1_500i64, 0..12u8, any::<bool>()).prop_map(|(a, r, p)| Step::Charge(a, r, p)),
        (1..300i64, 0..12u8).prop_map(|(a, r)| Step::Refund(a, r)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the sequence (replays and reused references included), the
    /// balance is the sum of the ledger, a prepaid charge never takes a
    /// balance below zero, and each reference moves money once.
    #[test]
    fn the_balance_is_the_sum_of_the_ledger(steps in prop::collection::vec(step(), 1..40)) {
        let store = store_with(&[("acme", Billing::Prepaid)]);
        let mut model = 0i64;
        let mut used: std::collections::HashMap<String, (Kind, i64)> = Default::default();
        for (at, step) in steps.into_iter().enumerate() {
            let at = at as i64;
            let before = balance(&store, "acme");
            let (kind, amount, reference) = match &step {
                Step::Topup(a, r) => (Kind::Topup, *a, format!("ref-{r}")),
                Step::Charge(a, r, _) => (Kind::Debit, *a, format!("ref-{r}")),
                Step::Refund(a, r) => (Kind::Refund, *a, format!("ref-{r}")),
            };
            let result = store.write(|tx| match &step {
                Step::Topup(a, _) => topup(tx, "acme", *a, &reference, at).map(|p| (p.replayed, p.movement.amount)),
                Step::Charge(a, _, prepaid) => {
                    let billing = if *prepaid { Billing::Prepaid } else { Billing::Postpaid };
                    charge(tx, "acme", billing, *a, &reference, at, None).map(|c| (c.replayed, -c.charged))
                }
                Step::Refund(a, _) => refund(tx, "acme", *a, &reference, at, None).map(|p| (p.replayed, p.movement.amount)),
            });
            match (used.get(&reference), result) {
                (Some(first), Ok((replayed, _))) => {
                    prop_assert!(replayed);
                    prop_assert_eq!(*first, (kind, amount));
                }
                (Some(first), Err(LedgerError::ReferenceReused { .. })) => {
                    prop_assert_ne!(*first, (kind, amount));
                }
                (None, Ok((replayed, moved))) => {
                    prop_assert!(!replayed);
                    model += moved;
                    if let Step::Charge(_, _, true) = step {
                        prop_assert!(before < 0 || model >= 0, "prepaid went below zero");
                    }
                    // A charge of zero records nothing, and leaves the reference free.
                    if !(kind == Kind::Debit && amount == 0) {
                        used.insert(reference, (kind, amount));
                    }
                }
                (_, Err(e)) => prop_assert!(false, "{e}"),
            }
            prop_assert_eq!(balance(&store, "acme"), model);
            prop_assert_eq!(sum(&store, "acme"), model);
        }
    }
}

fn with_pin(pin: &str) -> Store {
    let store = store_with(&[("acme", Billing::Prepaid)]);
    store
        .write(|tx| set_pin(tx, "acme", pin, &mut Seeded(1)))
        .unwrap();
    store
}

fn verify(store: &Store, pin: &str, now: i64) -> PinCheck {
    store
        .write(|tx| verify_pin(tx, "acme", pin, now, &PinPolicy::default()))
        .unwrap()
}

const MINUTE: i64 = 60_000;

#[test]
fn five_wrong_pins_in_a_row_lock_it_for_fifteen_minutes() {
    let store = with_pin("0042");
    let version = store.read(|c| account_version(c, "acme")).unwrap();
    for remaining in [4, 3, 2, 1] {
        assert_eq!(verify(&store, "1234", 1_000), PinCheck::Wrong { remaining });
    }
    let until = 1_000 + 15 * MINUTE;
    assert_eq!(verify(&store, "9999", 1_000), PinCheck::Locked { until });
    // Locked: even the right PIN is not tried, and nothing is counted.
    assert_eq!(verify(&store, "0042", 2_000), PinCheck::Locked { until });
    assert_eq!(
        verify(&store, "0042", until - 1),
        PinCheck::Locked { until }
    );
    // Expired: the right PIN works, the count starts again.
    assert_eq!(verify(&store, "0042", until), PinCheck::Right);
    assert_eq!(
        verify(&store, "1111", until + 1),
        PinCheck::Wrong { remaining: 4 }
    );
    assert_eq!(
        store.read(|c| account_version(c, "acme")).unwrap(),
        version,
        "PIN tries changed the account's version"
    );
}

#[test]
fn a_right_pin_ends_the_count_of_wrong_ones() {
    let store = with_pin("123456");
    for _ in 0..4 {
        verify(&store, "654321", 10);
    }
    assert_eq!(verify(&store, "123456", 11), PinCheck::Right);
    for remaining in [4, 3, 2, 1] {
        assert_eq!(verify(&store, "000000", 12), PinCheck::Wrong { remaining });
    }
    assert!(matches!(
        verify(&store, "000000", 12),
        PinCheck::Locked { .. }
    ));
    // A new PIN lifts the lock.
    store
        .write(|tx| set_pin(tx, "acme", "777777", &mut Seeded(2)))
        .unwrap();
    assert_eq!(verify(&store, "777777", 13), PinCheck::Right);
    assert_eq!(
        verify(&store, "123456", 13),
        PinCheck::Wrong { remaining: 4 }
    );
}

#[test]
fn pin_formats_are_checked_and_never_repeated_in_messages() {
    for good in ["0000", "1234", "000000000000", "987654321"] {
        assert!(valid_pin(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "123",
        "1234567890123",
        "12a4",
        " 1234",
        "１２３４",
        "12.4",
        "-123",
    ] {
        let e = valid_pin(bad).unwrap_err();
        assert!(matches!(e, LedgerError::InvalidPin(_)), "{bad:?}");
        if !bad.is_empty() {
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }
    let store = store_with(&[("acme", Billing::Prepaid)]);
    assert_eq!(verify(&store, "1234", 1), PinCheck::NoPin);
    let e = store
        .write(|tx| set_pin(tx, "acme", "12", &mut OsRandom))
        .unwrap_err();
    assert!(matches!(e, LedgerError::InvalidPin(_)), "{e}");
    let e = store
        .write(|tx| set_pin(tx, "nobody", "1234", &mut OsRandom))
        .unwrap_err();
    assert!(matches!(e, LedgerError::NoAccount(_)), "{e}");
    let e = store
        .write(|tx| verify_pin(tx, "nobody", "1234", 1, &PinPolicy::default()))
        .unwrap_err();
    assert!(matches!(e, LedgerError::NoAccount(_)), "{e}");
    // A malformed try is a wrong one.
    let store = with_pin("1234");
    assert_eq!(verify(&store, "12a4", 1), PinCheck::Wrong { remaining: 4 });
    // Salted: the same PIN on two accounts is two hashes; the PIN is not kept.
    store
        .write(|tx| {
            put_account(tx, &account("b", Billing::Prepaid))?;
            set_pin(tx, "b", "1234", &mut Seeded(99))
        })
        .unwrap();
    let a = store.read(|c| q::pin_state(c, "acme")).unwrap().unwrap();
    let b = store.read(|c| q::pin_state(c, "b")).unwrap().unwrap();
    assert_ne!(a.hash, b.hash);
    assert_eq!(a.salt.as_ref().map(Vec::len), Some(SALT_BYTES));
    assert_eq!(
        a.hash.as_deref(),
        Some(hash_pin("1234", a.salt.as_deref().unwrap_or_default()).as_slice())
    );
    assert_eq!(format!("{:?}", Pin::new("1234")), "Pin(..)");
}

#[test]
fn random_digits_are_uniform_with_leading_zeros_kept() {
    let mut rng = Seeded(7);
    let mut counts = [0u32; 10];
    for _ in 0..20_000 {
        let d = random_digits(&mut rng, 1).unwrap();
        counts[d.parse::<usize>().unwrap()] += 1;
    }
    // 2000 expected each; 5 standard deviations is about 212.
    assert!(
        counts.iter().all(|&c| (1_788..=2_212).contains(&c)),
        "{counts:?}"
    );
    let pins: Vec<String> = (0..2_000)
        .map(|_| random_digits(&mut rng, 6).unwrap())
        .collect();
    assert!(
        pins.iter()
            .all(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()))
    );
    assert!(
        pins.iter().any(|p| p.starts_with('0')),
        "no leading zero in 2000 PINs"
    );
    assert_eq!(random_digits(&mut Stuck(0), 10).unwrap(), "0000000000");
}

#[test]
fn bulk_creation_makes_distinct_accounts_each_with_a_pin_and_its_opening_balance() {
    let store = Store::in_memory().unwrap();
    let batch = NewAccounts {
        group: "school-7",
        count: 300,
        opening_balance: 500,
        prefix: "s7-",
        billing: Billing::Postpaid,
    };
    let made = store
        .write(|tx| create_accounts(tx, &batch, 1_000, &mut Seeded(3)))
        .unwrap();
    assert_eq!(made.len(), 300);
    let ids: HashSet<&str> = made.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 300, "ids repeat");
    for a in &made {
        let digits = a.id.strip_prefix("s7-").unwrap();
        assert!(
            digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()),
            "{a:?}"
        );
        assert!(a.pin.len() == 6 && a.pin.bytes().all(|b| b.is_ascii_digit()));
        assert!(!format!("{a:?}").contains(&a.pin) || a.id.contains(&a.pin));
    }
    let pins: HashSet<&str> = made.iter().map(|a| a.pin.as_str()).collect();
    // 300 draws of 10^6: a repeat is possible (p ≈ 4%), many would not be.
    assert!(pins.len() >= 298, "{} distinct PINs", pins.len());
    for a in made.iter().take(20) {
        let row = store.read(|c| get_account(c, &a.id)).unwrap().unwrap();
        assert_eq!(
            (
                row.group.as_str(),
                row.billing.as_str(),
                row.has_pin,
                row.status.as_str(),
                row.paid_up
            ),
            ("school-7", "postpaid", true, "active", true)
        );
        assert_eq!(balance(&store, &a.id), 500);
        let ledger = store.read(|c| q::movements(c, &a.id, None, 10)).unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(
            (ledger[0].reference.as_str(), ledger[0].at),
            ("opening", 1_000)
        );
        let check = store
            .write(|tx| verify_pin(tx, &a.id, &a.pin, 2_000, &PinPolicy::default()))
            .unwrap();
        assert_eq!(check, PinCheck::Right);
    }
    // No opening balance: no movement.
    let none = store
        .write(|tx| {
            create_accounts(
                tx,
                &NewAccounts {
                    opening_balance: 0,
                    count: 1,
                    ..batch
                },
                1,
                &mut OsRandom,
            )
        })
        .unwrap();
    assert_eq!(rows(&store, &none[0].id), 0);
    assert_eq!(balance(&store, &none[0].id), 0);
}

#[test]
fn bulk_creation_draws_again_on_a_taken_id_and_refuses_bad_batches() {
    let store = Store::in_memory().unwrap();
    let batch = NewAccounts {
        group: "g",
        count: 1,
        opening_balance: 0,
        prefix: "",
        billing: Billing::Prepaid,
    };
    // The first id drawn from Stuck(0) is taken: it draws again, in vain.
    store
        .write(|tx| create_accounts(tx, &batch, 1, &mut Stuck(0)))
        .unwrap();
    let e = store
        .write(|tx| create_accounts(tx, &batch, 1, &mut Stuck(0)))
        .unwrap_err();
    assert!(
        matches!(&e, LedgerError::Invalid(m) if m.contains("no free id")),
        "{e}"
    );
    // A taken id among other draws is skipped.
    let made = store
        .write(|tx| create_accounts(tx, &NewAccounts { count: 50, ..batch }, 1, &mut Seeded(5)))
        .unwrap();
    assert!(made.iter().all(|a| a.id != "0000000000"));
    for (bad, field) in [
        (NewAccounts { count: 0, ..batch }, "`count`"),
        (
            NewAccounts {
                count: MAX_BATCH + 1,
                ..batch
            },
            "`count`",
        ),
        (
            NewAccounts {
                opening_balance: -1,
                ..batch
            },
            "`balance`",
        ),
        (NewAccounts { group: "", ..batch }, "`group`"),
        (
            NewAccounts {
                group: "a\nb",
                ..batch
            },
            "`group`",
        ),
        (
            NewAccounts {
                prefix: "a b",
                ..batch
            },
            "`prefix`",
        ),
        (
            NewAccounts {
                prefix: "a/",
                ..batch
            },
            "`prefix`",
        ),
        (
            NewAccounts {
                prefix: &"p".repeat(191),
                ..batch
            },
            "`prefix`",
        ),
    ] {
        let e = store
            .write(|tx| create_accounts(tx, &bad, 1, &mut Seeded(6)))
            .unwrap_err();
        assert!(
            matches!(&e, LedgerError::Invalid(m) if m.starts_with(field)),
            "{bad:?}: {e}"
        );
    }
    let group = "g".repeat(MAX_GROUP + 1);
    let e = store
        .write(|tx| {
            create_accounts(
                tx,
                &NewAccounts {
                    group: &group,
                    ..batch
                },
                1,
                &mut Seeded(6),
            )
        })
        .unwrap_err();
    assert!(e.to_string().starts_with("`group`"), "{e}");
}
