-- control: PR.AA-03
-- standard: NIST CSF 2.0
-- title: Users, services, and hardware are authenticated
--
-- Delegations are verified or asserted; events are signed by their producer.

-- metric: decisions_verified_or_asserted
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision'
  AND verification_status IN ('verified', 'asserted');

-- reuse: decisions

-- metric: allowed_unverified
SELECT count(*) FROM events WHERE {w} AND event_type = 'authz.decision' AND effect = 'allow'
  AND verification_status = 'unverified';

-- metric: events_without_producer_signature
SELECT count(*) FROM events WHERE {w} AND producer_signature = 'none';

-- details: decisions by delegation verification status and effect
SELECT verification_status, effect, count(*) AS decisions FROM events
WHERE {w} AND event_type = 'authz.decision' GROUP BY verification_status, effect
ORDER BY verification_status, effect;
