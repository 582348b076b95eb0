//! The delivery state machine: what a batch of [`Outcome`]s does to deliveries and to their
//! endpoints' circuit breakers, written once for every backend.
//!
//! A backend reads the rows the batch touches (locked, or inside its only writer), hands them to
//! [`apply`], and writes back the rows it marked dirty with a conditional update on the state it
//! read (status, lease owner and lease end), never a blind overwrite. The rules:
//!
//! - **The lease decides.** An outcome moves its delivery only while the lease it was claimed
//!   under is still the delivery's lease: same owner and same lease end (the version: a new
//!   claim, a release at shutdown, a manual retry or an endpoint enabled again each change it).
//!   A late report, from a worker whose lease expired and passed to another, or was released,
//!   changes nothing: its attempt is kept in the log as `superseded` (the request was sent; at
//!   least once means it may have arrived), and neither the delivery nor the breaker moves.
//! - **Succeeded** finishes the delivery. **Retry** makes it due again at the given time
//!   (paused instead when its endpoint is disabled). **Failed** finishes it for good. **Defer**
//!   (rate limited, no attempt) makes it due again without counting an attempt. **Cancel** (the
//!   endpoint is gone, or its transformation cancelled the request) cancels it whoever holds
//!   it, and never counts for the breaker. Finished deliveries never reopen here.
//! - **The breaker.** A successful attempt resets its endpoint's consecutive failures; a failed
//!   one counts (from the first failure's start). When the count reaches `failure_threshold`
//!   and the failures span `min_failing_ms`, the endpoint is disabled (`circuit_breaker`) and
//!   its pending deliveries pause: those in the batch here, the rest by the backend
//!   ([`Applied::tripped`]).

use std::collections::HashMap;

use crate::{BreakerPolicy, DeliveryStatus, Millis, NewAttempt, Next, Outcome, TrippedEndpoint};

/// Delivery statuses as stored (both backends keep the same numbers).
pub(crate) const PENDING: i64 = DeliveryStatus::Pending.as_i64();
pub(crate) const SUCCEEDED: i64 = DeliveryStatus::Succeeded.as_i64();
pub(crate) const FAILED: i64 = DeliveryStatus::Failed.as_i64();
pub(crate) const PAUSED: i64 = DeliveryStatus::Paused.as_i64();
pub(crate) const CANCELLED: i64 = DeliveryStatus::Cancelled.as_i64();

/// An endpoint's breaker state as the machine reads and changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointRow {
    pub(crate) enabled: bool,
    pub(crate) deleted: bool,
    pub(crate) consecutive_failures: i64,
    pub(crate) failing_since: Option<Millis>,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) disabled_at: Option<Millis>,
    pub(crate) updated_at: Millis,
    /// Changed by [`apply`]: to be written back.
    pub(crate) dirty: bool,
}

/// The lease part of a delivery as it was read: what a write-back is conditional on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseRead {
    pub(crate) status: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) next_attempt_at: Millis,
}

/// A delivery as the machine reads and changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryRow {
    pub(crate) endpoint_id: String,
    pub(crate) status: i64,
    pub(crate) attempt_count: i64,
    /// While leased, the lease's end (a claim sets it).
    pub(crate) next_attempt_at: Millis,
    pub(crate) lease_owner: Option<String>,
    pub(crate) last_status_code: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) completed_at: Option<Millis>,
    pub(crate) updated_at: Millis,
    /// The state as read: the write-back applies only if the row still has it.
    pub(crate) read: LeaseRead,
    /// Changed by [`apply`]: to be written back.
    pub(crate) dirty: bool,
}

impl DeliveryRow {
    /// A row as read (not dirty).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read(
        endpoint_id: String,
        status: i64,
        attempt_count: i64,
        next_attempt_at: Millis,
        lease_owner: Option<String>,
        last_status_code: Option<i64>,
        last_error: Option<String>,
        completed_at: Option<Millis>,
        updated_at: Millis,
    ) -> DeliveryRow {
        DeliveryRow {
            read: LeaseRead {
                status,
                lease_owner: lease_owner.clone(),
                next_attempt_at,
            },
            endpoint_id,
            status,
            attempt_count,
            next_attempt_at,
            lease_owner,
            last_status_code,
            last_error,
            completed_at,
            updated_at,
            dirty: false,
        }
    }

    /// Whether `o` was reported under the delivery's current lease.
    fn leased_to(&self, o: &Outcome) -> bool {
        self.lease_owner.as_deref() == Some(o.lease_owner.as_str())
            && self.next_attempt_at == o.lease_until
    }
}

