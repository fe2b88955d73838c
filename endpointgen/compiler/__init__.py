"""The compiler: YAML loading, checks beyond the schema, the plan, and rendering to source."""
