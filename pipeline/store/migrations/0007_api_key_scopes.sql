-- 0007 (api key scopes): a key may be limited to some groups and/or to read-only calls.
--
-- group_ids NULL: every group (the keys made before this migration keep working as they did);
-- otherwise the only groups the key's calls may name or reach through a person or a face.
-- read_only: the key may detect, compare, verify, identify and read the library, never change
-- it nor submit jobs. Checked by every protocol (pipeline/api/scope.py).

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS read_only boolean NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS group_ids text[];
