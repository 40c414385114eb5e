//! Plan files: `rules/plans/<service>.toml`, one per service that places
//! communications. A file holds the service's access methods and their
//! groups, its destination table (lengths, known prefixes and their
//! regions), its plans (kind, priority, rates, the attributes a plan leaves
//! out, unlimited-plan limits, the parameters its plugin reads) and the
//! selection rules that map a communication's attributes onto plans.
//!
//! Files are read, checked and gathered into one [`PlanBook`] with the
//! manifests, so a rules reload swaps plans and services as one snapshot.
//! Rating and selection live in `plans/`; this module only reads and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, line_of, valid_id};
use crate::contract::{PlanKind, Properties};

/// The attributes a selection rule can match, in their default precedence.
pub const ATTRIBUTES: &[Attribute] = &[
    Attribute::Account,
    Attribute::AccountGroup,
    Attribute::AccessMethod,
    Attribute::AccessGroup,
    Attribute::Destination,
    Attribute::Region,
    Attribute::Carrier,
    Attribute::Weekday,
    Attribute::Time,
    Attribute::Sequence,
    Attribute::Attributes,
];

/// One attribute of a communication that selection rules match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Account,
    AccountGroup,
    AccessMethod,
    AccessGroup,
    /// The destination prefix: a longer matching prefix outranks a shorter.
    Destination,
    Region,
    Carrier,
    Weekday,
    /// The time of day.
    Time,
    /// The account's communication count.
    Sequence,
    /// Free attributes the caller gives.
    Attributes,
}

impl Attribute {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Account => "account",
            Attribute::AccountGroup => "account_group",
            Attribute::AccessMethod => "access_method",
            Attribute::AccessGroup => "access_group",
            Attribute::Destination => "destination",
            Attribute::Region => "region",
            Attribute::Carrier => "carrier",
            Attribute::Weekday => "weekday",
            Attribute::Time => "time",
            Attribute::Sequence => "sequence",
            Attribute::Attributes => "attributes",
        }
    }
}

/// When an unlimited plan associates a destination with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssociateOn {
    /// When a communication to it completes answered (the default).
    #[default]
    Completion,
    /// When a communication to it is authorized.
    Attempt,
}

/// What a plan charges, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Per minute of talk time, billed in `increment_secs` steps.
    #[serde(default)]
    pub per_minute: i64,
    /// Talk time is billed in steps of this many seconds, each started step
    /// in full (60: per started minute; 1: per second).
    #[serde(default = "default_increment")]
    pub increment_secs: u32,
    /// The first step, when it differs (e.g. a first minute, then seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_increment_secs: Option<u32>,
    /// Charged when a communication is answered.
    #[serde(default)]
    pub connection_fee: i64,
    /// Charged for every completed communication, answered or not.
    #[serde(default)]
    pub access_fee: i64,
    /// Charged once, on an account's first completed communication under the plan.
    #[serde(default)]
    pub activation_fee: i64,
    /// A flat surcharge once talk time passes `surcharge_after_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surcharge_after_secs: Option<u32>,
    #[serde(default)]
    pub surcharge: i64,
    /// A flat surcharge at the end of every answered communication.
    #[serde(default)]
    pub end_surcharge: i64,
    /// Subscription plans: the fee for each paid period.
    #[serde(default)]
    pub subscription_fee: i64,
    /// Subscription plans: how long a paid period lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_period_secs: Option<u32>,
}

fn default_increment() -> u32 {
    60
}

/// No charges, billed per started minute.
impl Default for Rates {
    fn default() -> Self {
        Rates {
            per_minute: 0,
            increment_secs: default_increment(),
            first_increment_secs: None,
            connection_fee: 0,
            access_fee: 0,
            activation_fee: 0,
            surcharge_after_secs: None,
            surcharge: 0,
            end_surcharge: 0,
            subscription_fee: 0,
            subscription_period_secs: None,
        }
    }
}

/// Maxima of associated destinations more specific than the plan's own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxDestinationsBy {
    #[serde(default)]
    pub account: BTreeMap<String, u32>,
    #[serde(default)]
    pub account_group: BTreeMap<String, u32>,
    #[serde(default)]
    pub region: BTreeMap<String, u32>,
}

