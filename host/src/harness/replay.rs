//! Replay: recorded decisions re-evaluated on a candidate plugin, each with
//! the context and call it was decided on (its `now` included), and compared
//! with what was decided then. Used by `rulehost replay` and
//! `POST /v1/plugins/{name}/replay` to tell whether a new version would have
//! decided the past differently before it goes live.
//!
//! Two answers agree when both pass at the same level, both fail with the
//! same failure code (the reason text may change), or both are errors (a
//! fault or a refusal to decide, whatever its message).
//!
//! A candidate that runs out of time [`MAX_TIMEOUTS`] times is replayed no
//! further: each such call holds a core for the whole time limit, and ten
//! thousand of them would hold it for minutes. Over HTTP a replay also ends
//! after a budget of time in all ([`replay_within`]). Either way the report
//! says where it stopped, and a stopped replay does not pass as agreement.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::contract::{Call, Context, Outcome, Verdict};
use crate::runtime::{Binding, CallErrorKind};
use crate::store::entitlement::DecisionRow;

/// What a decision came to, as replay compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Answer {
    Pass {
        level: String,
    },
    Fail {
        code: String,
    },
    /// The plugin faulted or declined to decide.
    Error {
        message: String,
    },
}

impl Answer {
    /// What a recorded decision said.
    pub fn recorded(row: &DecisionRow) -> Answer {
        match row.verdict.as_str() {
            "pass" => Answer::Pass {
                level: row.level.clone().unwrap_or_default(),
            },
            "fail" => Answer::Fail {
                code: row.failure_code.clone().unwrap_or_default(),
            },
            other => Answer::Error {
                message: row
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("recorded as `{other}`")),
            },
        }
    }

    /// What a call on the candidate said, judged as an entitlement check
    /// does, and whether the call ran out of time.
    fn of_call(binding: &Binding, ctx: &Context, call: &Call) -> (Answer, bool) {
        let answer = match binding.call(ctx, call) {
            Err(e) => {
                let timed_out = matches!(e.kind, CallErrorKind::Timeout { .. });
                let message = e.to_string();
                return (Answer::Error { message }, timed_out);
            }
            Ok(report) => match report.outcome {
                Outcome::Verdict(Verdict::Pass { level }) => Answer::Pass { level },
                Outcome::Verdict(Verdict::Fail(failure)) => Answer::Fail {
                    code: serde_json::to_value(failure.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                },
                Outcome::Error { error } => Answer::Error {
                    message: format!("declined to decide: {error}"),
                },
                other => Answer::Error {
                    message: format!("answered a `{}` call with {other:?}", call.name()),
                },
            },
        };
        (answer, false)
    }

    /// Whether two answers are the same decision.
    pub fn agrees(&self, other: &Answer) -> bool {
        match (self, other) {
            (Answer::Pass { level: a }, Answer::Pass { level: b }) => a == b,
            (Answer::Fail { code: a }, Answer::Fail { code: b }) => a == b,
            (Answer::Error { .. }, Answer::Error { .. }) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Pass { level } => write!(f, "pass ({level})"),
            Answer::Fail { code } => write!(f, "fail ({code})"),
            Answer::Error { message } => write!(f, "error: {message}"),
        }
    }
}

/// One decision the candidate would have made differently.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub decision_id: i64,
    pub request_id: String,
    pub account_id: String,
    pub old: Answer,
    pub new: Answer,
    /// The recorded `{"context": ..., "call": ...}`.
    pub inputs: Value,
}

/// A decision whose recorded inputs could not be read back: not replayed.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub decision_id: i64,
    pub request_id: String,
    pub message: String,
}

/// What a replay found: `total = agree + differ.len() + unreadable.len()`,
/// the decisions replayed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub total: usize,
    pub agree: usize,
    pub differ: Vec<Difference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
    /// Why the replay ended before the last decision, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// Calls that run out of time before a replay stops.
pub const MAX_TIMEOUTS: usize = 5;

