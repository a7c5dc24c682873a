"""The engine under the app: the engine contract (`contract`), lanes on one backbone (`lanes`), the A/B engine
(`engine`), loading models (`loading`) and sessions on disk (`session_io`).

Import from the submodules: the contract needs no torch, so a screen or a remote client can use it alone.
"""
