-- The spec's DDL, column for column, and the host product's keys: UUID ids
-- (gen_random_uuid(), built into PostgreSQL 13+), TIMESTAMPTZ, BIGSERIAL for
-- live_metrics.id, live_messages.recipient_id and .message, the spec's NOT NULLs and its
-- three indexes. Everything that references the converted tables follows.
--
-- Existing rows keep their relations: every integer id gets one fresh UUID, and each
-- foreign key column is rewritten through that mapping before the keys change type.
-- TIMESTAMP values were stored as UTC and are read as UTC. A live session, metric or
-- message that lacks a value the spec makes NOT NULL fails the migration (with
-- PostgreSQL's message naming the column) rather than being dropped silently.
-- live_messages keeps its integer id as ``seq``: the order of a session's chat, used
-- for paging and read receipts. live_alerts ids become UUIDs derived from the old text
-- id (md5), the same rule the agents now use for new alerts (uuid5 of the old key).
-- depends: 0004_identity

-- 1. Fresh UUIDs for every integer-keyed row (a volatile default fills each row).
ALTER TABLE users ADD COLUMN _new_id UUID NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE training_sessions ADD COLUMN _new_id UUID NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE live_training_sessions ADD COLUMN _new_id UUID NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE live_messages ADD COLUMN _new_id UUID NOT NULL DEFAULT gen_random_uuid();

-- 2. Foreign keys to the converted tables go; they come back, typed UUID, in step 5.
DO $$
DECLARE fk record;
BEGIN
    FOR fk IN
        SELECT conrelid::regclass AS tab, conname FROM pg_constraint
        WHERE contype = 'f' AND confrelid IN (
            'users'::regclass, 'training_sessions'::regclass,
            'live_training_sessions'::regclass, 'live_messages'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
    END LOOP;
END $$;
-- So does the check comparing the two ids of a link (back in step 5).
ALTER TABLE coach_athletes DROP CONSTRAINT coach_athletes_check;

-- 3. Each referencing column rewritten through the mapping (USING may read the row's
-- other columns, so indexes and constraints on the column are rebuilt, not lost).
CREATE FUNCTION pg_temp.lc_remap(child regclass, col text, parent regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD COLUMN _map UUID', child);
    EXECUTE format('UPDATE %s c SET _map = p._new_id FROM %s p WHERE p.id = c.%I',
                   child, parent, col);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE UUID USING _map', child, col);
    EXECUTE format('ALTER TABLE %s DROP COLUMN _map', child);
END $$;

-- (PERFORM in a DO block: a migration prints no result rows.)
DO $$ BEGIN
    PERFORM pg_temp.lc_remap('training_sessions', 'user_id', 'users');
    PERFORM pg_temp.lc_remap('live_training_sessions', 'user_id', 'users');
    PERFORM pg_temp.lc_remap('live_training_sessions', 'coach_id', 'users');
    PERFORM pg_temp.lc_remap('live_training_sessions', 'training_session_id', 'training_sessions');
    PERFORM pg_temp.lc_remap('live_metrics', 'live_session_id', 'live_training_sessions');
    PERFORM pg_temp.lc_remap('live_messages', 'live_session_id', 'live_training_sessions');
    PERFORM pg_temp.lc_remap('live_messages', 'sender_id', 'users');
    PERFORM pg_temp.lc_remap('coach_athletes', 'coach_id', 'users');
    PERFORM pg_temp.lc_remap('coach_athletes', 'athlete_id', 'users');
    PERFORM pg_temp.lc_remap('athlete_profiles', 'user_id', 'users');
    PERFORM pg_temp.lc_remap('live_alerts', 'live_session_id', 'live_training_sessions');
    PERFORM pg_temp.lc_remap('live_alerts', 'user_id', 'users');
    PERFORM pg_temp.lc_remap('live_alerts', 'acknowledged_by', 'users');
END $$;

-- 4. The keys themselves.
ALTER TABLE users ALTER COLUMN id DROP DEFAULT;
ALTER TABLE users ALTER COLUMN id TYPE UUID USING _new_id;
ALTER TABLE users ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE users DROP COLUMN _new_id;
DROP SEQUENCE IF EXISTS users_id_seq;

ALTER TABLE training_sessions ALTER COLUMN id DROP DEFAULT;
ALTER TABLE training_sessions ALTER COLUMN id TYPE UUID USING _new_id;
ALTER TABLE training_sessions ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE training_sessions DROP COLUMN _new_id;
DROP SEQUENCE IF EXISTS training_sessions_id_seq;

ALTER TABLE live_training_sessions ALTER COLUMN id DROP DEFAULT;
ALTER TABLE live_training_sessions ALTER COLUMN id TYPE UUID USING _new_id;
ALTER TABLE live_training_sessions ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE live_training_sessions DROP COLUMN _new_id;
DROP SEQUENCE IF EXISTS live_training_sessions_id_seq;

-- The chat's integer id stays as its order (seq); the UUID becomes the key.
ALTER TABLE live_messages DROP CONSTRAINT live_messages_pkey;
ALTER TABLE live_messages RENAME COLUMN id TO seq;
ALTER TABLE live_messages ALTER COLUMN seq TYPE BIGINT;
ALTER SEQUENCE live_messages_id_seq AS BIGINT;
ALTER TABLE live_messages ADD CONSTRAINT uq_live_messages_seq UNIQUE (seq);
ALTER TABLE live_messages RENAME COLUMN _new_id TO id;
ALTER TABLE live_messages ADD PRIMARY KEY (id);

-- 5. The foreign keys back, as the spec gives them.
ALTER TABLE training_sessions
    ADD FOREIGN KEY (user_id) REFERENCES users(id);
ALTER TABLE live_training_sessions
    ADD FOREIGN KEY (user_id) REFERENCES users(id),
    ADD FOREIGN KEY (training_session_id) REFERENCES training_sessions(id),
    ADD FOREIGN KEY (coach_id) REFERENCES users(id);
ALTER TABLE live_metrics
    ADD FOREIGN KEY (live_session_id) REFERENCES live_training_sessions(id) ON DELETE CASCADE;
ALTER TABLE live_messages
    ADD FOREIGN KEY (live_session_id) REFERENCES live_training_sessions(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (sender_id) REFERENCES users(id);
ALTER TABLE coach_athletes
    ADD CONSTRAINT coach_athletes_check CHECK (coach_id <> athlete_id),
    ADD FOREIGN KEY (coach_id) REFERENCES users(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (athlete_id) REFERENCES users(id) ON DELETE CASCADE;
ALTER TABLE athlete_profiles
    ADD FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
ALTER TABLE live_alerts
    ADD FOREIGN KEY (live_session_id) REFERENCES live_training_sessions(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (user_id) REFERENCES users(id),
    ADD FOREIGN KEY (acknowledged_by) REFERENCES users(id);

-- 6. Times with their zone: every TIMESTAMP held UTC.
CREATE FUNCTION pg_temp.lc_tz(tab regclass, col text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tab, col);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE TIMESTAMPTZ USING %I AT TIME ZONE ''UTC''',
                   tab, col, col);
END $$;

DO $$ BEGIN
    PERFORM pg_temp.lc_tz(c.table_name::regclass, c.column_name)
    FROM information_schema.columns c
    WHERE c.table_schema = current_schema() AND c.data_type = 'timestamp without time zone'
      AND c.table_name IN ('users', 'training_sessions', 'live_training_sessions',
                           'live_metrics', 'live_messages', 'coach_athletes',
                           'athlete_profiles', 'live_alerts');
END $$;

ALTER TABLE users ALTER COLUMN created_at SET DEFAULT NOW();
ALTER TABLE training_sessions ALTER COLUMN created_at SET DEFAULT NOW();
ALTER TABLE coach_athletes ALTER COLUMN created_at SET DEFAULT NOW();
ALTER TABLE athlete_profiles ALTER COLUMN updated_at SET DEFAULT NOW();

-- 7. The spec's three tables: defaults, NOT NULLs, BIGSERIAL, recipient_id, message.
UPDATE live_training_sessions SET status = COALESCE(status, 'active'),
    started_at = COALESCE(started_at, last_update_at, NOW()),
    last_update_at = COALESCE(last_update_at, started_at, NOW()),
    metadata = COALESCE(metadata, '{}'::jsonb)
WHERE status IS NULL OR started_at IS NULL OR last_update_at IS NULL OR metadata IS NULL;
ALTER TABLE live_training_sessions
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN started_at SET DEFAULT NOW(),
    ALTER COLUMN started_at SET NOT NULL,
    ALTER COLUMN last_update_at SET DEFAULT NOW(),
    ALTER COLUMN last_update_at SET NOT NULL,
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb;

ALTER TABLE live_metrics ALTER COLUMN id TYPE BIGINT;
ALTER SEQUENCE live_metrics_id_seq AS BIGINT;
ALTER TABLE live_metrics
    ALTER COLUMN live_session_id SET NOT NULL,
    ALTER COLUMN timestamp SET DEFAULT NOW(),
    ALTER COLUMN timestamp SET NOT NULL,
    ALTER COLUMN metric_type SET NOT NULL,
    ALTER COLUMN value SET NOT NULL;

ALTER TABLE live_messages RENAME COLUMN content TO message;
ALTER TABLE live_messages
    ADD COLUMN recipient_id UUID REFERENCES users(id),
    ALTER COLUMN id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN live_session_id SET NOT NULL,
    ALTER COLUMN sender_id SET NOT NULL,
    ALTER COLUMN message SET NOT NULL,
    ALTER COLUMN message_type SET DEFAULT 'text',
    ALTER COLUMN created_at SET DEFAULT NOW(),
    ALTER COLUMN created_at SET NOT NULL;
-- A message went from the athlete to the session's coach, or from a coach to the athlete.
UPDATE live_messages m SET recipient_id =
    CASE WHEN m.sender_id = s.user_id THEN s.coach_id ELSE s.user_id END
FROM live_training_sessions s WHERE s.id = m.live_session_id;

-- The spec's indexes: newest first.
DROP INDEX idx_live_metrics_session_time;
CREATE INDEX idx_live_metrics_session_time ON live_metrics(live_session_id, timestamp DESC);
DROP INDEX idx_live_messages_session;
CREATE INDEX idx_live_messages_session ON live_messages(live_session_id, created_at DESC);

-- 8. Alerts: UUID ids, derived from the old deterministic text id.
ALTER TABLE live_alerts ALTER COLUMN id TYPE UUID USING md5(id)::uuid;
