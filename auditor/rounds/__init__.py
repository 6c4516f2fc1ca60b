"""One round: which requests to send (budget), under which limits (limits), sent and stored
as they arrive (runner), wired together step by step (run)."""
