"""Widgets, one module each, named after the class they define."""
