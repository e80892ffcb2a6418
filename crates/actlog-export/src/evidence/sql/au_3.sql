-- control: AU-3
-- standard: NIST SP 800-53 Rev. 5
-- title: Content of Audit Records
--
-- Every decision records time, PDP, actor, action, resource, effect and
-- policy (and an AI agent's principal); every outcome its decision and
-- status.

-- metric: decisions_with_event_time
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND (event_time IS NOT NULL);

-- metric: decisions_with_pdp_id
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND (pdp_id IS NOT NULL);

-- metric: decisions_with_actor_id
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND (actor_id IS NOT NULL);

-- metric: decisions_with_action
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND (action IS NOT NULL);

-- metric: decisions_with_resource
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision'
  AND (resource_type IS NOT NULL AND resource_id IS NOT NULL);

-- metric: decisions_with_effect
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND (effect IS NOT NULL);

-- metric: decisions_with_policy
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision'
  AND (policy_version IS NOT NULL OR decision_path IS NOT NULL);

-- metric: decisions_with_principal_for_agents
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision'
  AND ((actor_profile IS DISTINCT FROM 'ai_agent') OR principal_id IS NOT NULL);

-- metric: outcomes_with_decision_and_status
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.outcome'
  AND decision_event_id IS NOT NULL AND outcome_status IS NOT NULL;

-- reuse: decisions
-- reuse: outcomes
