"""``servesim serve``: the simulated engine online, behind vLLM's OpenAI-compatible HTTP API.

Modules: :mod:`~servesim.serve.online` (the engine driven by the wall clock),
:mod:`~servesim.serve.app` (routes), :mod:`~servesim.serve.protocol` (request and response
bodies), :mod:`~servesim.serve.tokens` (prompt lengths, content ids, filler text),
:mod:`~servesim.serve.metrics` (vLLM's Prometheus metrics). Needs the ``serve`` extra
(``pip install 'servesim[serve]'``: FastAPI, uvicorn, prometheus_client, tokenizers).
"""
