//! Bringing followers up to date on demand (the Django package's
//! `sync_followers`).

use std::io::Write;

use super::System;
use crate::error::Result;
use crate::persistence::NotificationQuery;

/// What [`System::sync_followers`] does.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// The followers to bring up to date (all when empty).
    pub followers: Vec<String>,
    /// Run the policies but store nothing: report what would be stored.
    pub dry_run: bool,
    /// 0: a line per follower; 1: also a line per leader; 2: also a line
    /// per notification.
    pub verbosity: u8,
}

/// What happened to one follower.
#[derive(Debug)]
pub struct FollowerReport {
    /// The follower's name.
    pub name: String,
    /// Notifications processed (or, in a dry run, that would be).
    pub processed: usize,
    /// Events stored (or, in a dry run, that would be).
    pub events: usize,
    /// The error that stopped it, if one did (the others still ran).
    pub error: Option<crate::Error>,
}

/// What [`System::sync_followers`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// One report per follower, in declaration order.
    pub followers: Vec<FollowerReport>,
}

impl SyncReport {
    /// Whether every follower was brought up to date.
    pub fn is_ok(&self) -> bool {
        self.followers.iter().all(|f| f.error.is_none())
    }
}

impl System {
    /// Processes every unseen notification for all followers, or the named
    /// ones, writing progress to `out`. A follower's error is reported and
    /// the others still run. With `dry_run`, the policies run but nothing
    /// is stored (so followers of followers see nothing new).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) when a named follower is not
    /// one of the system's. A follower's own error is not this function's:
    /// it is in its [`FollowerReport`].
    pub fn sync_followers(&self, options: &SyncOptions, out: &mut dyn Write) -> Result<SyncReport> {
        for name in &options.followers {
            if self.projection(name).is_none() {
                self.follower(name)?;
            }
        }
        let mut report = SyncReport::default();
        for name in self.followers() {
            if !options.followers.is_empty() && !options.followers.contains(name) {
                continue;
            }
            let mut follower_report = FollowerReport {
                name: name.clone(),
                processed: 0,
                events: 0,
                error: None,
            };
            if let Err(e) = self.sync_one(name, options, &mut follower_report, out) {
                let _ = writeln!(out, "{name}: failed: {e}");
                follower_report.error = Some(e);
            }
            let verb = if options.dry_run {
                "would process"
            } else {
                "processed"
            };
            let _ = writeln!(
                out,
                "{name}: {verb} {} notifications, {} events",
                follower_report.processed, follower_report.events
            );
            report.followers.push(follower_report);
        }
        Ok(report)
    }

    fn sync_one(
        &self,
        name: &str,
        options: &SyncOptions,
        report: &mut FollowerReport,
        out: &mut dyn Write,
    ) -> Result<()> {
        if let Some(projection) = self.projection(name) {
            // A projection's writes are its read model's: a dry run can
            // only count what it would apply.
            let count = if options.dry_run {
                projection.pending()?
            } else {
                projection.pull()? as u64
            };
            report.processed += usize::try_from(count).unwrap_or(usize::MAX);
            return Ok(());
        }
        let follower = self.follower(name)?;
        for leader_name in self.leaders(name) {
            let leader = self.app(leader_name)?;
            let mut start = follower.app.recorder().max_tracking_id(leader_name)? + 1;
            let mut from_leader = 0;
            loop {
                let page = leader
                    .recorder()
                    .select_notifications(&NotificationQuery::new(start, 100))?;
                let Some(last) = page.last() else { break };
                start = last.id + 1;
                for notification in &page {
                    let events = if options.dry_run {
                        follower.dry_run(leader, notification)?
                    } else {
                        match follower.process(leader, notification)? {
                            Some(events) => events,
                            // Processed meanwhile by another runner.
                            None => continue,
                        }
                    };
                    report.processed += 1;
                    report.events += events;
                    from_leader += 1;
                    if options.verbosity >= 2 {
                        let _ = writeln!(
                            out,
                            "{name}: {leader_name} #{} {} -> {events} events",
                            notification.id, notification.event.topic
                        );
                    }
                }
            }
            if !options.dry_run {
                // Read up to the leader's newest: no lag.
                crate::metrics::follower_at(name, leader_name, start - 1, start - 1);
            }
            if options.verbosity >= 1 {
                let _ = writeln!(
                    out,
                    "{name}: {from_leader} notifications from {leader_name}"
                );
            }
        }
        Ok(())
    }
}
