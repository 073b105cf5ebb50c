"""One index on PointLot.account instead of two (issue #3: expiry of 1,000,000 lots).

Expiring a lot changes `remaining`, which partial indexes name, so the update is never
HOT: the new version of the lot goes into every index whose condition it meets. It met
both the plain account index and `lot_account_closed` (account, -id WHERE remaining = 0).
`lot_account_recent` (account, -id) replaces both: it serves the closed lots newest first
(explain), the admin's search by member and the foreign key, for one insert per expired
lot instead of two. Measured on 200,000 due lots in one UPDATE: about a quarter less.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0012_cheap_expiry_writes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="pointlot",
            name="lot_account_closed",
        ),
        migrations.AlterField(
            model_name="pointlot",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lots",
                to="loyalty.pointsaccount",
            ),
        ),
        migrations.AddIndex(
            model_name="pointlot",
            index=models.Index(fields=["account", "-id"], name="lot_account_recent"),
        ),
    ]
