"""Running a spec on this machine: serve it, test its route examples, document it as OpenAPI."""
