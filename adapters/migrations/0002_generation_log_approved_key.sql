-- The approved-SQL key (question, intent, metric, schema, model, safety policy) of each LLM
-- generation, so a restarted instance can reuse exactly the SQL approved for that request
-- while Bedrock is down.
ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS approved_key text;
CREATE INDEX IF NOT EXISTS sql_generation_log_approved_key_idx
    ON sql_generation_log (approved_key, id DESC)
    WHERE safety_allowed;
