-- 0001 (store): the face library. Groups, persons and their memberships; enrolled faces with
-- their vectors and aligned crops; faces observed in processed images and their matches.
--
-- Embeddings are stored exactly as vector(512) (float32, L2-normalised by facepipe) with
-- STORAGE PLAIN: a 512-d vector is 2 KiB, just over Postgres' TOAST threshold, and would
-- otherwise be moved out of line, which made exact scans 2.2x slower (measured: 61.6 vs 27.4 ms
-- over 20k faces). embedding_dim records the model's dimension (an HNSW index needs one fixed
-- dimension; a pack with another one needs a new column and migration).
--
-- The HNSW index is built on the halfvec (float16) cast of the vector: half the size of a
-- vector index, faster to build and to search, with the same recall (README library section);
-- searches order by the halfvec distance and re-rank their hits on the exact float32 vectors.

CREATE TABLE IF NOT EXISTS groups (
    group_id   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS persons (
    person_id  text PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    tag        text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS memberships (
    group_id   text NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    person_id  text NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX IF NOT EXISTS memberships_person_idx ON memberships (person_id);

-- Enrolled faces. face_id is an identity column: ids only grow, so "faces with id > N" is the
-- delta since an index snapshot whose newest face was N. (person_id, content_sha256,
-- face_index, model_id) is the deterministic key: adding the same face of the same image to the
-- same person again returns the existing row instead of a duplicate.
CREATE TABLE IF NOT EXISTS faces (
    face_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id      text NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
    model_id       text NOT NULL,
    embedding_dim  smallint NOT NULL,
    embedding      vector(512) NOT NULL,
    box            real[] NOT NULL,          -- x1, y1, x2, y2 in image pixels
    landmarks      real[] NOT NULL,          -- 5 x (x, y), flattened
    det_score      real NOT NULL,
    quality_score  real NOT NULL,
    quality_level  smallint NOT NULL,
    quality        jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_uri     text,
    content_sha256 text NOT NULL,
    face_index     integer NOT NULL,
    crop           bytea,                    -- aligned 112x112 crop, encoded as crop_format
    crop_format    text,
    job_id         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT faces_dim_check CHECK (embedding_dim = vector_dims(embedding)),
    CONSTRAINT faces_key UNIQUE (person_id, content_sha256, face_index, model_id)
);
ALTER TABLE faces ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX IF NOT EXISTS faces_person_idx ON faces (person_id);
CREATE INDEX IF NOT EXISTS faces_embedding_hnsw ON faces
    USING hnsw ((embedding::halfvec(512)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Faces seen in processed images and not enrolled (re-identification probes). The key
-- (content_sha256, face_index, model_id) makes re-processing an image idempotent. job_id has no
-- foreign key: the jobs table belongs to a later migration and observations outlive jobs.
CREATE TABLE IF NOT EXISTS observed_faces (
    observed_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_sha256 text NOT NULL,
    face_index     integer NOT NULL,
    model_id       text NOT NULL,
    source_uri     text,
    embedding_dim  smallint NOT NULL,
    embedding      vector(512) NOT NULL,
    box            real[] NOT NULL,
    landmarks      real[] NOT NULL,
    det_score      real NOT NULL,
    quality_score  real NOT NULL,
    quality_level  smallint NOT NULL,
    job_id         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT observed_dim_check CHECK (embedding_dim = vector_dims(embedding)),
    CONSTRAINT observed_key UNIQUE (content_sha256, face_index, model_id)
);
ALTER TABLE observed_faces ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX IF NOT EXISTS observed_created_idx ON observed_faces (created_at);
CREATE INDEX IF NOT EXISTS observed_job_idx ON observed_faces (job_id);

-- Candidates of an observed face, best first (rank 1..N), per job ('' when no job). Rewriting
-- the candidates of (observed face, job) replaces them, so a retried chunk never duplicates.
-- Deleting a person or face deletes its matches: a deleted person is never reported again.
CREATE TABLE IF NOT EXISTS matches (
    observed_id bigint NOT NULL REFERENCES observed_faces (observed_id) ON DELETE CASCADE,
    job_id      text NOT NULL DEFAULT '',
    rank        smallint NOT NULL,
    person_id   text NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
    face_id     bigint NOT NULL REFERENCES faces (face_id) ON DELETE CASCADE,
    score       real NOT NULL,                -- cosine similarity
    confidence  real NOT NULL,                -- 0-100 (pipeline.similarity)
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (observed_id, job_id, rank)
);
CREATE INDEX IF NOT EXISTS matches_person_idx ON matches (person_id);
CREATE INDEX IF NOT EXISTS matches_face_idx ON matches (face_id);
CREATE INDEX IF NOT EXISTS matches_job_idx ON matches (job_id);
