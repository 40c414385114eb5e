//! Plan selection: which plans a communication may go under, best first.
//!
//! A rule matches when every condition it sets holds, leaving out the
//! attributes its plan ignores. Matching rules rank by the file's
//! precedence: for each attribute in that order, a rule that sets it
//! outranks one that does not, and for the destination a longer matching
//! prefix outranks a shorter one (CGRateS's longest-prefix match). Equal
//! rules rank by their plan's priority (lower first), then by file order.
//! A plan appears once, at its best rule's place.

use crate::contract::Properties;
use crate::registry::plan_file::{Attribute, Rule, ServicePlans};

/// What selection looks at in a communication.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub account_id: &'a str,
    pub account_group: &'a str,
    pub access_method: &'a str,
    pub access_groups: &'a [String],
    pub destination: &'a str,
    pub region: &'a str,
    pub carrier: &'a str,
    /// Local minutes since the epoch (the file's UTC offset applied).
    pub local_minutes: i64,
    pub sequence: u64,
    pub attributes: &'a Properties,
}

impl Attributes<'_> {
    /// 0 = Monday (1970-01-01 was a Thursday).
    fn weekday(&self) -> u32 {
        u32::try_from((self.local_minutes.div_euclid(1440) + 3).rem_euclid(7)).unwrap_or(0)
    }

    fn minute_of_day(&self) -> u32 {
        u32::try_from(self.local_minutes.rem_euclid(1440)).unwrap_or(0)
    }
}

/// How well one rule fits, per attribute of the precedence (0: not set).
fn score(
    rule: &Rule,
    ignore: &std::collections::BTreeSet<Attribute>,
    c: &Attributes<'_>,
    precedence: &[Attribute],
) -> Option<Vec<usize>> {
    let mut fit = Vec::with_capacity(precedence.len());
    for &attribute in precedence {
        if ignore.contains(&attribute) {
            fit.push(0);
            continue;
        }
        let one_of = |list: &[String], value: &str| match list.is_empty() {
            true => Some(0),
            false => list.iter().any(|x| x == value).then_some(1),
        };
        let level = match attribute {
            Attribute::Account => one_of(&rule.accounts, c.account_id),
            Attribute::AccountGroup => one_of(&rule.account_groups, c.account_group),
            Attribute::AccessMethod => one_of(&rule.access_methods, c.access_method),
            Attribute::AccessGroup => match rule.access_groups.is_empty() {
                true => Some(0),
                false => rule
                    .access_groups
                    .iter()
                    .any(|g| c.access_groups.contains(g))
                    .then_some(1),
            },
            Attribute::Destination => match rule.destination_prefixes.is_empty() {
                true => Some(0),
                // One more than the prefix length, so that any prefix outranks none.
                false => rule
                    .destination_prefixes
                    .iter()
                    .filter(|p| c.destination.starts_with(p.as_str()))
                    .map(|p| p.len() + 1)
                    .max(),
            },
            Attribute::Region => one_of(&rule.regions, c.region),
            Attribute::Carrier => one_of(&rule.carriers, c.carrier),
            Attribute::Weekday => match rule.weekdays.is_empty() {
                true => Some(0),
                false => rule.weekdays.contains(&c.weekday()).then_some(1),
            },
            Attribute::Time => match rule.time {
                None => Some(0),
                Some(range) => range.contains(c.minute_of_day()).then_some(1),
            },
            Attribute::Sequence => match rule.sequence {
                None => Some(0),
                Some((low, high)) => {
                    (c.sequence >= low && high.is_none_or(|h| c.sequence <= h)).then_some(1)
                }
            },
            Attribute::Attributes => {
                let all = rule
                    .attributes
                    .iter()
                    .all(|(k, v)| c.attributes.get(k) == Some(v.as_str()));
                all.then_some(rule.attributes.0.len())
            }
        };
        fit.push(level?);
    }
    Some(fit)
}

/// The plans this communication may go under, best first; the account's
/// preferred plan first of all when one of its rules matches.
pub fn rank<'p>(
    plans: &'p ServicePlans,
    c: &Attributes<'_>,
    preferred: Option<&str>,
) -> Vec<&'p str> {
    let mut matching: Vec<(Vec<usize>, i64, usize, &str)> = Vec::new();
    for (order, rule) in plans.rules.iter().enumerate() {
        let Some(plan) = plans.plans.get(&rule.plan) else {
            continue;
        };
        if plan.preferred_only && preferred != Some(plan.id.as_str()) {
            continue;
        }
        if let Some(fit) = score(rule, &plan.ignore, c, &plans.precedence) {
            matching.push((fit, plan.priority, order, plan.id.as_str()));
        }
    }
    // Higher fit first; then lower priority, then earlier rule.
    matching.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut ranked: Vec<&str> = Vec::new();
    for (_, _, _, plan) in matching {
        if !ranked.contains(&plan) {
            ranked.push(plan);
        }
    }
    if let Some(place) = ranked.iter().position(|p| Some(*p) == preferred) {
        let first = ranked.remove(place);
        ranked.insert(0, first);
    }
    ranked
}

/// The region of a destination: that of the longest known prefix it starts
/// with; `None` when it starts with none.
pub fn region_of<'p>(plans: &'p ServicePlans, destination: &str) -> Option<&'p str> {
    plans
        .destinations
        .regions
        .iter()
        .filter(|(prefix, _)| destination.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, region)| region.as_str())
}

