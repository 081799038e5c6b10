//! What is in force for one company: its own overrides (set by the operator, `NULL` when
//! unset) merged over the configured defaults, in this one place. Every rule that has a
//! per-company override reads it from here: the rate limits (initiate, status) and the
//! retention window.

use truenumber_entities::company;

use crate::config::Config;

/// A company's own settings; `None` means "the configured default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Initiations per hour and mode.
    pub initiate_per_hour: Option<u32>,
    /// Status reads (and listings) per hour and mode.
    pub status_per_hour: Option<u32>,
    /// Days a completed session is kept (1–3650).
    pub data_retention_days: Option<u32>,
}

/// The settings in force for a company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `RATE_LIMIT_INITIATE_PER_HOUR`, or the company's own.
    pub initiate_per_hour: u32,
    /// `RATE_LIMIT_STATUS_PER_HOUR`, or the company's own.
    pub status_per_hour: u32,
    /// `RATE_LIMIT_SUBMIT_PER_MINUTE` (per session; no company override).
    pub submit_per_minute: u32,
    /// `DATA_RETENTION_DAYS`, or the company's own.
    pub data_retention_days: u32,
}

/// A stored override: `NULL`, or a value a `u32` holds (a negative one, which the columns'
/// CHECKs refuse anyway, counts as unset).
fn stored(v: Option<i32>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

impl Overrides {
    /// The overrides stored on a company's row.
    pub fn from_row(row: &company::Model) -> Self {
        Self::from_columns(
            row.rate_limit_initiate_per_hour,
            row.rate_limit_status_per_hour,
            row.data_retention_days,
        )
    }

    /// The overrides from the three stored columns.
    pub fn from_columns(
        initiate_per_hour: Option<i32>,
        status_per_hour: Option<i32>,
        data_retention_days: Option<i32>,
    ) -> Self {
        Self {
            initiate_per_hour: stored(initiate_per_hour),
            status_per_hour: stored(status_per_hour),
            data_retention_days: stored(data_retention_days),
        }
    }

    /// These overrides merged over the configuration.
    pub fn in_force(&self, config: &Config) -> Policy {
        Policy {
            initiate_per_hour: self
                .initiate_per_hour
                .unwrap_or(config.rate_limit_initiate_per_hour),
            status_per_hour: self
                .status_per_hour
                .unwrap_or(config.rate_limit_status_per_hour),
            submit_per_minute: config.rate_limit_submit_per_minute,
            data_retention_days: self.retention_days_or(config.data_retention_days),
        }
    }

    /// The retention window in force when the configured default is `default_days` (the
    /// worker's sweep holds only that value of the configuration).
    pub fn retention_days_or(&self, default_days: u32) -> u32 {
        self.data_retention_days.unwrap_or(default_days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_companys_own_values_win_and_unset_ones_fall_back() {
        let config = Config::from_lookup(|n| match n {
            "JWT_SECRET" => Some("x".repeat(32)),
            "RATE_LIMIT_INITIATE_PER_HOUR" => Some("100".into()),
            "RATE_LIMIT_STATUS_PER_HOUR" => Some("1000".into()),
            "RATE_LIMIT_SUBMIT_PER_MINUTE" => Some("10".into()),
            "DATA_RETENTION_DAYS" => Some("30".into()),
            _ => None,
        })
        .unwrap();
        let defaults = Overrides::default().in_force(&config);
        assert_eq!(
            defaults,
            Policy {
                initiate_per_hour: 100,
                status_per_hour: 1000,
                submit_per_minute: 10,
                data_retention_days: 30
            }
        );
        let own = Overrides::from_columns(Some(7), None, Some(365)).in_force(&config);
        assert_eq!(
            (
                own.initiate_per_hour,
                own.status_per_hour,
                own.data_retention_days
            ),
            (7, 1000, 365)
        );
        // A stored negative value counts as unset.
        assert_eq!(
            Overrides::from_columns(Some(-1), None, None).initiate_per_hour,
            None
        );
        assert_eq!(Overrides::default().retention_days_or(14), 14);
    }
}
