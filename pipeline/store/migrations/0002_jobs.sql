-- 0002 (pipeline): batch jobs and their items.
-- A job is one run of the pipeline over a source (enroll, reidentify, detect, ...); each item is
-- one image (or one stored observed face) and ends done or failed with a catalogue error.
-- UNIQUE(job_id, uri) is the deterministic item key: listing a source twice never adds an item
-- twice, so a redelivered listing task is harmless.

CREATE TABLE IF NOT EXISTS jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN
                        ('enroll', 'reidentify', 'detect', 'identify-batch', 'reindex')),
    params          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN
                        ('pending', 'running', 'done', 'failed', 'cancelled')),
    idempotency_key text UNIQUE,
    listing_done    boolean NOT NULL DEFAULT false,
    n_items         integer NOT NULL DEFAULT 0,
    n_done          integer NOT NULL DEFAULT 0,
    n_failed        integer NOT NULL DEFAULT 0,
    n_faces         integer NOT NULL DEFAULT 0,
    error           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON jobs (status);

CREATE TABLE IF NOT EXISTS job_items (
    id             bigserial PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq            integer NOT NULL,
    uri            text NOT NULL,
    person_id      text,
    person_name    text,
    groups         text[],
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN
                       ('pending', 'running', 'done', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    error_code     integer,
    error_name     text,
    error_message  text,
    content_sha256 text,
    n_faces        integer NOT NULL DEFAULT 0,
    face_ids       text[] NOT NULL DEFAULT '{}',
    observed_ids   text[] NOT NULL DEFAULT '{}',
    result         jsonb,
    started_at     timestamptz,
    finished_at    timestamptz,
    UNIQUE (job_id, uri),
    UNIQUE (job_id, seq)
);
CREATE INDEX IF NOT EXISTS job_items_status_idx ON job_items (job_id, status, seq);
