"""The language server: the JSON-RPC transport (transport.py: framing, stdio and TCP,
sessions) and the LSP handlers (server.py), which hand each request to the engine."""
