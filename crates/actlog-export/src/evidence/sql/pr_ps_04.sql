-- control: PR.PS-04
-- standard: NIST CSF 2.0
-- title: Log records are generated and made available for continuous monitoring
--
-- The log is complete (no seq gap, and no number missing from a producer's
-- numbered stream: source.stream and source.stream_seq), and events reach
-- it soon after they happen and not ahead of its clock. The delay is computed in DOUBLE: a
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

-- metric: producer_streams
SELECT count(*) FROM (SELECT DISTINCT pdp_id, source_stream(payload) AS stream FROM events
  WHERE {w} AND payload LIKE '%"stream_seq"%') WHERE stream IS NOT NULL;

-- metric: producer_sequence_gaps
SELECT COALESCE(sum(missing), 0) FROM (
  SELECT max(n) - min(n) + 1 - count(DISTINCT n) AS missing FROM (
    SELECT pdp_id, source_stream(payload) AS stream, source_stream_seq(payload) AS n FROM events
    WHERE {w} AND payload LIKE '%"stream_seq"%')
  WHERE stream IS NOT NULL GROUP BY pdp_id, stream);

-- details: producer streams with numbers missing
-- when: producer_sequence_gaps > 0
SELECT pdp_id, stream, min(n) AS first_stream_seq, max(n) AS last_stream_seq, count(DISTINCT n) AS received,
  max(n) - min(n) + 1 - count(DISTINCT n) AS missing FROM (
    SELECT pdp_id, source_stream(payload) AS stream, source_stream_seq(payload) AS n FROM events
    WHERE {w} AND payload LIKE '%"stream_seq"%')
  WHERE stream IS NOT NULL GROUP BY pdp_id, stream HAVING max(n) - min(n) + 1 > count(DISTINCT n) ORDER BY 1, 2;

-- note: pdp_drops
-- measured only for producers that number their events (source.stream and
-- source.stream_seq, as the Python SDK does); OPA's req_id counts every HTTP
-- request OPA serves and Cerbos's call ids are not consecutive, so neither
-- shows a drop
