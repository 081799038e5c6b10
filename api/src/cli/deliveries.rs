//! `truenumber-api deliveries …`: list a company's webhook deliveries and redeliver them.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use truenumber_core::{
    config::{Config, Mode},
    queue::Queue,
    webhooks::{self, deliveries},
};

use super::print;

/// A delivery status on the command line, spelt as stored.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeliveryStatusArg {
    /// More attempts to come.
    Pending,
    /// Delivered.
    Succeeded,
    /// Given up; redeliverable.
    Failed,
}

impl From<DeliveryStatusArg> for deliveries::DeliveryStatus {
    fn from(s: DeliveryStatusArg) -> Self {
        match s {
            DeliveryStatusArg::Pending => Self::Pending,
            DeliveryStatusArg::Succeeded => Self::Succeeded,
            DeliveryStatusArg::Failed => Self::Failed,
        }
    }
}

/// `deliveries …` commands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List a company's webhook deliveries (newest first) with their attempts.
    List {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// Only this status.
        #[arg(long, value_enum)]
        status: Option<DeliveryStatusArg>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// Redeliver failed deliveries (one, or all of a company) with a fresh retry schedule.
    Redeliver {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// One delivery.
        #[arg(
            long,
            conflicts_with = "all_failed",
            required_unless_present = "all_failed"
        )]
        delivery_id: Option<uuid::Uuid>,
        /// Every failed delivery of the company.
        #[arg(long)]
        all_failed: bool,
    },
}
pub(super) async fn run(
    command: DeliveriesCommand,
    config: &Config,
    db: &sea_orm::DatabaseConnection,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List {
            company_id,
            status,
            limit,
        } => {
            let mut rows = Vec::new();
            for d in deliveries::list(db, &company_id, status.map(Into::into), limit).await? {
                let attempts = deliveries::attempts(db, d.id).await?;
                let mut v = serde_json::to_value(&d)?;
                v["attemptLog"] = serde_json::to_value(attempts)?;
                rows.push(v);
            }
            print(out, &serde_json::Value::Array(rows))
        }
        DeliveriesCommand::Redeliver {
            company_id,
            delivery_id,
            all_failed: _,
        } => {
            let reopened = deliveries::reopen_failed(db, &company_id, delivery_id).await?;
            if delivery_id.is_some() && reopened.is_empty() {
                anyhow::bail!("no failed delivery with that id for company {company_id}");
            }
            if config.mode == Mode::Standalone {
                // Reopened deliveries are due now; the standalone process's dispatcher (if it
                // runs, else at its next start) sends them within a fraction of a second.
                return print(
                    out,
                    &json!({"companyId": company_id, "redelivered": reopened.len(), "published": reopened.len()}),
                );
            }
            let queue = Queue::from_config(config, db);
            let failed = webhooks::publish_attempts(&queue, &reopened).await;
            for (event_id, e) in &failed {
                // The delivery is pending and due; a worker's overdue sweep sends it.
                tracing::warn!(%event_id, error = %e, "redelivery not published now");
            }
            let published = reopened.len() - failed.len();
            print(
                out,
                &json!({"companyId": company_id, "redelivered": reopened.len(), "published": published}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;
    use sea_orm::ActiveEnum;

    use super::*;

    #[test]
    fn delivery_status_args_are_spelt_as_stored() {
        for a in DeliveryStatusArg::value_variants() {
            let name = a
                .to_possible_value()
                .expect("visible")
                .get_name()
                .to_owned();
            assert_eq!(name, deliveries::DeliveryStatus::from(*a).to_value());
        }
    }
}
