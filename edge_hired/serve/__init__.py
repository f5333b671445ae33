"""`edge-hired serve`: an OpenAI-compatible chat-completions server over the HiRED pipeline.

One job per module: `schemas` (request models), `api_errors` (OpenAI error shapes),
`image_sources` / `image_decode` (bytes from a URL, then the runtime's pixels), `conversation`
(messages to prompt ids split at the image), `prefix_cache` (reusable prompt prefixes),
`sampling` (request fields to the runtime's options), `admission` (memory plan), `scheduler`
(the worker that batches over `runtime.engine`, the decode engine `run` uses too), `events`
(what the worker tells a request), `detokenize` (text deltas and stop strings), `metrics`,
`responses` (OpenAI shapes), `app` (routes, cancellation) and `server` (uvicorn).
"""
