"""Git-aware operations: plans against a ref with cost estimates, deploy, workspaces, init."""