/// A plan as its file defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDef {
    pub id: String,
    pub service: String,
    pub kind: PlanKind,
    /// Lower goes first among rules that rank equal.
    pub priority: i64,
    pub rates: Rates,
    /// Attributes this plan's rules do not look at.
    pub ignore: BTreeSet<Attribute>,
    /// Its rules match only for accounts that prefer it.
    pub preferred_only: bool,
    pub max_destinations: Option<u32>,
    pub max_destinations_by: MaxDestinationsBy,
    pub associate_on: AssociateOn,
    /// How long an association lasts; none: until a reset.
    pub association_secs: Option<u64>,
    /// A prepaid balance falling below this sends one notice per crossing.
    pub low_balance_threshold: Option<i64>,
    /// The longest communication authorized, whatever the balance.
    pub max_duration_secs: Option<u64>,
    /// How far back the uses passed to the plugin go.
    pub usage_window_secs: u64,
    /// The plan's parameters, given to its plugin.
    pub config: Properties,
}

impl PlanDef {
    /// When an association made at `at` (ms) lapses, for a plan that
    /// associates for a set period.
    pub fn association_expires(&self, at: i64) -> Option<i64> {
        self.association_secs
            .and_then(|s| i64::try_from(s.saturating_mul(1000)).ok())
            .map(|s| at.saturating_add(s))
    }
}

/// A time of day range in local minutes, `[start, end)`; an end before the
/// start runs past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u32,
    pub end: u32,
}

impl TimeRange {
    pub fn contains(self, minute: u32) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// One selection rule: every condition it sets must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    pub plan: String,
    pub accounts: Vec<String>,
    pub account_groups: Vec<String>,
    pub access_methods: Vec<String>,
    pub access_groups: Vec<String>,
    pub destination_prefixes: Vec<String>,
    pub regions: Vec<String>,
    pub carriers: Vec<String>,
    /// 0 = Monday.
    pub weekdays: Vec<u32>,
    pub time: Option<TimeRange>,
    /// Inclusive bounds of the account's communication count.
    pub sequence: Option<(u64, Option<u64>)>,
    pub attributes: Properties,
}

/// What a destination must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub min_length: usize,
    pub max_length: usize,
    /// Known prefixes (country or area codes) and their regions: a
    /// destination must start with one.
    pub regions: BTreeMap<String, String>,
}

/// Everything one service's plan file defines.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlans {
    pub service: String,
    pub file: PathBuf,
    /// Local time for time-of-day and weekday matchers, in minutes from UTC.
    pub utc_offset_minutes: i32,
    /// Which attribute outranks which when several rules match.
    pub precedence: Vec<Attribute>,
    /// The maximum of associated destinations when nothing more specific sets one.
    pub max_destinations: Option<u32>,
    pub destinations: Destinations,
    /// Access method → the groups it belongs to.
    pub access_methods: BTreeMap<String, Vec<String>>,
    pub plans: BTreeMap<String, PlanDef>,
    /// In file order: the order breaks the last tie.
    pub rules: Vec<Rule>,
}

/// Every service's plans: one consistent set, swapped with the manifests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanBook {
    pub services: BTreeMap<String, ServicePlans>,
    /// Access method → the service whose file names it.
    pub access_methods: BTreeMap<String, String>,
    /// Plan id → the service whose file defines it.
    pub plans: BTreeMap<String, String>,
}

impl PlanBook {
    pub fn plan(&self, id: &str) -> Option<(&ServicePlans, &PlanDef)> {
        let service = self.services.get(self.plans.get(id)?)?;
        Some((service, service.plans.get(id)?))
    }

