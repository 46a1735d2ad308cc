-- 0003 (index): FAISS index snapshots and the tombstones that keep old snapshots honest.
--
-- index_snapshots: one row per snapshot written to the object store (S3 prefix or local
-- directory). scope is 'all' or 'group=<id>'; max_face_id is the newest face the snapshot
-- contains and watermark the time from which it may lack faces or deletions (the start of the
-- oldest transaction open when the build took its read snapshot, else that moment): faces
-- created and tombstones recorded at or after it are the delta search's and the filter's job. Garbage-collected rows get gc_at set and
-- their files deleted.
CREATE TABLE IF NOT EXISTS index_snapshots (
    snapshot_id   text PRIMARY KEY,
    scope         text NOT NULL,
    model_id      text NOT NULL,
    location      text NOT NULL,
    kind          text NOT NULL,
    dim           integer NOT NULL,
    count         bigint NOT NULL,
    max_face_id   bigint,
    watermark     timestamptz NOT NULL,
    build_seconds real NOT NULL,
    meta          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    gc_at         timestamptz
);
CREATE INDEX IF NOT EXISTS index_snapshots_scope_idx
    ON index_snapshots (scope, model_id, created_at DESC);

-- The delta search reads faces created (or persons put into a group) at or after a watermark.
CREATE INDEX IF NOT EXISTS faces_created_idx ON faces (created_at);
CREATE INDEX IF NOT EXISTS memberships_group_created_idx ON memberships (group_id, created_at);

-- Tombstones: every deleted face, deleted person and removed membership, with the time it
-- happened (clock_timestamp, not the transaction start). A search over a snapshot built before
-- deleted_at drops these faces and persons at once; a reindex leaves them out for good, and
-- tombstones older than every live snapshot are pruned by the snapshot garbage collector.
CREATE TABLE IF NOT EXISTS index_tombstones (
    tombstone_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('face', 'person', 'membership')),
    face_id      bigint,
    person_id    text,
    group_id     text,
    deleted_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS index_tombstones_deleted_idx ON index_tombstones (deleted_at);

CREATE OR REPLACE FUNCTION facepipe_tombstone_face() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_tombstones (kind, face_id, person_id) VALUES ('face', OLD.face_id, OLD.person_id);
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION facepipe_tombstone_person() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_tombstones (kind, person_id) VALUES ('person', OLD.person_id);
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION facepipe_tombstone_membership() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_tombstones (kind, person_id, group_id)
        VALUES ('membership', OLD.person_id, OLD.group_id);
    RETURN OLD;
END $$;

-- Row triggers also fire for rows removed by ON DELETE CASCADE (deleting a person removes its
-- faces and memberships, each recorded).
DROP TRIGGER IF EXISTS faces_tombstone ON faces;
CREATE TRIGGER faces_tombstone AFTER DELETE ON faces
    FOR EACH ROW EXECUTE FUNCTION facepipe_tombstone_face();
DROP TRIGGER IF EXISTS persons_tombstone ON persons;
CREATE TRIGGER persons_tombstone AFTER DELETE ON persons
    FOR EACH ROW EXECUTE FUNCTION facepipe_tombstone_person();
DROP TRIGGER IF EXISTS memberships_tombstone ON memberships;
CREATE TRIGGER memberships_tombstone AFTER DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION facepipe_tombstone_membership();
