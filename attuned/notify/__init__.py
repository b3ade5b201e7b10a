"""Telling the world: the events the outbox holds, the sinks they go to, and the dispatcher
that delivers them at least once, in order per pack, surviving restarts."""
