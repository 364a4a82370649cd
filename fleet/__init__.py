"""The many-device collector (`edge-qwq collect`): every device's decisions, events and status from MQTT into
one central store (SQLite or PostgreSQL), and a status page of all devices. Torch-free; imports only
edge_runtime from the repo."""
