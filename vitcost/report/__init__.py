"""Presentation: rows, units, tables and HTML reports. Heavy libraries are imported lazily."""
