"""Screens of the operator console: the dashboard and its modal dialogs."""
