-- control: DE.AE-02
-- standard: NIST CSF 2.0
-- title: Potentially adverse events are analyzed to better understand associated activities
--
-- Deny bursts (one agent, one task) and allows at a high risk score.

-- metric: deny_bursts
SELECT count(*) FROM (SELECT actor_id, task_id, count(*) AS denies, min(event_time) AS first, max(event_time) AS last
  FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'deny' AND task_id IS NOT NULL
  GROUP BY actor_id, task_id HAVING count(*) >= {DENY_BURST_MIN}) t;

-- details: deny bursts (one agent, one task)
-- when: deny_bursts > 0
SELECT actor_id, task_id, count(*) AS denies, min(event_time) AS first, max(event_time) AS last
FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'deny' AND task_id IS NOT NULL
GROUP BY actor_id, task_id HAVING count(*) >= {DENY_BURST_MIN} ORDER BY first;

-- metric: high_risk_allowed
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND risk_score >= {HIGH_RISK};

-- details: allowed at a high risk score
-- when: high_risk_allowed > 0
SELECT seq, event_id, actor_id, tool_name, risk_score, event_time FROM events WHERE {w}
  AND event_type = 'authz.decision' AND effect = 'allow' AND risk_score >= {HIGH_RISK} ORDER BY seq;

-- details: decisions per day
SELECT CAST(date_trunc('day', event_time) AS DATE) AS day,
  sum(CASE WHEN effect = 'allow' THEN 1 ELSE 0 END) AS allowed,
  sum(CASE WHEN effect = 'deny' THEN 1 ELSE 0 END) AS denied,
  sum(CASE WHEN effect NOT IN ('allow', 'deny') THEN 1 ELSE 0 END) AS other
FROM events WHERE {w} AND event_type = 'authz.decision' GROUP BY 1 ORDER BY 1;
