"""Everything that talks to RabbitMQ: RPC client and pool, reply and publish channels, the
outbox and the reliable event handlers. README.md lists the nameko internals they override."""