/// Why a destination is not one the service can place: wrong characters or
/// length, or no known prefix.
pub fn check_destination(plans: &ServicePlans, destination: &str) -> Result<(), String> {
    let d = &plans.destinations;
    if destination.is_empty() || !destination.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a destination is digits only (no `+`, spaces or dashes)".into());
    }
    if !(d.min_length..=d.max_length).contains(&destination.len()) {
        return Err(format!(
            "a destination has {} to {} digits; this one has {}",
            d.min_length,
            d.max_length,
            destination.len()
        ));
    }
    if region_of(plans, destination).is_none() {
        return Err("the destination starts with no known country or area code".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn plans(source: &str) -> ServicePlans {
        let services = BTreeMap::from([("calls".to_owned(), true)]);
        ServicePlans::parse(Path::new("calls.toml"), source, &services)
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    const FILE: &str = r#"
service = "calls"
precedence = ["account", "destination", "access_group", "time"]
[destinations]
regions = { "44" = "uk", "4420" = "london", "1" = "nanp" }
[access_methods]
"8005550100" = ["toll-free"]
"2125550100" = ["local"]
[[plan]]
id = "international"
[[plan]]
id = "london"
[[plan]]
id = "standard"
priority = 1
[[plan]]
id = "evening"
ignore = ["access_group"]
[[plan]]
id = "vip"
[[rule]]
plan = "international"
destination_prefixes = ["44"]
[[rule]]
plan = "london"
destination_prefixes = ["4420"]
[[rule]]
plan = "standard"
destination_prefixes = ["1"]
[[rule]]
plan = "evening"
destination_prefixes = ["1"]
access_groups = ["local"]
time = "18:00-08:00"
[[rule]]
plan = "vip"
accounts = ["boss"]
"#;

    fn comm<'a>(
        destination: &'a str,
        groups: &'a [String],
        at_minute: i64,
        account: &'a str,
        attrs: &'a Properties,
    ) -> Attributes<'a> {
        Attributes {
            account_id: account,
            account_group: "",
            access_method: "8005550100",
            access_groups: groups,
            destination,
            region: "",
            carrier: "",
            local_minutes: at_minute,
            sequence: 1,
            attributes: attrs,
        }
    }

    fn rank_<'p>(p: &'p ServicePlans, c: &Attributes<'_>) -> Vec<&'p str> {
        rank(p, c, None)
    }

    #[test]
    fn the_preferred_plan_goes_first_and_a_preferred_only_plan_only_then() {
        let p = plans(
            &FILE
                .replace("id = \"vip\"", "id = \"vip\"\npreferred_only = true")
                .replace("accounts = [\"boss\"]", "destination_prefixes = [\"1\"]"),
        );
        let none = Properties::default();
        let groups = vec!["toll-free".to_owned()];
        let c = comm("12125550199", &groups, 12 * 60, "a", &none);
        assert_eq!(rank(&p, &c, None), vec!["standard"]);
        assert_eq!(rank(&p, &c, Some("vip")), vec!["vip", "standard"]);
        // A preferred plan whose rules do not match is not tried.
        assert_eq!(
            rank(
                &p,
                &comm("442079460000", &groups, 600, "a", &none),
                Some("vip")
            ),
            vec!["london", "international"]
        );
    }

    #[test]
    fn the_longest_destination_prefix_wins_within_a_rank() {
        let p = plans(FILE);
        let none = Properties::default();
        let groups = vec!["toll-free".to_owned()];
        assert_eq!(
            rank_(&p, &comm("442079460000", &groups, 600, "a", &none)),
            vec!["london", "international"]
        );
        assert_eq!(
            rank_(&p, &comm("441619460000", &groups, 600, "a", &none)),
            vec!["international"]
        );
    }

    #[test]
    fn an_ignored_attribute_is_left_out_and_precedence_orders_the_rest() {
        let p = plans(FILE);
        let none = Properties::default();
        let toll_free = vec!["toll-free".to_owned()];
        // 20:00: the evening rule matches even from a toll-free number (its
        // plan ignores the access group) and outranks standard by its time.
        assert_eq!(
            rank_(&p, &comm("12125550199", &toll_free, 20 * 60, "a", &none)),
            vec!["evening", "standard"]
        );
        // At noon only standard.
        assert_eq!(
            rank_(&p, &comm("12125550199", &toll_free, 12 * 60, "a", &none)),
            vec!["standard"]
        );
        // The account outranks everything below it in the precedence.
        assert_eq!(
            rank_(&p, &comm("12125550199", &toll_free, 12 * 60, "boss", &none))[0],
            "vip"
        );
    }

    #[test]
    fn destinations_are_checked_and_get_the_longest_prefixs_region() {
        let p = plans(FILE);
        assert_eq!(region_of(&p, "442079460000"), Some("london"));
        assert_eq!(region_of(&p, "441619460000"), Some("uk"));
        assert!(check_destination(&p, "33123456789").is_err());
        assert!(check_destination(&p, "+4420794600").is_err());
        assert!(check_destination(&p, "44").is_err());
        assert!(check_destination(&p, "4420794600").is_ok());
    }
}
