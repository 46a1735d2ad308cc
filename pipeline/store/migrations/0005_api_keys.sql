-- 0005 (api keys): application keys of the HTTP API and the access tokens issued for them.
--
-- A key is one pair (key_id, secret): the Bearer secret of /v1, the SecretId/SecretKey of the
-- Tencent protocols and the API Key/Secret Key of Baidu. The secret is stored twice, never in
-- plain text: its SHA-256 (bearer look-up by hash) and encrypted under the server key
-- FACEPIPE_SECRET_KEY (the HMAC signature checks need the secret itself). A revoked key keeps
-- its row (revoked_at) so that the list says when and its tokens stop at once.

CREATE TABLE IF NOT EXISTS api_keys (
    key_id        text PRIMARY KEY,
    name          text NOT NULL,
    appid         text NOT NULL UNIQUE,
    secret_sha256 text NOT NULL UNIQUE,
    secret_enc    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Baidu OAuth access tokens (client-credentials grant): stored as their SHA-256 only.
CREATE TABLE IF NOT EXISTS api_tokens (
    token_sha256 text PRIMARY KEY,
    key_id       text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_tokens_key_idx ON api_tokens (key_id);
CREATE INDEX IF NOT EXISTS api_tokens_expiry_idx ON api_tokens (expires_at);

-- Explicit groups (IAI CreateGroup): a group made on purpose carries a name, a tag and custom
-- field names, and outlives its last member; groups made implicitly (YouTu, Baidu, /v1, bulk
-- enrolment) keep explicit = false and still vanish with their last member. Kept in this
-- migration (not one of its own) because the HTTP protocols that need it arrive together.
ALTER TABLE groups ADD COLUMN IF NOT EXISTS explicit boolean NOT NULL DEFAULT false;
ALTER TABLE groups ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN IF NOT EXISTS tag text NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN IF NOT EXISTS ex_fields jsonb NOT NULL DEFAULT '[]'::jsonb;
-- A person's values of its group's custom fields (IAI PersonExDescriptionInfos), aligned with
-- groups.ex_fields by index ('' where unset).
ALTER TABLE memberships ADD COLUMN IF NOT EXISTS ex_values jsonb NOT NULL DEFAULT '[]'::jsonb;
