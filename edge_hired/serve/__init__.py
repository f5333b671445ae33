"""`edge-hired serve`: an OpenAI-compatible chat-completions server over the HiRED pipeline.

One job per module: `schemas` (request models), `api_errors` (OpenAI error shapes),
`image_sources` / `image_decode` (bytes from a URL, then pixels), `conversation` (messages to
prompt ids split at the image), `kv` and `prefix_cache` (reusable prompt prefixes), `engine`
(prefill and batched decode), `sampling`, `admission` (memory plan), `scheduler` (the worker
that batches), `metrics`, `streaming` (SSE chunks), `app` (routes) and `server` (uvicorn).
"""
