"""The one small library every service and the gateway share: config, Mongo dependency,
typed errors, time and phone helpers, cursors, event plumbing."""