    /// The service an access method leads to.
    pub fn by_access_method(&self, method: &str) -> Option<&ServicePlans> {
        self.services.get(self.access_methods.get(method)?)
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// The folder of plan files inside a rules folder.
pub fn plans_dir(rules_dir: &Path) -> PathBuf {
    rules_dir.join("plans")
}

/// Reads every plan file of the rules folder. `services` are the ids of the
/// services the manifests define, each with whether it has a plan-policy
/// plugin. No folder is no plans (not an error).
pub fn load_plan_book(
    rules_dir: &Path,
    services: &BTreeMap<String, bool>,
) -> (PlanBook, Vec<Diagnostic>) {
    let dir = plans_dir(rules_dir);
    let mut book = PlanBook::default();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (book, problems),
        Err(e) => {
            problems.push(Diagnostic::error(
                &dir,
                None,
                format!("cannot read the plans folder: {e}"),
            ));
            return (book, problems);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let parsed = match std::fs::read_to_string(&file) {
            Ok(source) => ServicePlans::parse(&file, &source, services),
            Err(e) => Err(vec![Diagnostic::error(
                &file,
                None,
                format!("cannot read: {e}"),
            )]),
        };
        let service = match parsed {
            Ok(service) => service,
            Err(found) => {
                problems.extend(found);
                continue;
            }
        };
        if let Some(clash) = clash_with(&book, &service) {
            problems.push(Diagnostic::error(&file, None, clash));
            continue;
        }
        for method in service.access_methods.keys() {
            book.access_methods
                .insert(method.clone(), service.service.clone());
        }
        for plan in service.plans.keys() {
            book.plans.insert(plan.clone(), service.service.clone());
        }
        book.services.insert(service.service.clone(), service);
    }
    (book, problems)
}

/// Why `service` cannot join `book`: a second file for one service, or an
/// access method or plan id another file has.
fn clash_with(book: &PlanBook, service: &ServicePlans) -> Option<String> {
    if let Some(other) = book.services.get(&service.service) {
        return Some(format!(
            "service `{}` already has plans in `{}`; keep one plan file per service",
            service.service,
            other.file.display()
        ));
    }
    if let Some(method) = service
        .access_methods
        .keys()
        .find(|m| book.access_methods.contains_key(*m))
    {
        return Some(format!(
            "access method `{method}` is already in the plans of `{}`; an access method leads to one service",
            book.access_methods[method]
        ));
    }
    if let Some(plan) = service.plans.keys().find(|p| book.plans.contains_key(*p)) {
        return Some(format!(
            "plan `{plan}` is already defined for `{}`; plan ids are unique across services",
            book.plans[plan]
        ));
    }
    None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    service: Spanned<String>,
    #[serde(default)]
    utc_offset_minutes: Option<Spanned<i32>>,
    #[serde(default)]
    precedence: Option<Spanned<Vec<Attribute>>>,
    #[serde(default)]
    max_destinations: Option<u32>,
    destinations: Spanned<DestinationsFile>,
    #[serde(default)]
    access_methods: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    plan: Vec<Spanned<PlanEntry>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationsFile {
    #[serde(default = "default_min_length")]
    min_length: usize,
    #[serde(default = "default_max_length")]
    max_length: usize,
    regions: BTreeMap<String, String>,
}

fn default_min_length() -> usize {
    4
}

fn default_max_length() -> usize {
    15
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanEntry {
    id: String,
    #[serde(default)]
    kind: PlanKind,
    #[serde(default = "default_priority")]
    priority: i64,
    #[serde(default)]
    rates: Rates,
    #[serde(default)]
    ignore: Vec<Attribute>,
    #[serde(default)]
    preferred_only: bool,
    #[serde(default)]
    max_destinations: Option<u32>,
    #[serde(default)]
    max_destinations_by: MaxDestinationsBy,
    #[serde(default)]
    associate_on: AssociateOn,
    #[serde(default)]
    association_secs: Option<u64>,
    #[serde(default)]
    low_balance_threshold: Option<i64>,
    #[serde(default)]
    max_duration_secs: Option<u64>,
    #[serde(default)]
    config: Properties,
}

fn default_priority() -> i64 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    plan: String,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    account_groups: Vec<String>,
    #[serde(default)]
    access_methods: Vec<String>,
    #[serde(default)]
    access_groups: Vec<String>,
    #[serde(default)]
    destination_prefixes: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    carriers: Vec<String>,
    #[serde(default)]
    weekdays: Vec<String>,
    /// `HH:MM-HH:MM`, local time.
    #[serde(default)]
    time: Option<String>,
    /// `N`, `N-M` or `N-`.
    #[serde(default)]
    sequence: Option<String>,
    #[serde(default)]
    attributes: Properties,
}

/// The default span of recent uses given to a plan's plugin: one week.
pub const DEFAULT_USAGE_WINDOW_SECS: u64 = 7 * 86_400;
/// The longest usage window a plan may ask for: the host reads this much
/// history on every communication.
pub const MAX_USAGE_WINDOW_SECS: u64 = 92 * 86_400;
/// The longest communication a plan may authorize: a week.
pub const MAX_DURATION_SECS: u64 = 7 * 86_400;
/// Money limits keep every sum of a record far from overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

impl ServicePlans {
    pub fn parse(
        path: &Path,
        source: &str,
        services: &BTreeMap<String, bool>,
    ) -> Result<ServicePlans, Vec<Diagnostic>> {
        let file: PlanFile =
            toml::from_str(source).map_err(|e| vec![Diagnostic::from_toml(path, source, &e)])?;
        let mut problems = Vec::new();
        let at = |span: Range<usize>| Some(line_of(source, span.start));
        let mut problem = |span: Range<usize>, message: String| {
            problems.push(Diagnostic::error(path, at(span), message));
        };

        let service = file.service.get_ref().clone();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match services.get(&service) {
            None => problem(
                file.service.span(),
                format!(
                    "service `{service}` has no manifest in the rules folder; add `{service}.toml` or fix the name"
                ),
            ),
            Some(_) if service != stem => problem(
                file.service.span(),
                format!(
                    "service `{service}` does not match the file name `{stem}.toml`; rename one of them"
                ),
            ),
            Some(_) => {}
        }
        let has_policy = services.get(&service).copied().unwrap_or(false);

        let utc_offset_minutes = match &file.utc_offset_minutes {
            Some(offset) if !(-1439..=1439).contains(offset.get_ref()) => {
                problem(
                    offset.span(),
                    "`utc_offset_minutes` must be from -1439 to 1439".into(),
                );
                0
            }
            Some(offset) => *offset.get_ref(),
            None => 0,
        };

        let precedence = match &file.precedence {
            None => ATTRIBUTES.to_vec(),
            Some(list) => {
                let mut seen = BTreeSet::new();
                let mut order = Vec::new();
                for a in list.get_ref() {
                    if !seen.insert(*a) {
                        problem(
                            list.span(),
                            format!("`precedence` names `{}` twice", a.as_str()),
                        );
                    }
                    order.push(*a);
                }
                // Attributes left out rank below those named, in the default order.
                order.extend(ATTRIBUTES.iter().filter(|a| !seen.contains(a)));
                order
            }
        };

        let d = file.destinations.get_ref();
        if d.min_length == 0 || d.min_length > d.max_length || d.max_length > 32 {
            problem(
                file.destinations.span(),
                "destination lengths must satisfy 1 <= min_length <= max_length <= 32".into(),
            );
        }
        if d.regions.is_empty() {
            problem(
                file.destinations.span(),
                "`[destinations.regions]` must list at least one known prefix (country or area code) and its region".into(),
            );
        }
        for (prefix, region) in &d.regions {
            if !digits(prefix) || prefix.len() > d.max_length {
                problem(
                    file.destinations.span(),
                    format!(
                        "destination prefix `{prefix}` must be digits, no longer than max_length"
                    ),
                );
            }
            if !valid_name(region) {
                problem(
                    file.destinations.span(),
                    format!(
                        "region `{region}` of prefix `{prefix}` must be a short name (letters, digits, `-`, `_`)"
                    ),
                );
            }
        }
        let destinations = Destinations {
            min_length: d.min_length,
            max_length: d.max_length,
            regions: d.regions.clone(),
        };

        for (method, groups) in &file.access_methods {
            if !valid_access_method(method) {
                problems.push(Diagnostic::error(path, None, format!(
                    "access method `{method}` must be printable text without spaces, at most 200 bytes"
                )));
            }
            if groups.is_empty() || groups.iter().any(|g| !valid_name(g)) {
                problems.push(Diagnostic::error(path, None, format!(
                    "access method `{method}` must belong to at least one group, each a short name (letters, digits, `-`, `_`)"
                )));
            }
        }
        let groups: BTreeSet<&str> = file
            .access_methods
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        let regions: BTreeSet<&str> = destinations.regions.values().map(String::as_str).collect();

        let mut plans = BTreeMap::new();
        for entry in &file.plan {
            let span = entry.span();
            let p = entry.get_ref();
            let mut bad = |message: String| {
                problems.push(Diagnostic::error(
                    path,
                    at(span.clone()),
                    format!("plan `{}`: {message}", p.id),
                ));
            };
            if !valid_id(&p.id) {
                bad("the id must be lowercase letters, digits and dashes".into());
            }
            if plans.contains_key(&p.id) {
                bad("defined twice in this file".into());
            }
            check_rates(&p.rates, p.kind, &mut bad);
            // `max_destinations_by` refines a maximum; accounts it does not
            // name need one too.
            if p.kind == PlanKind::Unlimited
                && p.max_destinations.is_none()
                && file.max_destinations.is_none()
            {
                bad("an unlimited plan needs a maximum of destinations (`max_destinations` here or in the file)".into());
            }
            if p.kind != PlanKind::Unlimited
                && (p.max_destinations.is_some()
                    || p.association_secs.is_some()
                    || p.max_destinations_by != MaxDestinationsBy::default())
            {
                bad(
                    "destination limits and association periods apply to unlimited plans only"
                        .into(),
                );
            }
            for region in p.max_destinations_by.region.keys() {
                if !regions.contains(region.as_str()) {
                    bad(format!(
                        "`max_destinations_by.region` names `{region}`, which no destination prefix has"
                    ));
                }
            }
            if p.association_secs == Some(0) {
                bad("`association_secs` must be positive".into());
            }
            if p.low_balance_threshold
                .is_some_and(|t| !(0..=MAX_AMOUNT).contains(&t))
            {
                bad(format!(
                    "`low_balance_threshold` must be from 0 to {MAX_AMOUNT}"
                ));
            }
            if p.max_duration_secs
                .is_some_and(|s| !(1..=MAX_DURATION_SECS).contains(&s))
            {
                bad(format!(
                    "`max_duration_secs` must be from 1 to {MAX_DURATION_SECS} (a week)"
                ));
            }
            let usage_window_secs = match p.config.get("usage_window_seconds") {
                None => DEFAULT_USAGE_WINDOW_SECS,
                Some(raw) => match raw.parse::<u64>() {
                    Ok(secs) if (1..=MAX_USAGE_WINDOW_SECS).contains(&secs) => secs,
                    _ => {
                        bad(format!(
                            "`config.usage_window_seconds` must be a number of seconds from 1 to {MAX_USAGE_WINDOW_SECS}"
                        ));
                        DEFAULT_USAGE_WINDOW_SECS
                    }
                },
            };
            if !p.config.0.is_empty() && !has_policy {
                bad(format!(
                    "it has `config` for a plan-policy plugin, but service `{service}` names none in its manifest's `[plugins]`"
                ));
            }
            plans.insert(
                p.id.clone(),
                PlanDef {
                    id: p.id.clone(),
                    service: service.clone(),
                    kind: p.kind,
                    priority: p.priority,
                    rates: p.rates.clone(),
                    ignore: p.ignore.iter().copied().collect(),
                    preferred_only: p.preferred_only,
                    max_destinations: p.max_destinations.or(file.max_destinations),
                    max_destinations_by: p.max_destinations_by.clone(),
                    associate_on: p.associate_on,
                    association_secs: p.association_secs,
                    low_balance_threshold: p.low_balance_threshold,
                    max_duration_secs: p.max_duration_secs,
                    usage_window_secs,
                    config: p.config.clone(),
                },
            );
        }

        let mut rules = Vec::new();
        for entry in &file.rule {
            let span = entry.span();
            let r = entry.get_ref();
            let mut bad = |message: String| {
                problems.push(Diagnostic::error(
                    path,
                    at(span.clone()),
                    format!("rule for plan `{}`: {message}", r.plan),
                ));
            };
            if !plans.contains_key(&r.plan) {
                bad("no such plan in this file".into());
            }
            for m in &r.access_methods {
                if !file.access_methods.contains_key(m) {
                    bad(format!("access method `{m}` is not in `[access_methods]`"));
                }
            }
            for g in &r.access_groups {
                if !groups.contains(g.as_str()) {
                    bad(format!(
                        "access-method group `{g}` has no access method in `[access_methods]`"
                    ));
                }
            }
            for prefix in &r.destination_prefixes {
                if !digits(prefix) {
                    bad(format!("destination prefix `{prefix}` must be digits"));
                }
            }
            for region in &r.regions {
                if !regions.contains(region.as_str()) {
                    bad(format!(
                        "region `{region}` is not a region of `[destinations.regions]`"
                    ));
                }
            }
            let mut weekdays = Vec::new();
            for day in &r.weekdays {
                match parse_weekday(day) {
                    Some(d) => weekdays.push(d),
                    None => bad(format!(
                        "`{day}` is not a weekday (monday or mon, any case)"
                    )),
                }
            }
            let time = match r.time.as_deref().map(parse_time_range) {
                None => None,
                Some(Some(range)) => Some(range),
                Some(None) => {
                    bad(format!(
                        "time `{}` must be `HH:MM-HH:MM` (24:00 allowed as an end)",
                        r.time.as_deref().unwrap_or("")
                    ));
                    None
                }
            };
            let sequence = match r.sequence.as_deref().map(parse_sequence) {
                None => None,
                Some(Some(range)) => Some(range),
                Some(None) => {
                    bad(format!(
                        "sequence `{}` must be `N`, `N-M` or `N-` with 1 <= N <= M",
                        r.sequence.as_deref().unwrap_or("")
                    ));
                    None
                }
            };
            rules.push(Rule {
                plan: r.plan.clone(),
                accounts: r.accounts.clone(),
                account_groups: r.account_groups.clone(),
                access_methods: r.access_methods.clone(),
                access_groups: r.access_groups.clone(),
                destination_prefixes: r.destination_prefixes.clone(),
                regions: r.regions.clone(),
                carriers: r.carriers.clone(),
                weekdays,
                time,
                sequence,
                attributes: r.attributes.clone(),
            });
        }
        for plan in plans.keys() {
            if !rules.iter().any(|r| &r.plan == plan) {
                problems.push(Diagnostic::warning(path, None, format!(
                    "plan `{plan}` has no selection rule: it is used only as a preferred or alternate plan"
                )));
            }
        }

        if problems.iter().any(Diagnostic::is_error) {
            return Err(problems);
        }
        Ok(ServicePlans {
            service,
            file: path.to_owned(),
            utc_offset_minutes,
            precedence,
            max_destinations: file.max_destinations,
            destinations,
            access_methods: file.access_methods,
            plans,
            rules,
        })
    }
}

fn check_rates(r: &Rates, kind: PlanKind, bad: &mut impl FnMut(String)) {
    let amounts = [
        ("per_minute", r.per_minute),
        ("connection_fee", r.connection_fee),
        ("access_fee", r.access_fee),
        ("activation_fee", r.activation_fee),
        ("surcharge", r.surcharge),
        ("end_surcharge", r.end_surcharge),
        ("subscription_fee", r.subscription_fee),
    ];
    for (name, amount) in amounts {
        if !(0..=MAX_AMOUNT).contains(&amount) {
            bad(format!(
                "`rates.{name}` must be from 0 to {MAX_AMOUNT} minor units"
            ));
        }
    }
    let step = |s: Option<u32>| s.is_some_and(|s| s == 0 || u64::from(s) > MAX_DURATION_SECS);
    if step(Some(r.increment_secs)) || step(r.first_increment_secs) {
        bad(format!(
            "billing increments must be from 1 to {MAX_DURATION_SECS} seconds"
        ));
    }
    if r.surcharge_after_secs
        .is_some_and(|s| u64::from(s) > MAX_DURATION_SECS)
    {
        bad(format!(
            "`rates.surcharge_after_secs` must be at most {MAX_DURATION_SECS}"
        ));
    }
    if r.surcharge > 0 && r.surcharge_after_secs.is_none() {
        bad("`rates.surcharge` needs `rates.surcharge_after_secs`".into());
    }
    match kind {
        PlanKind::Subscription if r.subscription_period_secs.is_none_or(|p| p == 0) => {
            bad(
                "a subscription plan needs `rates.subscription_period_secs` (the paid period)"
                    .into(),
            );
        }
        PlanKind::Subscription => {}
        _ if r.subscription_fee > 0 || r.subscription_period_secs.is_some() => {
            bad("subscription fees and periods apply to subscription plans only".into());
        }
        _ => {}
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Access methods are numbers, addresses, short codes or URLs: printable,
/// no spaces.
pub fn valid_access_method(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// 0 = Monday; full or three-letter names, any case.
pub fn parse_weekday(raw: &str) -> Option<u32> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let raw = raw.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == raw || (raw.len() == 3 && d.starts_with(&raw)))
        .and_then(|i| u32::try_from(i).ok())
}

fn parse_clock(raw: &str, allow_end: bool) -> Option<u32> {
    let (h, m) = raw.trim().split_once(':')?;
    if !(1..=2).contains(&h.len()) || m.len() != 2 || !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if allow_end => Some(1440),
        _ => None,
    }
}

fn parse_time_range(raw: &str) -> Option<TimeRange> {
    let (start, end) = raw.split_once('-')?;
    let range = TimeRange {
        start: parse_clock(start, false)?,
        end: parse_clock(end, true)?,
    };
    (range.start != range.end).then_some(range)
}

fn parse_sequence(raw: &str) -> Option<(u64, Option<u64>)> {
    let raw = raw.trim();
    let (low, high) = match raw.split_once('-') {
        None => {
            let n = raw.parse().ok()?;
            (n, Some(n))
        }
        Some((low, "")) => (low.trim().parse().ok()?, None),
        Some((low, high)) => (low.trim().parse().ok()?, Some(high.trim().parse().ok()?)),
    };
    (low >= 1 && high.is_none_or(|h| h >= low)).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> BTreeMap<String, bool> {
        BTreeMap::from([("calls".to_owned(), true)])
    }

    fn parse(source: &str) -> Result<ServicePlans, Vec<Diagnostic>> {
        ServicePlans::parse(Path::new("rules/plans/calls.toml"), source, &services())
    }

    const GOOD: &str = r#"
service = "calls"
precedence = ["destination", "access_group"]
[destinations]
min_length = 6
regions = { "44" = "uk", "1" = "nanp" }
[access_methods]
"8005550100" = ["toll-free"]
"2125550100" = ["local"]
[[plan]]
id = "standard"
priority = 10
[plan.rates]
per_minute = 5
surcharge_after_secs = 600
surcharge = 5
[[plan]]
id = "unlimited-uk"
kind = "unlimited"
max_destinations = 3
max_destinations_by = { account_group = { vip = 10 } }
[plan.config]
reset_after_destination_uses = 5
[[rule]]
plan = "standard"
destination_prefixes = ["1"]
[[rule]]
plan = "unlimited-uk"
regions = ["uk"]
weekdays = ["fri"]
time = "14:00-16:00"
sequence = "2-"
"#;

    #[test]
    fn a_full_plan_file_reads_with_defaults_and_precedence_completed() {
        let s = parse(GOOD).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(s.precedence[0], Attribute::Destination);
        assert_eq!(s.precedence[1], Attribute::AccessGroup);
        assert_eq!(s.precedence.len(), ATTRIBUTES.len());
        let standard = &s.plans["standard"];
        assert_eq!(standard.rates.increment_secs, 60);
        assert_eq!(standard.usage_window_secs, DEFAULT_USAGE_WINDOW_SECS);
        assert_eq!(s.plans["unlimited-uk"].max_destinations, Some(3));
        assert_eq!(s.rules[1].weekdays, vec![4]);
        assert_eq!(
            s.rules[1].time,
            Some(TimeRange {
                start: 840,
                end: 960
            })
        );
        assert_eq!(s.rules[1].sequence, Some((2, None)));
    }

    #[test]
    fn every_mistake_is_reported_with_its_plan_or_rule() {
        let bad = GOOD
            .replace("per_minute = 5", "per_minute = -5")
            .replace("max_destinations = 3\n", "")
            .replace("time = \"14:00-16:00\"", "time = \"14:00-25:00\"")
            .replace("regions = [\"uk\"]", "regions = [\"mars\"]");
        let errs = parse(&bad).err().unwrap_or_default();
        let text: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(has("`rates.per_minute` must be from 0"), "{text:?}");
        assert!(has("region `mars`"), "{text:?}");
        assert!(has("time `14:00-25:00`"), "{text:?}");
        assert!(
            errs.iter()
                .all(|d| d.line.is_some() || d.message.contains("access method")),
            "{errs:?}"
        );
    }

    #[test]
    fn an_unknown_key_names_itself_and_a_wrong_service_is_refused() {
        let errs = parse(&GOOD.replace("priority = 10", "priorty = 10"))
            .err()
            .unwrap_or_default();
        assert!(errs[0].message.contains("priorty"), "{errs:?}");
        let errs = parse(&GOOD.replace("service = \"calls\"", "service = \"other\""))
            .err()
            .unwrap_or_default();
        assert!(errs[0].message.contains("no manifest"), "{errs:?}");
    }

    #[test]
    fn time_ranges_wrap_past_midnight() {
        let night = parse_time_range("22:00-06:00").unwrap_or_else(|| panic!("parses"));
        assert!(night.contains(23 * 60) && night.contains(5 * 60) && !night.contains(12 * 60));
        assert!(parse_time_range("10:00-10:00").is_none());
        assert_eq!(parse_sequence("3"), Some((3, Some(3))));
        assert_eq!(parse_sequence("0-2"), None);
        assert_eq!(parse_sequence("5-2"), None);
    }
}
