//! What is in force for one company: its own overrides (set by the operator or the company,
//! `NULL` when unset) merged over the configured defaults, in this one place. Every rule that
//! has a per-company override reads it from here: the rate limits (initiate, status, per
//! number), the deny cooldown, the retention window and the countries the company serves.

use std::time::Duration;

use truenumber_entities::company;

use crate::{abuse::countries, config::Config};

/// A company's own settings; `None` means "the configured default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Initiations per hour and mode.
    pub initiate_per_hour: Option<u32>,
    /// Status reads (and listings) per hour and mode.
    pub status_per_hour: Option<u32>,
    /// Days a completed session is kept (1–3650).
    pub data_retention_days: Option<u32>,
    /// Initiations per number, mode and window.
    pub initiate_per_number: Option<u32>,
    /// That window, in seconds.
    pub initiate_per_number_window_seconds: Option<u32>,
    /// Seconds after a deny during which the company may not initiate for that number.
    pub deny_cooldown_seconds: Option<u32>,
    /// The regions the company serves (ISO 3166-1 alpha-2); empty: every region. No
    /// configured default: a company chooses its own.
    pub allowed_countries: Vec<String>,
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
    /// `RATE_LIMIT_INITIATE_PER_NUMBER`, or the company's own.
    pub initiate_per_number: u32,
    /// `RATE_LIMIT_INITIATE_PER_NUMBER_WINDOW_SECONDS`, or the company's own.
    pub initiate_per_number_window: Duration,
    /// `DENY_COOLDOWN_SECONDS`, or the company's own.
    pub deny_cooldown: Duration,
}

/// A stored override: `NULL`, or a value a `u32` holds (a negative one, which the columns'
/// CHECKs refuse anyway, counts as unset).
fn stored(v: Option<i32>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

impl Overrides {
    /// The overrides stored on a company's row.
    pub fn from_row(row: &company::Model) -> Self {
        Self {
            initiate_per_hour: stored(row.rate_limit_initiate_per_hour),
            status_per_hour: stored(row.rate_limit_status_per_hour),
            data_retention_days: stored(row.data_retention_days),
            initiate_per_number: stored(row.rate_limit_initiate_per_number),
            initiate_per_number_window_seconds: stored(
                row.rate_limit_initiate_per_number_window_seconds,
            ),
            deny_cooldown_seconds: stored(row.deny_cooldown_seconds),
            allowed_countries: countries::from_column(row.allowed_countries.as_deref()),
        }
    }

    /// Only a retention window (the sweep reads no other setting).
    pub fn retention(data_retention_days: Option<i32>) -> Self {
        Self {
            data_retention_days: stored(data_retention_days),
            ..Self::default()
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
            initiate_per_number: self
                .initiate_per_number
                .unwrap_or(config.rate_limit_initiate_per_number),
            initiate_per_number_window: self
                .initiate_per_number_window_seconds
                .map_or(config.rate_limit_initiate_per_number_window, |s| {
                    Duration::from_secs(u64::from(s))
                }),
            deny_cooldown: self.deny_cooldown_or(config.deny_cooldown),
        }
    }

    /// The retention window in force when the configured default is `default_days` (the
    /// worker's sweep holds only that value of the configuration).
    pub fn retention_days_or(&self, default_days: u32) -> u32 {
        self.data_retention_days.unwrap_or(default_days)
    }

    /// The deny cooldown in force when the configured default is `default`.
    pub fn deny_cooldown_or(&self, default: Duration) -> Duration {
        self.deny_cooldown_seconds
            .map_or(default, |s| Duration::from_secs(u64::from(s)))
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
                data_retention_days: 30,
                initiate_per_number: 5,
                initiate_per_number_window: Duration::from_secs(600),
                deny_cooldown: Duration::from_secs(86_400),
            }
        );
        let own = Overrides {
            initiate_per_hour: Some(7),
            data_retention_days: Some(365),
            initiate_per_number: Some(2),
            initiate_per_number_window_seconds: Some(60),
            deny_cooldown_seconds: Some(0),
            ..Overrides::default()
        }
        .in_force(&config);
        assert_eq!(
            (
                own.initiate_per_hour,
                own.status_per_hour,
                own.data_retention_days
            ),
            (7, 1000, 365)
        );
        assert_eq!(
            (
                own.initiate_per_number,
                own.initiate_per_number_window,
                own.deny_cooldown
            ),
            (2, Duration::from_secs(60), Duration::ZERO)
        );
        // A stored negative value counts as unset.
        assert_eq!(Overrides::retention(Some(-1)).data_retention_days, None);
        assert_eq!(Overrides::default().retention_days_or(14), 14);
    }
}
