-- control: PR.AA-05
-- standard: NIST CSF 2.0
-- title: Access permissions, entitlements, and authorizations are defined in a policy, managed, enforced, and reviewed, and incorporate the principles of least privilege and separation of duties
--
-- Every executed action has a linked allowed decision under a recorded
-- policy version, of its own actor, before it, and is executed once.

-- metric: decisions
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision';

-- metric: executed_outcomes
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome' AND outcome_status = 'executed';

-- metric: executed_without_decision
SELECT count(*) FROM events o LEFT JOIN
  (SELECT event_id FROM events WHERE seq < {n} AND event_type = 'authz.decision') d
  ON o.decision_event_id = d.event_id
WHERE {w:o} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed' AND d.event_id IS NULL;

-- metric: executed_after_non_allow
SELECT count(*) FROM events o JOIN events d ON o.decision_event_id = d.event_id
WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed'
  AND d.event_type = 'authz.decision' AND d.effect <> 'allow';

-- metric: decisions_without_policy_version
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND policy_version IS NULL;

-- An allowing decision backs one execution, of its own actor, after it.
-- metric: executed_before_decision_or_by_another_actor
SELECT count(*) FROM events o JOIN events d ON o.decision_event_id = d.event_id
WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed'
  AND d.event_type = 'authz.decision' AND (o.event_time < d.event_time
  OR (o.actor_id IS NOT NULL AND d.actor_id IS NOT NULL AND o.actor_id <> d.actor_id));

-- metric: decisions_executed_more_than_once
SELECT count(*) FROM (SELECT decision_event_id FROM events WHERE {w} AND event_type = 'authz.outcome'
  AND outcome_status = 'executed' AND decision_event_id IS NOT NULL
  GROUP BY decision_event_id HAVING count(*) > 1) t;

-- details: executed after a decision that did not allow
-- when: executed_after_non_allow > 0
SELECT o.seq, o.event_id, d.seq AS decision_seq, d.effect, o.actor_id,
  COALESCE(o.tool_name, d.tool_name) AS tool_name, o.event_time
FROM events o JOIN events d ON o.decision_event_id = d.event_id
WHERE {w:o} AND d.seq < {n} AND o.event_type = 'authz.outcome' AND o.outcome_status = 'executed'
  AND d.event_type = 'authz.decision' AND d.effect <> 'allow' ORDER BY o.seq;

-- details: least privilege review: distinct tools each agent was allowed (top 20)
SELECT actor_id, count(DISTINCT tool_name) AS tools, count(*) AS allowed_calls FROM events
WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND tool_name IS NOT NULL
GROUP BY actor_id ORDER BY tools DESC, actor_id LIMIT 20;

-- note: scopes_granted_vs_used
-- not measured: trust.scopes_granted is kept in the payload, not a column; the table lists tools used
