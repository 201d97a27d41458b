-- A member removed from a group (or the group deleted) loses its live:group channel on
-- every edge at once: the same notification channel as a coach link removed (0004).
-- depends: 0007_groups

CREATE FUNCTION livecoach_notify_group_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('livecoach_access', json_build_object(
        'op', 'unmember', 'group_id', OLD.group_id, 'athlete_id', OLD.athlete_id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER live_group_members_notify AFTER DELETE ON live_group_members
    FOR EACH ROW EXECUTE FUNCTION livecoach_notify_group_member();
