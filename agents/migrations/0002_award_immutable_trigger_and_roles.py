"""Award entries are immutable like the member ledger; supervisors get the agents permissions.

loyalty's migration 0003 created `loyalty_refuse_change()`, a generic trigger function (it
names the table through TG_TABLE_NAME), so this only attaches a trigger calling it, with the
same `<table>_immutable` naming; nothing of the ledger's mechanism is copied.
"""

from django.db import migrations

from loyalty.roles import sync_role_groups

TABLE = "agents_awardentry"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION loyalty_refuse_change()"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_immutable ON {TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
        ("loyalty", "0003_ledger_immutable_trigger"),
    ]

    operations = [
        migrations.RunPython(create, drop),
        migrations.RunPython(sync_role_groups, migrations.RunPython.noop),
    ]
