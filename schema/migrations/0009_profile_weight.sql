-- The athlete's weight, for W/kg on group leaderboards (docs/groups.md): the edge sends
-- the profile with every session start and profile change; the agents read weight_kg.
-- depends: 0008_group_member_notify

ALTER TABLE athlete_profiles
    ADD COLUMN weight_kg DOUBLE PRECISION CHECK (weight_kg BETWEEN 20 AND 300);
