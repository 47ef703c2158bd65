"""The MQTT bridge (`vigil mqtt`): alert events, camera states and scores to a broker; Home Assistant discovery."""
