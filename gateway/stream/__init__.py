"""The live stream: Server-Sent Events per signed-in user, from its own async (eventlet)
process fed by RabbitMQ. `python -m gateway.stream` runs it (app.py, hub.py, bus.py)."""
