"""directory edits: a count of the writes to the directory tables, kept by triggers, so an unchanged
sync notices an edit made by hand in SQL (re-dated, moved or closed mappings and plan periods) in one cheap read;
and a directory tenant's own-account Twilio token may live in a file (the tenant keeps the file's path, never the
token, as `twilio_auth_token_env` keeps a variable's name)

Revision ID: 0012_directory_edits
Revises: 0011_directory_digests
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_directory_edits"
down_revision = "0011_directory_digests"
branch_labels = None
depends_on = None

TABLES = ("tenants", "tenant_plans", "tenant_mappings")


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("twilio_auth_token_file", sa.String(length=1000), nullable=True))
    op.create_table(
        "directory_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_changes")),
    )
    op.execute("INSERT INTO directory_changes (id, changes) VALUES (1, 0)")
    # PostgreSQL: a trigger per statement, inserts too (a sync's inserts are one COPY per table). SQLite has only
    # triggers per row: one per inserted row would double the cost of a first sync, so there inserts are seen by
    # the tables' count and largest id instead; updates and deletes (any column, any tool) bump the count.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE directory_changes SET changes = changes + 1 WHERE id = 1; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION directory_changed()"
            )
        return
    for table in TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_{event.lower()}d AFTER {event} ON {table} BEGIN "
                "UPDATE directory_changes SET changes = changes + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_changed ON {table}")
        op.execute("DROP FUNCTION directory_changed()")
    else:
        for table in TABLES:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}d")
    op.drop_table("directory_changes")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("twilio_auth_token_file")
