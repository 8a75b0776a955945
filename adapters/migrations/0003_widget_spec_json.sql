-- Keep widget specs exactly as written: jsonb reorders object keys, which reordered a
-- widget's mock_data columns (and so a degraded tile's columns) after a reload.
ALTER TABLE widgets ALTER COLUMN spec TYPE json USING spec::json;