/// What a batch did, beyond the rows it changed.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Endpoints the breaker disabled; the backend pauses their other pending deliveries.
    pub(crate) tripped: Vec<TrippedEndpoint>,
    /// Per outcome with an attempt, in order: the attempt and its label for the log.
    pub(crate) attempts: Vec<(usize, &'static str)>,
}

/// The label an attempt is logged with.
fn label(next: Next) -> &'static str {
    match next {
        Next::Succeeded => "succeeded",
        Next::Retry { .. } => "retrying",
        Next::Failed => "failed",
        Next::Defer { .. } => "deferred",
        Next::Cancel => "cancelled",
    }
}

/// An attempt reported under a lease that is no longer the delivery's.
pub(crate) const SUPERSEDED: &str = "superseded";

fn last_error_of(a: Option<&NewAttempt>) -> Option<String> {
    a.and_then(|a| match (&a.error_class, &a.error_message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    })
}

/// Applies `outcomes`, in order, to the rows read for them (`deliveries` by id, `endpoints` by
/// id: every endpoint named by an outcome or owning one of the deliveries). Pure: no I/O.
pub(crate) fn apply(
    endpoints: &mut HashMap<String, EndpointRow>,
    deliveries: &mut HashMap<String, DeliveryRow>,
    outcomes: &[Outcome],
    breaker: &BreakerPolicy,
    now: Millis,
) -> Applied {
    let mut applied = Applied::default();
    for (i, o) in outcomes.iter().enumerate() {
        let attempt = o.attempt.as_ref();
        let current = deliveries
            .get(&o.delivery_id)
            .is_some_and(|d| d.leased_to(o));
        if attempt.is_some() {
            applied
                .attempts
                .push((i, if current { label(o.next) } else { SUPERSEDED }));
        }
        // Only the current holder's attempt says anything about the endpoint.
        // A cancelled delivery (its endpoint gone, or a transformation cancelled it) says
        // nothing about the receiver.
        if let Some(a) = attempt
            && current
            && !matches!(o.next, Next::Cancel)
        {
            breaker_bookkeeping(endpoints, deliveries, o, a, breaker, now, &mut applied);
        }
        // Cancel is not a report on the lease: the endpoint is gone, whoever holds it. Every
        // other transition needs the lease.
        if !current && !matches!(o.next, Next::Cancel) {
            continue;
        }
        let inc = i64::from(attempt.is_some() && current);
        let code = attempt.and_then(|a| a.status_code);
        let Some(d) = deliveries.get_mut(&o.delivery_id) else {
            continue;
        };
        let open = matches!(d.status, PENDING | PAUSED);
        match o.next {
            Next::Succeeded if open => {
                d.status = SUCCEEDED;
                d.attempt_count = d.attempt_count.saturating_add(inc);
                d.last_status_code = code;
                d.last_error = None;
                d.completed_at = Some(now);
            }
            Next::Retry { at } if open => {
                let enabled = endpoints.get(&d.endpoint_id).is_some_and(|e| e.enabled);
                d.status = if enabled { PENDING } else { PAUSED };
                d.attempt_count = d.attempt_count.saturating_add(inc);
                d.next_attempt_at = at;
                d.last_status_code = code;
                d.last_error = last_error_of(attempt);
            }
            Next::Failed if open => {
                d.status = FAILED;
                d.attempt_count = d.attempt_count.saturating_add(inc);
                d.last_status_code = code;
                d.last_error = last_error_of(attempt);
                d.completed_at = Some(now);
            }
            Next::Defer { at } if d.status == PENDING => {
                d.next_attempt_at = at;
            }
            Next::Cancel if open => {
                d.status = CANCELLED;
                if attempt.is_some() {
                    d.last_error = last_error_of(attempt);
                }
                d.completed_at = Some(now);
            }
            _ => continue,
        }
        d.lease_owner = None;
        d.updated_at = now;
        d.dirty = true;
    }
    applied
}

