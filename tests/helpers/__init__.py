"""Helpers shared by the tests (import as `helpers.<module>`; `tests/` is on the path).

- `cli`: a providers.yaml with a small suite, provider entries, the console script run in a
  subprocess, the one-line error every bad input ends in.
- `db`: a fresh PostgreSQL database, stores with the schema in place, rounds moved in time.
- `servers`: real loopback servers (a quiet HTTP handler, OpenAI-style providers, an ASGI app
  on uvicorn in a thread).
- `openai`: OpenAI-format bodies (completions, stream chunks, SSE) and a tool.
- `rounds`: a round run in process with scripted endpoints.
- `observations`, `records`: observations and findings built by hand; `synthetic`: synthetic
  rounds with a known answer.
- `seeded`: a results database seeded with known facts, for the dashboard's tests.
- `zygote`: a warm process that forks `auditor` commands (the `zygote` fixture).
- `recorded`, `pairs`: recorded fleet rounds and the perturbed-pairs suite.
"""
