-- Group sessions (issue 20): a coach's class or race, the athletes in it, and its
-- final standings. An athlete's live session joins a group through its member row.
-- depends: 0006_message_reads

CREATE TABLE live_groups (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    coach_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         VARCHAR(200) NOT NULL,
    sport        VARCHAR(20) NOT NULL,
    kind         VARCHAR(10) NOT NULL CHECK (kind IN ('race', 'class')),
    starts_at    TIMESTAMPTZ NOT NULL,
    -- A race's distance (its finish line); NULL for a class or an open-ended race.
    distance_m   DOUBLE PRECISION CHECK (distance_m > 0),
    -- A class's shared structured workout (the shape of a session's plan).
    plan         JSONB,
    status       VARCHAR(20) NOT NULL DEFAULT 'scheduled'
                 CHECK (status IN ('scheduled', 'live', 'finished')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    finished_at  TIMESTAMPTZ
);
CREATE INDEX idx_live_groups_coach ON live_groups (coach_id, starts_at DESC);

CREATE TABLE live_group_members (
    group_id     UUID NOT NULL REFERENCES live_groups(id) ON DELETE CASCADE,
    athlete_id   UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- The live session the athlete joined with (NULL until they join).
    session_id   UUID REFERENCES live_training_sessions(id) ON DELETE SET NULL,
    joined_at    TIMESTAMPTZ,
    left_at      TIMESTAMPTZ,
    PRIMARY KEY (group_id, athlete_id)
);
CREATE INDEX idx_live_group_members_athlete ON live_group_members (athlete_id);
CREATE UNIQUE INDEX idx_live_group_members_session
    ON live_group_members (session_id) WHERE session_id IS NOT NULL;

CREATE TABLE live_group_standings (
    group_id     UUID NOT NULL REFERENCES live_groups(id) ON DELETE CASCADE,
    athlete_id   UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- NULL: no data to rank the athlete by.
    rank         INTEGER CHECK (rank > 0),
    -- The leaderboard row as last published (see docs/groups.md).
    standing     JSONB NOT NULL,
    computed_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (group_id, athlete_id)
);

-- The coach's messages to everyone in the group (a session's chat stays in
-- live_messages, whose live_session_id the spec makes NOT NULL).
CREATE TABLE live_group_messages (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    group_id     UUID NOT NULL REFERENCES live_groups(id) ON DELETE CASCADE,
    sender_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message      TEXT NOT NULL,
    -- The client's id for the message: a retry with the same id is stored once.
    client_message_id VARCHAR(64),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_live_group_messages_group ON live_group_messages (group_id, created_at);
CREATE UNIQUE INDEX idx_live_group_messages_client
    ON live_group_messages (group_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