/// A current attempt's effect on its endpoint's breaker.
fn breaker_bookkeeping(
    endpoints: &mut HashMap<String, EndpointRow>,
    deliveries: &mut HashMap<String, DeliveryRow>,
    o: &Outcome,
    a: &NewAttempt,
    breaker: &BreakerPolicy,
    now: Millis,
    applied: &mut Applied,
) {
    let Some(ep) = endpoints.get_mut(&o.endpoint_id) else {
        return;
    };
    if matches!(o.next, Next::Succeeded) {
        if ep.consecutive_failures != 0 || ep.failing_since.is_some() {
            ep.consecutive_failures = 0;
            ep.failing_since = None;
            ep.dirty = true;
        }
        return;
    }
    if ep.deleted {
        return;
    }
    ep.consecutive_failures = ep.consecutive_failures.saturating_add(1);
    let since = *ep.failing_since.get_or_insert(a.started_at);
    ep.dirty = true;
    if breaker.enabled
        && ep.enabled
        && ep.consecutive_failures >= breaker.failure_threshold
        && now.saturating_sub(since) >= breaker.min_failing_ms
    {
        ep.enabled = false;
        ep.disabled_reason = Some("circuit_breaker".into());
        ep.disabled_at = Some(now);
        ep.updated_at = now;
        applied.tripped.push(TrippedEndpoint {
            endpoint_id: o.endpoint_id.clone(),
            consecutive_failures: ep.consecutive_failures,
            failing_since: since,
        });
        // Its pending deliveries in this batch pause now (later outcomes must see them
        // paused); the backend pauses the rest.
        for d in deliveries.values_mut() {
            if d.endpoint_id == o.endpoint_id && d.status == PENDING {
                d.status = PAUSED;
                d.updated_at = now;
                d.dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::attempt;

    const OWNER: &str = "worker-a";
    const LEASE: Millis = 10_000;

    fn endpoint() -> EndpointRow {
        EndpointRow {
            enabled: true,
            deleted: false,
            consecutive_failures: 0,
            failing_since: None,
            disabled_reason: None,
            disabled_at: None,
            updated_at: 0,
            dirty: false,
        }
    }

    fn leased(owner: &str, until: Millis) -> DeliveryRow {
        DeliveryRow::read(
            "ep".into(),
            PENDING,
            2,
            until,
            Some(owner.into()),
            None,
            None,
            None,
            0,
        )
    }

    fn report(next: Next, code: Option<i64>) -> Outcome {
        Outcome {
            delivery_id: "d".into(),
            endpoint_id: "ep".into(),
            attempt: code.map(|code| attempt(3, 5_000, Some(code))),
            next,
            lease_owner: OWNER.into(),
            lease_until: LEASE,
        }
    }

    fn run(
        d: DeliveryRow,
        outcomes: &[Outcome],
        breaker: BreakerPolicy,
    ) -> (DeliveryRow, EndpointRow, Applied) {
        let mut eps = HashMap::from([("ep".to_owned(), endpoint())]);
        let mut ds = HashMap::from([("d".to_owned(), d)]);
        let applied = apply(&mut eps, &mut ds, outcomes, &breaker, 20_000);
        (ds.remove("d").unwrap(), eps.remove("ep").unwrap(), applied)
    }

    const OFF: BreakerPolicy = BreakerPolicy {
        enabled: false,
        failure_threshold: 1,
        min_failing_ms: 0,
    };

    #[test]
    fn a_current_report_moves_the_delivery() {
        let (d, _, a) = run(
            leased(OWNER, LEASE),
            &[report(Next::Succeeded, Some(200))],
            OFF,
        );
        assert_eq!(
            (d.status, d.attempt_count, d.completed_at),
            (SUCCEEDED, 3, Some(20_000))
        );
        assert!(d.dirty && d.lease_owner.is_none());
        assert_eq!(a.attempts, vec![(0, "succeeded")]);

        let (d, _, _) = run(
            leased(OWNER, LEASE),
            &[report(Next::Retry { at: 30_000 }, Some(503))],
            OFF,
        );
        assert_eq!(
            (d.status, d.next_attempt_at, d.last_status_code),
            (PENDING, 30_000, Some(503))
        );
        let (d, _, _) = run(
            leased(OWNER, LEASE),
            &[report(Next::Failed, Some(400))],
            OFF,
        );
        assert_eq!(d.status, FAILED);
        let (d, _, _) = run(
            leased(OWNER, LEASE),
            &[report(Next::Defer { at: 12_000 }, None)],
            OFF,
        );
        assert_eq!(
            (d.status, d.attempt_count, d.next_attempt_at),
            (PENDING, 2, 12_000)
        );
    }

    #[test]
    fn a_late_report_changes_nothing_but_is_logged() {
        let breaker = BreakerPolicy {
            enabled: true,
            failure_threshold: 1,
            min_failing_ms: 0,
        };
        // Claimed again by another worker; released (owner gone); re-claimed by the same owner
        // with a new lease end; finished by the other worker.
        let mut finished = leased("worker-b", 40_000);
        finished.status = SUCCEEDED;
        finished.lease_owner = None;
        for row in [
            leased("worker-b", 40_000),
            DeliveryRow::read("ep".into(), PENDING, 2, 9_000, None, None, None, None, 0),
            leased(OWNER, 41_000),
            finished,
        ] {
            for next in [
                Next::Succeeded,
                Next::Retry { at: 99_000 },
                Next::Failed,
                Next::Defer { at: 99_000 },
            ] {
                let code = (!matches!(next, Next::Defer { .. })).then_some(500);
                let before = row.clone();
                let (d, ep, a) = run(row.clone(), &[report(next, code)], breaker);
                assert_eq!(d, before, "{next:?} moved a delivery it no longer holds");
                assert_eq!(ep, endpoint(), "{next:?} touched the breaker");
                assert!(a.tripped.is_empty());
                let logged: Vec<_> = a.attempts.iter().map(|(_, l)| *l).collect();
                assert_eq!(
                    logged,
                    if code.is_some() {
                        vec![SUPERSEDED]
                    } else {
                        vec![]
                    }
                );
            }
        }
    }

    #[test]
    fn the_breaker_trips_and_pauses_the_batch() {
        let breaker = BreakerPolicy {
            enabled: true,
            failure_threshold: 2,
            min_failing_ms: 0,
        };
        let mut eps = HashMap::from([("ep".to_owned(), endpoint())]);
        let mut ds = HashMap::from([
            ("d".to_owned(), leased(OWNER, LEASE)),
            ("e".to_owned(), leased(OWNER, LEASE)),
            ("f".to_owned(), leased(OWNER, LEASE)),
        ]);
        let mut second = report(Next::Retry { at: 30_000 }, Some(503));
        second.delivery_id = "e".into();
        let applied = apply(
            &mut eps,
            &mut ds,
            &[report(Next::Retry { at: 30_000 }, Some(503)), second],
            &breaker,
            20_000,
        );
        assert_eq!(applied.tripped.len(), 1);
        let ep = &eps["ep"];
        assert!(!ep.enabled && ep.disabled_reason.as_deref() == Some("circuit_breaker"));
        assert_eq!(ep.failing_since, Some(5_000));
        // The first retried before the trip (pending then paused by it), the second after it
        // (paused), the third untouched by an outcome but paused by the trip.
        assert!(["d", "e", "f"].iter().all(|id| ds[*id].status == PAUSED));
        // A success resets.
        let mut ok = report(Next::Succeeded, Some(200));
        ok.delivery_id = "f".into();
        apply(&mut eps, &mut ds, &[ok], &breaker, 20_001);
        assert_eq!(
            (eps["ep"].consecutive_failures, eps["ep"].failing_since),
            (0, None)
        );
        assert_eq!(ds["f"].status, SUCCEEDED);
    }

    #[test]
    fn finished_deliveries_stay_finished_and_cancel_needs_no_lease() {
        let mut done = leased(OWNER, LEASE);
        done.status = FAILED;
        let (d, _, _) = run(done.clone(), &[report(Next::Succeeded, Some(200))], OFF);
        assert_eq!(d, done);
        let mut other = report(Next::Cancel, None);
        other.lease_owner = "someone-else".into();
        let (d, _, _) = run(leased(OWNER, LEASE), &[other], OFF);
        assert_eq!(d.status, CANCELLED);
        // A non-holder's attempt on the way neither counts nor is labelled as the cancel.
        let mut other = report(Next::Cancel, Some(500));
        other.lease_owner = "someone-else".into();
        let trip = BreakerPolicy {
            enabled: true,
            failure_threshold: 1,
            min_failing_ms: 0,
        };
        let (d, ep, a) = run(leased(OWNER, LEASE), &[other], trip);
        assert_eq!((d.status, d.attempt_count), (CANCELLED, 2));
        assert_eq!(ep, endpoint());
        // The holder's cancel (a transformation cancelled the request) does not count either,
        // and says why.
        let mut own = report(Next::Cancel, None);
        own.attempt = Some(crate::NewAttempt {
            error_class: Some("cancelled".into()),
            ..report(Next::Failed, Some(500)).attempt.unwrap()
        });
        let (d, ep, _) = run(leased(OWNER, LEASE), &[own], trip);
        assert_eq!(d.status, CANCELLED);
        assert!(
            d.last_error
                .as_deref()
                .unwrap_or("")
                .starts_with("cancelled")
        );
        assert_eq!(ep, endpoint());
        assert_eq!(a.attempts, vec![(0, SUPERSEDED)]);
    }
}
