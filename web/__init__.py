"""Transports: the REST blueprint and the Socket.IO handlers. Nothing below imports this."""
