"""The REST/WebSocket API: `create_app()` builds the FastAPI app; it never imports torch."""
