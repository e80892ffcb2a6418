-- control: PR.AA-04
-- standard: NIST CSF 2.0
-- title: Identity assertions are protected, conveyed, and verified
--
-- A delegation that failed verification is never allowed.

-- metric: verification_failed
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND verification_status = 'failed';

-- metric: allowed_with_failed_verification
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow'
  AND verification_status = 'failed';

-- details: failed or unverified delegations by PDP
SELECT pdp_id, verification_status, count(*) AS decisions,
  sum(CASE WHEN effect = 'allow' THEN 1 ELSE 0 END) AS allowed FROM events
WHERE {w} AND event_type = 'authz.decision' AND verification_status IN ('failed', 'unverified')
GROUP BY pdp_id, verification_status ORDER BY pdp_id, verification_status;

-- details: allowed although delegation verification failed
-- when: allowed_with_failed_verification > 0
SELECT seq, event_id, actor_id, principal_id, tool_name, event_time FROM events
WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow' AND verification_status = 'failed'
ORDER BY seq;
