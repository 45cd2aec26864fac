"""What the blueprints share: parameter types and groups (`types`, `groups`), the refusals and advisories of one
établissement's parameters (`refusals`), the platform layer built once per cluster (`platform`) and the
per-établissement cell (`cell`)."""
