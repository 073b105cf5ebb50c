from django.db import migrations

from loyalty.roles import sync_role_groups


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0004_program_rules")]

    operations = [migrations.RunPython(sync_role_groups, migrations.RunPython.noop)]
