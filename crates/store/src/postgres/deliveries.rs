//! The write transactions of deliveries: subscriptions, endpoint enabling, recorded outcomes
//! (rows locked in a fixed order, the shared state machine, bulk write-back), event creation
//! and retention passes.

use super::*;

// ---------------------------------------------------------------------------------------------
// Shared pieces of write transactions

/// Event-type subscriptions: one row per type, or a single `*` row for "every type".
pub(super) async fn write_event_types(
    c: &mut PgConnection,
    endpoint_id: &str,
    types: &[String],
) -> std::result::Result<(), TxError> {
    sqlx::query("DELETE FROM endpoint_event_types WHERE endpoint_id = $1")
        .bind(endpoint_id)
        .execute(&mut *c)
        .await?;
    let types: Vec<&str> = if types.is_empty() {
        vec!["*"]
    } else {
        types.iter().map(String::as_str).collect()
    };
    sqlx::query(
        "INSERT INTO endpoint_event_types (event_type, endpoint_id) \
         SELECT t, $2 FROM UNNEST($1::text[]) AS t ON CONFLICT DO NOTHING",
    )
    .bind(types)
    .bind(endpoint_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn set_enabled_tx(
    c: &mut PgConnection,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
    now: Millis,
) -> std::result::Result<bool, TxError> {
    let changed = if enabled {
        sqlx::query(
            "UPDATE endpoints SET enabled = TRUE, disabled_reason = NULL, disabled_at = NULL, \
             consecutive_failures = 0, failing_since = NULL, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE endpoints SET enabled = FALSE, disabled_reason = $2, disabled_at = $3, \
             updated_at = $3 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    };
    if changed == 0 {
        return Ok(false);
    }
    if enabled {
        sqlx::query(concat!(
            "UPDATE deliveries SET status = ",
            st!(pending),
            ", next_attempt_at = $2, lease_owner = NULL, \
             updated_at = $2 WHERE endpoint_id = $1 AND status = ",
            st!(paused)
        ))
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    } else {
        sqlx::query(concat!(
            "UPDATE deliveries SET status = ",
            st!(paused),
            ", updated_at = $2 WHERE endpoint_id = $1 AND status = ",
            st!(pending)
        ))
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// record_outcomes: lock, replay in memory, write back in bulk

/// The whole of `record_outcomes` inside one transaction: about seven statements per batch.
pub(super) async fn record_outcomes_tx(
    c: &mut PgConnection,
    outcomes: &[Outcome],
    breaker: &BreakerPolicy,
    now: Millis,
) -> std::result::Result<Vec<TrippedEndpoint>, TxError> {
    let delivery_ids: Vec<&str> = outcomes
        .iter()
        .map(|o| o.delivery_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let outcome_endpoints: Vec<&str> = outcomes
        .iter()
        .map(|o| o.endpoint_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // 1. Lock the endpoints involved (those named by the outcomes and those the deliveries
    //    belong to), in id order, before any delivery: the order every writer uses.
    let rows = sqlx::query(
        "SELECT id, enabled, deleted_at IS NOT NULL, consecutive_failures, failing_since, \
         disabled_reason, disabled_at, updated_at FROM endpoints \
         WHERE id = ANY($1) OR id IN (SELECT endpoint_id FROM deliveries WHERE id = ANY($2)) \
         ORDER BY id FOR UPDATE",
    )
    .bind(&outcome_endpoints)
    .bind(&delivery_ids)
    .fetch_all(&mut *c)
    .await?;
    let mut endpoints: HashMap<String, EndpointRow> = HashMap::with_capacity(rows.len());
    for r in &rows {
        endpoints.insert(r.try_get(0)?, row::endpoint_state(r, 1)?);
    }

    // 2. Lock the deliveries, in id order.
    let rows = sqlx::query(
        "SELECT id, endpoint_id, status, attempt_count, next_attempt_at, lease_owner, \
         last_status_code, last_error, completed_at, updated_at FROM deliveries \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&delivery_ids)
    .fetch_all(&mut *c)
    .await?;
    let mut deliveries: HashMap<String, DeliveryRow> = HashMap::with_capacity(rows.len());
    for r in &rows {
        deliveries.insert(r.try_get(0)?, row::delivery_state(r, 1)?);
    }

    // 3. The state machine, shared with SQLite.
    let applied = machine::apply(&mut endpoints, &mut deliveries, outcomes, breaker, now);
    let mut attempts = AttemptColumns::default();
    for &(i, label) in &applied.attempts {
        if let Some((o, a)) = outcomes.get(i).and_then(|o| Some((o, o.attempt.as_ref()?))) {
            attempts.push(o, a, label);
        }
    }
    let tripped = applied.tripped;
    let tripped_ids: Vec<&str> = tripped.iter().map(|t| t.endpoint_id.as_str()).collect();

    // 4. Write it all back: one statement per table.
    attempts.insert(&mut *c).await?;

    let mut ep_cols = EndpointColumns::default();
    for (id, ep) in endpoints.iter().filter(|(_, e)| e.dirty) {
        ep_cols.push(id, ep);
    }
    if !ep_cols.id.is_empty() {
        sqlx::query(
            "UPDATE endpoints e SET enabled = u.enabled, disabled_reason = u.disabled_reason, \
             disabled_at = u.disabled_at, consecutive_failures = u.consecutive_failures, \
             failing_since = u.failing_since, updated_at = u.updated_at \
             FROM UNNEST($1::text[], $2::bool[], $3::text[], $4::int8[], $5::int8[], $6::int8[], \
                         $7::int8[]) \
               AS u(id, enabled, disabled_reason, disabled_at, consecutive_failures, \
                    failing_since, updated_at) \
             WHERE e.id = u.id",
        )
        .bind(&ep_cols.id)
        .bind(&ep_cols.enabled)
        .bind(&ep_cols.disabled_reason)
        .bind(&ep_cols.disabled_at)
        .bind(&ep_cols.consecutive_failures)
        .bind(&ep_cols.failing_since)
        .bind(&ep_cols.updated_at)
        .execute(&mut *c)
        .await?;
    }

    let mut d_cols = DeliveryColumns::default();
    for (id, d) in deliveries.iter().filter(|(_, d)| d.dirty) {
        d_cols.push(id, d);
    }
    if !d_cols.id.is_empty() {
        // Conditional on the state read (under FOR UPDATE it cannot have moved; if it ever did,
        // the whole batch is refused rather than overwriting it).
        let changed = sqlx::query(
            "UPDATE deliveries d SET status = u.status, attempt_count = u.attempt_count, \
             next_attempt_at = u.next_attempt_at, lease_owner = u.lease_owner, \
             last_status_code = u.last_status_code, last_error = u.last_error, \
             completed_at = u.completed_at, updated_at = u.updated_at \
             FROM UNNEST($1::text[], $2::int2[], $3::int8[], $4::int8[], $5::text[], $6::int8[], \
                         $7::text[], $8::int8[], $9::int8[], $10::int2[], $11::text[], $12::int8[]) \
               AS u(id, status, attempt_count, next_attempt_at, lease_owner, last_status_code, \
                    last_error, completed_at, updated_at, read_status, read_lease_owner, \
                    read_next_attempt_at) \
             WHERE d.id = u.id AND d.status = u.read_status \
               AND d.lease_owner IS NOT DISTINCT FROM u.read_lease_owner \
               AND d.next_attempt_at = u.read_next_attempt_at",
        )
        .bind(&d_cols.id)
        .bind(&d_cols.status)
        .bind(&d_cols.attempt_count)
        .bind(&d_cols.next_attempt_at)
        .bind(&d_cols.lease_owner)
        .bind(&d_cols.last_status_code)
        .bind(&d_cols.last_error)
        .bind(&d_cols.completed_at)
        .bind(&d_cols.updated_at)
        .bind(&d_cols.read_status)
        .bind(&d_cols.read_lease_owner)
        .bind(&d_cols.read_next_attempt_at)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if changed != d_cols.id.len() as u64 {
            return Err(StoreError::database(
                "a delivery changed while its outcome was being recorded",
                true,
            )
            .into());
        }
    }

    if !tripped_ids.is_empty() {
        // The rest of the tripped endpoints' pending deliveries (none of them in this batch
        // can still be pending: the endpoint stayed disabled after the trip).
        sqlx::query(concat!(
            "UPDATE deliveries SET status = ",
            st!(paused),
            ", updated_at = $2 \
             WHERE endpoint_id = ANY($1) AND status = ",
            st!(pending)
        ))
        .bind(&tripped_ids)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(tripped)
}

#[derive(Default)]
pub(super) struct AttemptColumns {
    pub(super) delivery_id: Vec<String>,
    pub(super) attempt_no: Vec<i64>,
    pub(super) started_at: Vec<i64>,
    pub(super) duration_ms: Vec<i64>,
    pub(super) status_code: Vec<Option<i64>>,
    pub(super) response_body: Vec<Option<String>>,
    pub(super) response_truncated: Vec<bool>,
    pub(super) error_class: Vec<Option<String>>,
    pub(super) error_message: Vec<Option<String>>,
    pub(super) local_addr: Vec<Option<String>>,
    pub(super) remote_addr: Vec<Option<String>>,
    pub(super) outcome: Vec<&'static str>,
    pub(super) request_headers: Vec<Option<String>>,
}

impl AttemptColumns {
    pub(super) fn push(&mut self, o: &Outcome, a: &NewAttempt, label: &'static str) {
        self.delivery_id.push(o.delivery_id.clone());
        self.attempt_no.push(a.attempt_no);
        self.started_at.push(a.started_at);
        self.duration_ms.push(a.duration_ms);
        self.status_code.push(a.status_code);
        self.response_body.push(a.response_body.clone());
        self.response_truncated.push(a.response_truncated);
        self.error_class.push(a.error_class.clone());
        self.error_message.push(a.error_message.clone());
        self.local_addr.push(a.local_addr.clone());
        self.remote_addr.push(a.remote_addr.clone());
        self.outcome.push(label);
        self.request_headers.push(a.request_headers.clone());
    }

    async fn insert(&self, c: &mut PgConnection) -> std::result::Result<(), TxError> {
        if self.delivery_id.is_empty() {
            return Ok(());
        }
        // UNNEST yields rows in array order, so ids follow the order of the outcomes.
        sqlx::query(
            "INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, \
             response_body, response_truncated, error_class, error_message, local_addr, \
             remote_addr, outcome, request_headers) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
                                  $6::text[], $7::bool[], $8::text[], $9::text[], $10::text[], \
                                  $11::text[], $12::text[], $13::text[])",
        )
        .bind(&self.delivery_id)
        .bind(&self.attempt_no)
        .bind(&self.started_at)
        .bind(&self.duration_ms)
        .bind(&self.status_code)
        .bind(&self.response_body)
        .bind(&self.response_truncated)
        .bind(&self.error_class)
        .bind(&self.error_message)
        .bind(&self.local_addr)
        .bind(&self.remote_addr)
        .bind(&self.outcome)
        .bind(&self.request_headers)
        .execute(&mut *c)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct EndpointColumns<'a> {
    pub(super) id: Vec<&'a str>,
    pub(super) enabled: Vec<bool>,
    pub(super) disabled_reason: Vec<Option<&'a str>>,
    pub(super) disabled_at: Vec<Option<i64>>,
    pub(super) consecutive_failures: Vec<i64>,
    pub(super) failing_since: Vec<Option<i64>>,
    pub(super) updated_at: Vec<i64>,
}

impl<'a> EndpointColumns<'a> {
    pub(super) fn push(&mut self, id: &'a str, e: &'a EndpointRow) {
        self.id.push(id);
        self.enabled.push(e.enabled);
        self.disabled_reason.push(e.disabled_reason.as_deref());
        self.disabled_at.push(e.disabled_at);
        self.consecutive_failures.push(e.consecutive_failures);
        self.failing_since.push(e.failing_since);
        self.updated_at.push(e.updated_at);
    }
}

#[derive(Default)]
pub(super) struct DeliveryColumns<'a> {
    pub(super) id: Vec<&'a str>,
    pub(super) read_status: Vec<i16>,
    pub(super) read_lease_owner: Vec<Option<&'a str>>,
    pub(super) read_next_attempt_at: Vec<i64>,
    pub(super) status: Vec<i16>,
    pub(super) attempt_count: Vec<i64>,
    pub(super) next_attempt_at: Vec<i64>,
    pub(super) lease_owner: Vec<Option<&'a str>>,
    pub(super) last_status_code: Vec<Option<i64>>,
    pub(super) last_error: Vec<Option<&'a str>>,
    pub(super) completed_at: Vec<Option<i64>>,
    pub(super) updated_at: Vec<i64>,
}

impl<'a> DeliveryColumns<'a> {
    pub(super) fn push(&mut self, id: &'a str, d: &'a DeliveryRow) {
        self.id.push(id);
        // Statuses are 0..=4 (machine.rs), always an int2.
        let status = |s: i64| i16::try_from(s).unwrap_or(i16::MAX);
        self.read_status.push(status(d.read.status));
        self.read_lease_owner.push(d.read.lease_owner.as_deref());
        self.read_next_attempt_at.push(d.read.next_attempt_at);
        self.status.push(status(d.status));
        self.attempt_count.push(d.attempt_count);
        self.next_attempt_at.push(d.next_attempt_at);
        self.lease_owner.push(d.lease_owner.as_deref());
        self.last_status_code.push(d.last_status_code);
        self.last_error.push(d.last_error.as_deref());
        self.completed_at.push(d.completed_at);
        self.updated_at.push(d.updated_at);
    }
}

// ---------------------------------------------------------------------------------------------
// create_event

pub(super) async fn create_event_tx(
    c: &mut PgConnection,
    ev: &NewEvent,
    lease: Option<&LeaseRequest>,
    idempotency_ttl_ms: i64,
) -> std::result::Result<CreateEventResult, TxError> {
    let now = ev.created_at;
    if let Some(key) = &ev.idempotency_key {
        // The key's primary key decides between racing instances: the loser's insert waits for
        // the winner's commit, then finds the key taken.
        let mut claimed = false;
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, event_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(&ev.id)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if inserted == 1 {
                claimed = true;
                break;
            }
            let prior: Option<(String, i64)> = sqlx::query_as(
                "SELECT event_id, created_at FROM idempotency_keys WHERE key = $1 FOR UPDATE",
            )
            .bind(key)
            .fetch_optional(&mut *c)
            .await?;
            let Some((event_id, created_at)) = prior else {
                continue; // purged meanwhile: try the insert again
            };
            if now.saturating_sub(created_at) < idempotency_ttl_ms {
                let row = sqlx::query(&format!(
                    "SELECT {EVENT_COLS}, (SELECT count(*) FROM deliveries WHERE event_id = $1) \
                     FROM events WHERE id = $1"
                ))
                .bind(&event_id)
                .fetch_optional(&mut *c)
                .await?
                .ok_or_else(|| StoreError::Corrupt("idempotency key without event".into()))?;
                let deliveries: i64 = row.try_get(6)?;
                return Ok(CreateEventResult::Duplicate {
                    event: row::event(&row)?,
                    deliveries: usize::try_from(deliveries).unwrap_or(0),
                });
            }
            // Expired: the key now names this event.
            sqlx::query(
                "UPDATE idempotency_keys SET event_id = $2, created_at = $3 WHERE key = $1",
            )
            .bind(key)
            .bind(&ev.id)
            .bind(now)
            .execute(&mut *c)
            .await?;
            claimed = true;
            break;
        }
        if !claimed {
            return Err(StoreError::database("idempotency key kept changing", true).into());
        }
    }

    // Insert the event and read (share-locking) the target endpoints in one round trip: the
    // lock makes a concurrent disable either wait for us (and then pause what we create) or
    // finish first (and then we see the endpoint disabled).
    let targets: Vec<crate::filter::Target> = match &ev.only_endpoints {
        Some(ids) => {
            let mut wanted: Vec<&str> = Vec::with_capacity(ids.len());
            for id in ids {
                if !wanted.contains(&id.as_str()) {
                    wanted.push(id);
                }
            }
            let rows: Vec<crate::filter::Target> = sqlx::query_as(&format!(
                "WITH ev AS (INSERT INTO events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)) \
                 SELECT id, enabled, filter FROM endpoints WHERE id = ANY($7) AND deleted_at IS NULL \
                 ORDER BY id FOR SHARE"
            ))
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&ev.payload)
            .bind(&ev.idempotency_key)
            .bind(now)
            .bind(&ev.source_id)
            .bind(&wanted)
            .fetch_all(&mut *c)
            .await?;
            let mut found: HashMap<String, (bool, Option<String>)> =
                rows.into_iter().map(|(id, en, f)| (id, (en, f))).collect();
            wanted
                .into_iter()
                .filter_map(|id| found.remove(id).map(|(en, f)| (id.to_owned(), en, f)))
                .collect()
        }
        None => {
            sqlx::query_as(&format!(
                "WITH ev AS (INSERT INTO events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)) \
                 SELECT id, enabled, filter FROM endpoints WHERE id IN \
                   (SELECT endpoint_id FROM endpoint_event_types WHERE event_type = ANY($7)) \
                 AND deleted_at IS NULL ORDER BY id FOR SHARE"
            ))
            .bind(&ev.id)
            .bind(&ev.event_type)
            .bind(&ev.payload)
            .bind(&ev.idempotency_key)
            .bind(now)
            .bind(&ev.source_id)
            .bind(crate::subscription_keys(&ev.event_type))
            .fetch_all(&mut *c)
            .await?
        }
    };
    let targets = crate::filter::admitted(targets, &ev.event_type, &ev.payload);

    let mut leased_left = lease.map(|l| l.max).unwrap_or(0);
    let mut deliveries = Vec::with_capacity(targets.len());
    let mut ids = Vec::with_capacity(targets.len());
    let mut endpoint_ids = Vec::with_capacity(targets.len());
    let mut statuses = Vec::with_capacity(targets.len());
    let mut next_ats = Vec::with_capacity(targets.len());
    let mut owners: Vec<Option<&str>> = Vec::with_capacity(targets.len());
    for (endpoint_id, enabled) in targets {
        let id = new_id("dlv");
        let status = if enabled {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Paused
        };
        let (next_at, owner) = match lease {
            Some(l) if enabled && leased_left > 0 => {
                leased_left -= 1;
                (l.until, Some(l.owner.as_str()))
            }
            _ => (now, None),
        };
        ids.push(id.clone());
        endpoint_ids.push(endpoint_id.clone());
        statuses.push(status_i16(status));
        next_ats.push(next_at);
        owners.push(owner);
        deliveries.push(CreatedDelivery {
            id,
            endpoint_id,
            leased: owner.is_some(),
        });
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count, \
             next_attempt_at, lease_owner, created_at, updated_at) \
             SELECT d.id, $6, d.endpoint_id, d.status, 0, d.next_attempt_at, d.lease_owner, $7, $7 \
             FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int8[], $5::text[]) \
               AS d(id, endpoint_id, status, next_attempt_at, lease_owner)",
        )
        .bind(&ids)
        .bind(&endpoint_ids)
        .bind(&statuses)
        .bind(&next_ats)
        .bind(&owners)
        .bind(&ev.id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(CreateEventResult::Created {
        event: Event {
            id: ev.id.clone(),
            event_type: ev.event_type.clone(),
            payload: ev.payload.clone(),
            idempotency_key: ev.idempotency_key.clone(),
            created_at: now,
            source_id: ev.source_id.clone(),
        },
        deliveries,
    })
}

// ---------------------------------------------------------------------------------------------
// Retention

pub(super) async fn purge_tx(
    c: &mut PgConnection,
    older_than: Millis,
    batch: i64,
) -> std::result::Result<PurgeCounts, TxError> {
    let mut counts = PurgeCounts::default();
    // Finished deliveries, oldest first; SKIP LOCKED leaves alone any that another instance is
    // touching (a manual retry, a late outcome) right now.
    let ids: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT id FROM deliveries WHERE status IN (",
        st!(succeeded),
        ", ",
        st!(failed),
        ", ",
        st!(cancelled),
        ") AND completed_at < $1 \
         ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(older_than)
    .bind(batch)
    .fetch_all(&mut *c)
    .await?;
    if !ids.is_empty() {
        counts.attempts = sqlx::query(
            "DELETE FROM attempts WHERE id IN \
             (SELECT id FROM attempts WHERE delivery_id = ANY($1) LIMIT $2)",
        )
        .bind(&ids)
        .bind(batch)
        .execute(&mut *c)
        .await?
        .rows_affected();
        // A delivery goes once all its attempts are gone (a later call finishes the rest).
        counts.deliveries = sqlx::query(
            "DELETE FROM deliveries d WHERE d.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id)",
        )
        .bind(&ids)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    counts.idempotency_keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE key IN \
         (SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than)
    .bind(batch)
    .execute(&mut *c)
    .await?
    .rows_affected();
    // Events whose deliveries are all gone, and whose idempotency key (if any) is gone too.
    counts.events = sqlx::query(
        "DELETE FROM events WHERE id IN \
         (SELECT e.id FROM events e WHERE e.created_at < $1 \
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
          AND NOT EXISTS (SELECT 1 FROM idempotency_keys k \
                          WHERE k.key = e.idempotency_key AND k.event_id = e.id) \
          ORDER BY e.created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than)
    .bind(batch)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(counts)
}
