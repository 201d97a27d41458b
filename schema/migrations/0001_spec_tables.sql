-- The tables of the original feature spec, as it gives them, and the two it assumes
-- exist (users, training_sessions). Timestamps are UTC (TIMESTAMP as in the spec).

CREATE TABLE users (
    id          SERIAL PRIMARY KEY,
    email       VARCHAR(255) UNIQUE,
    name        VARCHAR(255) NOT NULL DEFAULT '',
    role        VARCHAR(20) NOT NULL DEFAULT 'athlete' CHECK (role IN ('athlete', 'coach')),
    created_at  TIMESTAMP NOT NULL DEFAULT (NOW() AT TIME ZONE 'UTC')
);

CREATE TABLE training_sessions (
    id          SERIAL PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    sport       VARCHAR(20) NOT NULL DEFAULT 'ride',
    started_at  TIMESTAMP NOT NULL,
    ended_at    TIMESTAMP,
    duration_s  DOUBLE PRECISION,
    distance_m  DOUBLE PRECISION,
    summary     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMP NOT NULL DEFAULT (NOW() AT TIME ZONE 'UTC')
);

CREATE TABLE live_training_sessions (
    id                  SERIAL PRIMARY KEY,
    user_id             INTEGER REFERENCES users(id),
    training_session_id INTEGER REFERENCES training_sessions(id),
    status              VARCHAR(20) DEFAULT 'active', -- active, paused, completed
    started_at          TIMESTAMP DEFAULT (NOW() AT TIME ZONE 'UTC'),
    last_update_at      TIMESTAMP DEFAULT (NOW() AT TIME ZONE 'UTC'),
    coach_id            INTEGER REFERENCES users(id),
    metadata            JSONB
);

CREATE TABLE live_metrics (
    id              SERIAL PRIMARY KEY,
    live_session_id INTEGER REFERENCES live_training_sessions(id),
    timestamp       TIMESTAMP DEFAULT (NOW() AT TIME ZONE 'UTC'),
    metric_type     VARCHAR(50), -- heart_rate, pace, power, cadence, speed, distance
    value           FLOAT,
    metadata        JSONB
);

CREATE TABLE live_messages (
    id              SERIAL PRIMARY KEY,
    live_session_id INTEGER REFERENCES live_training_sessions(id),
    sender_id       INTEGER REFERENCES users(id),
    message_type    VARCHAR(20), -- text, alert, system
    content         TEXT,
    created_at      TIMESTAMP DEFAULT (NOW() AT TIME ZONE 'UTC'),
    read_at         TIMESTAMP
);

CREATE INDEX idx_live_metrics_session_time ON live_metrics(live_session_id, timestamp);
CREATE INDEX idx_live_sessions_user ON live_training_sessions(user_id, status);
CREATE INDEX idx_live_messages_session ON live_messages(live_session_id, created_at);
