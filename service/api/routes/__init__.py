"""One router per resource: health, models, cameras, scores, alerts and the WebSocket feeds."""
