"""``router serve``: an OpenAI- and Anthropic-compatible HTTP proxy (aiohttp.web) in front of
one Router. Clients in any language use the route file's aliases as model names.

    POST /v1/chat/completions        OpenAI Chat Completions (whole or SSE)
    POST /v1/messages                Anthropic Messages (whole or SSE)
    POST /v1/messages/count_tokens   the router's prompt estimate
    GET  /v1/models                  the aliases
    POST /v1/router/explain          the dry-run decision for a chat body
    GET  /healthz, /readyz           liveness, readiness
    GET  /metrics                    Prometheus text (router.server.observe)

``router.server.run`` builds and runs it (``router.server.processes``: uvloop, and
``--workers`` on one port); ``router.server.app.create_app`` is the application for embedding
or tests.
"""
