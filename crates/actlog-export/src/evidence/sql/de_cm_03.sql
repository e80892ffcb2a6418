-- control: DE.CM-03
-- standard: NIST CSF 2.0
-- title: Personnel activity and technology usage are monitored to find potentially adverse events
--
-- Off-purpose actions and new agent-tool pairs. The rare pairs are few:
-- they come first, so the join builds on them and streams the decisions
-- (at 10^7 events the other way round ran out of the query's memory).

-- metric: off_purpose_allowed
WITH pairs AS (SELECT purpose_scope, tool_name, count(*) AS n FROM events
  WHERE seq < {n} AND event_type = 'authz.decision' AND effect = 'allow'
  AND purpose_scope IS NOT NULL AND tool_name IS NOT NULL GROUP BY purpose_scope, tool_name),
scopes AS (SELECT purpose_scope, sum(n) AS total FROM pairs GROUP BY purpose_scope),
rare AS (SELECT p.purpose_scope, p.tool_name, p.n, s.total FROM pairs p JOIN scopes s
  ON p.purpose_scope = s.purpose_scope WHERE p.n * {OFF_PURPOSE_RATIO} < s.total)
SELECT count(*) FROM rare p JOIN events e ON e.purpose_scope = p.purpose_scope AND e.tool_name = p.tool_name
WHERE {w:e} AND e.event_type = 'authz.decision' AND e.effect = 'allow';

-- details: allowed tool calls rare for their purpose scope
-- when: off_purpose_allowed > 0
WITH pairs AS (SELECT purpose_scope, tool_name, count(*) AS n FROM events
  WHERE seq < {n} AND event_type = 'authz.decision' AND effect = 'allow'
  AND purpose_scope IS NOT NULL AND tool_name IS NOT NULL GROUP BY purpose_scope, tool_name),
scopes AS (SELECT purpose_scope, sum(n) AS total FROM pairs GROUP BY purpose_scope),
rare AS (SELECT p.purpose_scope, p.tool_name, p.n, s.total FROM pairs p JOIN scopes s
  ON p.purpose_scope = s.purpose_scope WHERE p.n * {OFF_PURPOSE_RATIO} < s.total)
SELECT e.seq, e.event_id, e.actor_id, e.purpose_scope, e.tool_name, p.n AS pair_calls,
  p.total AS scope_calls FROM rare p JOIN events e ON e.purpose_scope = p.purpose_scope AND e.tool_name = p.tool_name
WHERE {w:e} AND e.event_type = 'authz.decision' AND e.effect = 'allow' ORDER BY e.seq;

-- Both sides are aggregated first: pairs in the window, pairs before it.
-- metric: new_agent_tool_pairs
-- when: from
-- otherwise: needs --from: pairs are new against the events before it
SELECT count(*) FROM (SELECT w.actor_id, w.tool_name, w.first_use, w.calls FROM
  (SELECT actor_id, tool_name, min(event_time) AS first_use, count(*) AS calls FROM events
  WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND tool_name IS NOT NULL
  GROUP BY actor_id, tool_name) w LEFT JOIN
  (SELECT DISTINCT actor_id, tool_name FROM events
  WHERE seq < {n} AND event_type = 'authz.decision' AND effect = 'allow'
  AND tool_name IS NOT NULL AND event_time < to_timestamp_nanos({from})) b
  ON w.actor_id = b.actor_id AND w.tool_name = b.tool_name WHERE b.actor_id IS NULL) t;

-- details: agent-tool pairs first allowed in the window
-- when: from
SELECT w.actor_id, w.tool_name, w.first_use, w.calls FROM
  (SELECT actor_id, tool_name, min(event_time) AS first_use, count(*) AS calls FROM events
  WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND tool_name IS NOT NULL
  GROUP BY actor_id, tool_name) w LEFT JOIN
  (SELECT DISTINCT actor_id, tool_name FROM events
  WHERE seq < {n} AND event_type = 'authz.decision' AND effect = 'allow'
  AND tool_name IS NOT NULL AND event_time < to_timestamp_nanos({from})) b
  ON w.actor_id = b.actor_id AND w.tool_name = b.tool_name WHERE b.actor_id IS NULL ORDER BY first_use;

-- note: off_purpose_rule
-- an allowed call whose (purpose scope, tool) pair makes up less than 1/{OFF_PURPOSE_RATIO} of the scope's allowed calls in the ledger
