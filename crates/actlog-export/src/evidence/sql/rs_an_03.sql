-- control: RS.AN-03
-- standard: NIST CSF 2.0
-- title: Analysis is performed to establish what has taken place during an incident and the root cause of the incident
--
-- Every decision's chain can be rebuilt: its actor, its policy, and for an
-- AI agent the principal and task; every outcome names a recorded decision.

-- metric: reconstructable_decisions
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND actor_id IS NOT NULL
  AND chain_depth >= 1 AND (policy_version IS NOT NULL OR decision_path IS NOT NULL)
  AND ((actor_profile IS DISTINCT FROM 'ai_agent') OR (principal_id IS NOT NULL AND task_id IS NOT NULL));

-- metric: outcomes
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome';

-- metric: outcomes_without_decision
SELECT count(*) FROM events o LEFT JOIN
  (SELECT event_id FROM events WHERE seq < {n} AND event_type = 'authz.decision') d
  ON o.decision_event_id = d.event_id
WHERE {w:o} AND o.event_type = 'authz.outcome' AND d.event_id IS NULL;

-- reuse: decisions
