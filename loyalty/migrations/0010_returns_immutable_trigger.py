"""Purchase returns and unpaid activities are records written once: on PostgreSQL a trigger
refuses UPDATE and DELETE of them, with loyalty_refuse_change() from migration 0003."""

from django.db import migrations

TABLES = ["loyalty_purchasereturn", "loyalty_unpaidactivity"]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_change()"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0009_returns_unpaid_activities")]

    operations = [migrations.RunPython(create, drop)]
