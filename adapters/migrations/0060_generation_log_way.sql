-- Which way answered a free-text question: compiled_from_metric (the model's intent over a
-- catalog metric, compiled) or model_written_unverified (the model wrote the SQL); the
-- grounded intent, and the model's reason for (not) grounding it.
ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS way text;
ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS grounded_intent jsonb;
ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS grounding text;
