-- control: PR.AA-01
-- standard: NIST CSF 2.0
-- title: Identities and credentials for authorized users, services, and hardware are managed by the organization
--
-- The agent inventory; no agent acts after its delegation is revoked or
-- after it is deregistered.

-- metric: agents
SELECT count(DISTINCT actor_id) FROM events WHERE {w} AND actor_profile = 'ai_agent';

-- metric: principals
SELECT count(DISTINCT principal_id) FROM events WHERE {w};

-- metric: agents_with_several_workloads
SELECT count(*) FROM (SELECT actor_id FROM events WHERE {w} AND actor_profile = 'ai_agent'
  AND actor_workload_id IS NOT NULL GROUP BY actor_id HAVING count(DISTINCT actor_workload_id) > 1) t;

-- metric: revocations
SELECT count(*) FROM lifecycle WHERE {w} AND event_type = 'delegation.revoked';

-- metric: deregistrations
SELECT count(*) FROM lifecycle WHERE {w} AND event_type = 'agent.deregistered';

-- Revocations and deregistrations are matched on the agent they are about
-- (`lifecycle.subject_agent_id`), not on who wrote them. A revocation that
-- names a task ends that task's delegation; one without a task ends the
-- agent's delegation from that principal. A later grant (registration) for
-- the same agent (and task) starts it again.
-- metric: actions_after_revocation
SELECT count(DISTINCT d.seq) FROM lifecycle r JOIN events d ON d.actor_id = r.subject_agent_id
WHERE {w:d} AND r.seq < {n} AND r.event_type = 'delegation.revoked'
  AND (d.task_id = r.task_id OR (r.task_id IS NULL AND d.principal_id = r.principal_id))
  AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time
  AND NOT EXISTS (SELECT 1 FROM lifecycle g WHERE g.seq < {n} AND g.event_type = 'delegation.granted'
    AND g.subject_agent_id = r.subject_agent_id AND (g.task_id = r.task_id OR r.task_id IS NULL)
    AND g.event_time > r.event_time AND g.event_time <= d.event_time);

-- metric: actions_after_deregistration
SELECT count(DISTINCT d.seq) FROM lifecycle r JOIN events d ON d.actor_id = r.subject_agent_id
WHERE {w:d} AND r.seq < {n} AND r.event_type = 'agent.deregistered'
  AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time
  AND NOT EXISTS (SELECT 1 FROM lifecycle g WHERE g.seq < {n} AND g.event_type = 'agent.registered'
    AND g.subject_agent_id = r.subject_agent_id AND g.event_time > r.event_time AND g.event_time <= d.event_time);

-- details: allowed after the agent's delegation was revoked
-- when: actions_after_revocation > 0
SELECT DISTINCT d.seq, d.event_id, d.actor_id, d.task_id, d.event_time, r.seq AS revoked_seq
FROM lifecycle r JOIN events d ON d.actor_id = r.subject_agent_id
WHERE {w:d} AND r.seq < {n} AND r.event_type = 'delegation.revoked'
  AND (d.task_id = r.task_id OR (r.task_id IS NULL AND d.principal_id = r.principal_id))
  AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time
  AND NOT EXISTS (SELECT 1 FROM lifecycle g WHERE g.seq < {n} AND g.event_type = 'delegation.granted'
    AND g.subject_agent_id = r.subject_agent_id AND (g.task_id = r.task_id OR r.task_id IS NULL)
    AND g.event_time > r.event_time AND g.event_time <= d.event_time)
ORDER BY d.seq;

-- details: allowed after the agent was deregistered
-- when: actions_after_deregistration > 0
SELECT DISTINCT d.seq, d.event_id, d.actor_id, d.task_id, d.event_time, r.seq AS deregistered_seq
FROM lifecycle r JOIN events d ON d.actor_id = r.subject_agent_id
WHERE {w:d} AND r.seq < {n} AND r.event_type = 'agent.deregistered'
  AND d.event_type = 'authz.decision' AND d.effect = 'allow' AND d.event_time > r.event_time
  AND NOT EXISTS (SELECT 1 FROM lifecycle g WHERE g.seq < {n} AND g.event_type = 'agent.registered'
    AND g.subject_agent_id = r.subject_agent_id AND g.event_time > r.event_time AND g.event_time <= d.event_time)
ORDER BY d.seq;

-- details: agent inventory (top 100 by decisions)
SELECT actor_id, max(actor_iss) AS issuer, max(actor_workload_id) AS workload, max(actor_model) AS model,
  min(event_time) AS first_seen, max(event_time) AS last_seen, count(*) AS decisions,
  sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denied
FROM events WHERE {w} AND event_type = 'authz.decision' AND actor_profile = 'ai_agent'
GROUP BY actor_id ORDER BY decisions DESC, actor_id LIMIT 100;
