-- 0020: prompt-cache hits of an LLM generation (Bedrock cacheReadInputTokens), next to
-- input_tokens / output_tokens. A guardrail refusal is failure_kind = 'llm_refused'.
ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS cache_read_tokens integer;
