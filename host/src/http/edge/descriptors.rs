//! Open-file descriptors: the soft limit raised to the hard one at start,
//! then shared out so that the two listeners together stay below it with
//! [`RESERVED`] to spare. Connections past a listener's bound wait in the
//! kernel's accept queue and hold no descriptor of the process, so a flood
//! on the public site can never take what the internal API, the database
//! and the plugins need.

/// Descriptors kept for everything but the listeners' connections: the
/// SQLite database (a few files per connection), the watcher, the
/// compiled-plugin cache, outgoing webhook and mail connections, the log.
pub const RESERVED: u64 = 128;

/// Raises the soft open-files limit to the hard limit; the limit now.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return raised.current.unwrap_or(u64::MAX),
            Err(e) => tracing::debug!("cannot raise the open-files limit: {e}"),
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// How many connections each listener may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub internal: usize,
    pub public: usize,
}

/// The configured bounds if they fit under `limit` with [`RESERVED`] to
/// spare; else what fits, shared in proportion to what was asked.
pub fn share(limit: u64, internal: usize, public: usize) -> Result<Budget, String> {
    let available = limit.saturating_sub(RESERVED);
    let wanted = internal as u64 + public as u64;
    if wanted <= available {
        return Ok(Budget { internal, public });
    }
    if available < 2 {
        return Err(format!(
            "the open-files limit is {limit}, and rulehost keeps {RESERVED} of them for its database and plugins: raise it (`ulimit -n`) above {}",
            RESERVED + 2
        ));
    }
    let internal_share = (u128::from(internal as u64) * u128::from(available) / u128::from(wanted))
        .clamp(1, u128::from(available - 1));
    let internal_share = usize::try_from(internal_share).unwrap_or(1);
    let public_share = usize::try_from(available).unwrap_or(usize::MAX) - internal_share;
    Ok(Budget {
        internal: internal_share.min(internal),
        public: public_share.min(public),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_that_fit_are_kept() {
        let budget = share(20_000, 1024, 4096).unwrap();
        assert_eq!(
            budget,
            Budget {
                internal: 1024,
                public: 4096
            }
        );
        assert_eq!(
            share(u64::MAX, 10, 10).unwrap(),
            Budget {
                internal: 10,
                public: 10
            }
        );
    }

    #[test]
    fn bounds_that_do_not_fit_shrink_below_the_limit_with_the_reserve_kept() {
        for (limit, internal, public) in [(1024, 1024, 4096), (256, 20, 500), (131, 1, 1000)] {
            let budget = share(limit, internal, public).unwrap();
            let used = (budget.internal + budget.public) as u64;
            assert!(used + RESERVED <= limit, "{limit}: {budget:?}");
            assert!(
                budget.internal >= 1 && budget.public >= 1,
                "{limit}: {budget:?}"
            );
            assert!(budget.internal <= internal && budget.public <= public);
        }
        assert_eq!(
            share(1024 + RESERVED, 1024, 4096).unwrap(),
            Budget {
                internal: 204,
                public: 820
            }
        );
    }

    #[test]
    fn a_limit_below_the_reserve_is_refused_with_what_to_do() {
        let e = share(100, 10, 10).unwrap_err();
        assert!(e.contains("ulimit -n"), "{e}");
    }
}
