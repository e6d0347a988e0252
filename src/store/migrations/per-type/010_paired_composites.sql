-- Issue 16, index rows per Observation: `code-value-quantity`, `code-value-concept` and
-- `code-value-date` pair an Observation's codes with its one value, so they keep no rows of their
-- own and are searched on the rows of `code` and of the value's parameter (src/search/registry.ts,
-- PAIRED_BY_RESOURCE). Their old rows go. The constant condition makes this a no-op (not even a
-- scan) on every table but Observation's.
DELETE FROM {{table}}_composite
  WHERE '{{table}}' = 'observation' AND param IN ('code-value-quantity', 'code-value-concept', 'code-value-date');
