-- Identity from the host: an admin role, and every edge told at once when a coach link
-- or a user's role changes, whoever changes it (admin API, CLI, the host's own SQL).
-- depends: 0002_features

ALTER TABLE users DROP CONSTRAINT IF EXISTS users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('athlete', 'coach', 'admin'));

-- NOTIFY is sent on commit, so an edge never hears of a change that was rolled back.
-- A new link too, so that an edge that cached "not linked" forgets it at once.
CREATE FUNCTION livecoach_notify_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('livecoach_access', json_build_object(
            'op', 'unlink', 'coach_id', OLD.coach_id, 'athlete_id', OLD.athlete_id)::text);
    ELSE
        PERFORM pg_notify('livecoach_access', json_build_object(
            'op', 'link', 'coach_id', NEW.coach_id, 'athlete_id', NEW.athlete_id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER coach_athletes_notify AFTER INSERT OR DELETE ON coach_athletes
    FOR EACH ROW EXECUTE FUNCTION livecoach_notify_link();

CREATE FUNCTION livecoach_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('livecoach_access', json_build_object(
        'op', 'user', 'user_id', OLD.id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER users_notify_role AFTER UPDATE OF role ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION livecoach_notify_user();
CREATE TRIGGER users_notify_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION livecoach_notify_user();