impl ReplayReport {
    /// `100 decisions: 97 agree, 3 differ`.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} decision{}: {} agree, {} differ",
            self.total,
            if self.total == 1 { "" } else { "s" },
            self.agree,
            self.differ.len()
        );
        if !self.unreadable.is_empty() {
            text.push_str(&format!(", {} unreadable", self.unreadable.len()));
        }
        if let Some(stopped) = &self.stopped {
            text.push_str(&format!("; {stopped}"));
        }
        text
    }
}

/// The recorded inputs of a decision.
pub fn inputs(row: &DecisionRow) -> Result<(Context, Call), String> {
    let context = serde_json::from_value(row.inputs["context"].clone())
        .map_err(|e| format!("recorded context: {e}"))?;
    let call = serde_json::from_value(row.inputs["call"].clone())
        .map_err(|e| format!("recorded call: {e}"))?;
    Ok((context, call))
}

/// Re-runs every decision on `binding` and compares.
pub fn replay(binding: &Binding, decisions: &[DecisionRow]) -> ReplayReport {
    replay_within(binding, decisions, None)
}

/// [`replay`] that also stops once it has run for `budget` in all.
pub fn replay_within(
    binding: &Binding,
    decisions: &[DecisionRow],
    budget: Option<Duration>,
) -> ReplayReport {
    let started = Instant::now();
    let mut report = ReplayReport::default();
    let mut timeouts = 0;
    for (done, row) in decisions.iter().enumerate() {
        let why = if timeouts >= MAX_TIMEOUTS {
            Some(format!("the candidate ran out of time {timeouts} times"))
        } else {
            budget
                .filter(|budget| started.elapsed() >= *budget)
                .map(|budget| format!("the replay ran for its {} s", budget.as_secs()))
        };
        if let Some(why) = why {
            report.stopped = Some(format!(
                "stopped after {done} of {} decisions: {why}",
                decisions.len()
            ));
            break;
        }
        report.total += 1;
        let (ctx, call) = match inputs(row) {
            Ok(inputs) => inputs,
            Err(message) => {
                report.unreadable.push(Unreadable {
                    decision_id: row.id,
                    request_id: row.request_id.clone(),
                    message,
                });
                continue;
            }
        };
        let old = Answer::recorded(row);
        let (new, timed_out) = Answer::of_call(binding, &ctx, &call);
        timeouts += usize::from(timed_out);
        if old.agrees(&new) {
            report.agree += 1;
        } else {
            report.differ.push(Difference {
                decision_id: row.id,
                request_id: row.request_id.clone(),
                account_id: row.account_id.clone(),
                old,
                new,
                inputs: row.inputs.clone(),
            });
        }
    }
    report
}

