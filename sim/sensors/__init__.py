"""Sensor models. Each takes a :class:`CaptureContext` and returns its payload array."""
