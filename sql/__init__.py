"""The warehouse: table definitions, migrations and set-based SQL."""