/// A one-line summary of a decision's inputs: the account's facts for a
/// verify call, the call's JSON otherwise.
pub fn summarize_inputs(inputs: &Value) -> String {
    let call = &inputs["call"];
    let now = inputs["context"]["now"].as_str().unwrap_or("?");
    let Some(verify) = call.get("verify") else {
        return format!("now={now} {call}");
    };
    let account = &verify["account"];
    if account.is_null() {
        return format!("now={now} account=none");
    }
    let mut parts = vec![format!("now={now}")];
    for key in ["status", "paid_up", "tier", "contract_end"] {
        match &account[key] {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => parts.push(format!("{key}={s}")),
            other => parts.push(format!("{key}={other}")),
        }
    }
    if let Some(attributes) = account["attributes"].as_object()
        && !attributes.is_empty()
    {
        parts.push(format!("attributes={}", account["attributes"]));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(verdict: &str, level: Option<&str>, code: Option<&str>) -> DecisionRow {
        DecisionRow {
            id: 7,
            at: 0,
            service: "support-contract".into(),
            account_id: "acme-1".into(),
            request_id: "r1".into(),
            inputs_digest: String::new(),
            inputs: json!({
                "context": {"service": "support-contract", "config": {}, "now": "2026-11-20T10:00:00Z"},
                "call": {"verify": {"request": {"id": "r1", "account_id": "acme-1"},
                    "account": {"id": "acme-1", "status": "active", "paid_up": true, "tier": "gold"}}}
            }),
            verdict: verdict.into(),
            level: level.map(Into::into),
            failure_code: code.map(Into::into),
            reason: (verdict == "error").then(|| "trapped".into()),
            plugin: "support-contract".into(),
            plugin_digest: String::new(),
            duration_us: 0,
        }
    }

    fn pass(level: &str) -> Answer {
        Answer::Pass {
            level: level.into(),
        }
    }

    fn fail(code: &str) -> Answer {
        Answer::Fail { code: code.into() }
    }

    fn error(message: &str) -> Answer {
        Answer::Error {
            message: message.into(),
        }
    }

    #[test]
    fn recorded_decisions_read_as_answers() {
        assert_eq!(
            Answer::recorded(&row("pass", Some("gold"), None)),
            pass("gold")
        );
        assert_eq!(
            Answer::recorded(&row("fail", None, Some("expired"))),
            fail("expired")
        );
        assert_eq!(
            Answer::recorded(&row("error", None, None)),
            error("trapped")
        );
    }

    #[test]
    fn answers_agree_on_verdict_level_and_code_not_on_messages() {
        assert!(pass("gold").agrees(&pass("gold")));
        assert!(!pass("gold").agrees(&pass("basic")), "another level");
        assert!(fail("expired").agrees(&fail("expired")));
        assert!(!fail("expired").agrees(&fail("unpaid")), "another code");
        assert!(!pass("gold").agrees(&fail("expired")));
        assert!(
            error("trap").agrees(&error("timeout")),
            "a fault is a fault"
        );
        assert!(!error("trap").agrees(&pass("gold")));
        assert!(!fail("expired").agrees(&error("trap")));
    }

    #[test]
    fn recorded_inputs_read_back_as_context_and_call() {
        let (ctx, call) = inputs(&row("pass", Some("gold"), None)).unwrap();
        assert_eq!(ctx.service, "support-contract");
        assert_eq!(ctx.now.to_string(), "2026-11-20T10:00:00Z");
        assert_eq!(call.name(), "verify");
        let mut broken = row("pass", Some("gold"), None);
        broken.inputs = json!({"context": {}, "call": {}});
        assert!(inputs(&broken).unwrap_err().starts_with("recorded context"));
    }

    #[test]
    fn the_summary_counts_and_the_inputs_read_short() {
        let report = ReplayReport {
            total: 3,
            agree: 2,
            differ: vec![Difference {
                decision_id: 1,
                request_id: "r1".into(),
                account_id: "a".into(),
                old: pass("gold"),
                new: fail("expired"),
                inputs: Value::Null,
            }],
            unreadable: Vec::new(),
            stopped: None,
        };
        assert_eq!(report.summary(), "3 decisions: 2 agree, 1 differ");
        let stopped = ReplayReport {
            stopped: Some("stopped after 3 of 9 decisions".into()),
            ..report.clone()
        };
        assert_eq!(
            stopped.summary(),
            "3 decisions: 2 agree, 1 differ; stopped after 3 of 9 decisions"
        );
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value["differ"][0]["old"],
            json!({"verdict": "pass", "level": "gold"})
        );
        assert_eq!(
            value["differ"][0]["new"],
            json!({"verdict": "fail", "code": "expired"})
        );
        assert!(value.get("unreadable").is_none());
        assert_eq!(
            summarize_inputs(&row("pass", None, None).inputs),
            "now=2026-11-20T10:00:00Z status=active paid_up=true tier=gold"
        );
        assert_eq!(
            summarize_inputs(
                &json!({"context": {"now": "t"}, "call": {"verify": {"account": null}}})
            ),
            "now=t account=none"
        );
        assert_eq!(pass("gold").to_string(), "pass (gold)");
        assert_eq!(fail("expired").to_string(), "fail (expired)");
    }
}
