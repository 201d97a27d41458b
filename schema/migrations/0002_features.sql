-- What the features need beyond the spec: coach links, athlete profiles with alert
-- settings, alert history, and the constraints that make hot-path writes idempotent.
-- depends: 0001_spec_tables

-- A retried sample or a replayed stream entry never makes a second row.
ALTER TABLE live_metrics
    ADD CONSTRAINT uq_live_metrics_sample UNIQUE (live_session_id, metric_type, timestamp);

-- A chat message retried by its client (same client id) is stored once.
ALTER TABLE live_messages ADD COLUMN client_message_id VARCHAR(64);
CREATE UNIQUE INDEX uq_live_messages_client_id
    ON live_messages(live_session_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

-- Which coach may watch which athlete.
CREATE TABLE coach_athletes (
    coach_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    athlete_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL DEFAULT (NOW() AT TIME ZONE 'UTC'),
    PRIMARY KEY (coach_id, athlete_id),
    CHECK (coach_id <> athlete_id)
);
CREATE INDEX idx_coach_athletes_athlete ON coach_athletes(athlete_id);

-- Physiology and alert preferences per athlete (see DOMAIN.md for the meaning).
CREATE TABLE athlete_profiles (
    user_id                  INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    sex                      VARCHAR(6) NOT NULL DEFAULT 'male' CHECK (sex IN ('male', 'female')),
    hr_max                   INTEGER CHECK (hr_max BETWEEN 100 AND 250),
    hr_rest                  INTEGER CHECK (hr_rest BETWEEN 25 AND 120),
    lthr                     INTEGER CHECK (lthr BETWEEN 80 AND 230),
    ftp_w                    DOUBLE PRECISION CHECK (ftp_w > 0 AND ftp_w < 1000),
    w_prime_j                DOUBLE PRECISION CHECK (w_prime_j > 0 AND w_prime_j < 100000),
    threshold_pace_s_per_km  DOUBLE PRECISION CHECK (threshold_pace_s_per_km BETWEEN 120 AND 900),
    -- Per-rule alert configuration: {"hr_zone": {"enabled": true, "low": .., "high": .., ...}}
    alert_settings           JSONB NOT NULL DEFAULT '{}'::jsonb,
    sound                    BOOLEAN NOT NULL DEFAULT TRUE,
    vibration                BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at               TIMESTAMP NOT NULL DEFAULT (NOW() AT TIME ZONE 'UTC'),
    CHECK (hr_rest IS NULL OR hr_max IS NULL OR hr_rest < hr_max)
);

-- Alert history. The id is deterministic (derived from session, rule and start time),
-- so an alert re-emitted after a worker restart is stored once.
CREATE TABLE live_alerts (
    id               VARCHAR(64) PRIMARY KEY,
    live_session_id  INTEGER NOT NULL REFERENCES live_training_sessions(id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    rule             VARCHAR(40) NOT NULL,
    metric           VARCHAR(40) NOT NULL,
    severity         VARCHAR(10) NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message          TEXT NOT NULL,
    current_value    DOUBLE PRECISION,
    threshold        DOUBLE PRECISION,
    triggered_at     TIMESTAMP NOT NULL,
    acknowledged_at  TIMESTAMP,
    acknowledged_by  INTEGER REFERENCES users(id),
    payload          JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX idx_live_alerts_session ON live_alerts(live_session_id, triggered_at);
