"""The engine contract over HTTP: `RemoteEngine` drives a session of `deltamem-chat serve` as the screens and the
replay drive a local engine; `wire` is the events' JSON form, shared with the server."""
