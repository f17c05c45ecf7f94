"""Widgets of the operator console: one panel per subsystem, the connection line and the latency chart."""
