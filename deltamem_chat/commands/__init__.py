"""Sub-commands of the `deltamem-chat` CLI, one module each; each exposes `register(app)`."""
