-- control: PR.PS-04
-- standard: NIST CSF 2.0
-- title: Log records are generated and made available for continuous monitoring
--
-- The log is complete (no seq gap), and events reach it soon after they
-- happen and not ahead of its clock. The delay is computed in DOUBLE: a
-- BIGINT difference wraps for an event_time centuries back.

-- metric: ledger_events
SELECT count(*) FROM events WHERE seq < {n};

-- metric: seq_gaps
SELECT {n} - count(*) FROM events WHERE seq < {n};

-- metric: events_in_window
SELECT count(*) FROM events WHERE {w};

-- text: first_event_time
SELECT min(event_time) FROM events WHERE {w};

-- text: last_event_time
SELECT max(event_time) FROM events WHERE {w};

-- metric: delay_seconds_min
SELECT min((CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9)
FROM events WHERE {w};

-- metric: delay_seconds_median
SELECT median((CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9)
FROM events WHERE {w};

-- metric: delay_seconds_max
SELECT max((CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9)
FROM events WHERE {w};

-- metric: events_received_late
SELECT count(*) FROM events WHERE {w}
  AND (CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9 > {LATE_SECS};

-- metric: events_ahead_of_ledger_clock
SELECT count(*) FROM events WHERE {w}
  AND (CAST(CAST(received_at AS BIGINT) AS DOUBLE) - CAST(CAST(event_time AS BIGINT) AS DOUBLE)) / 1e9 < -{FUTURE_SKEW_SECS};

-- note: pdp_drops
-- not measured: PDPs do not report dropped events to the ledger
