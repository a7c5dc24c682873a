"""`deltamem-chat serve`: an OpenAI-compatible HTTP server whose sessions keep their own δ-mem memory.

`app` builds the FastAPI application, `sessions` keeps one engine per session on one shared model (turns in
arrival order, idle sessions saved and evicted), `requests` checks what clients send, `errors` turns every refusal
into an OpenAI-style error body, `security` checks the API key.
"""
