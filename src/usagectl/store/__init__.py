"""Storage: tables, engine, migrations and queries (SQLAlchemy Core, SQLite and PostgreSQL)."""
