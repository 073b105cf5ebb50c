"""Make expiring a lot a cheap write (issue #3: 1,000,000 lots in under 15 s on PostgreSQL).

- PointLot.expiry_entry: no database foreign key (its deferred check ran once per lot at
  commit) and no index (nothing reads lots by it); `ledger.reconcile` checks it instead.
- LedgerEntry: drop the single-column indexes on program, account and subject_type, which
  composite indexes leading with the same column already serve; actor and reverses get
  partial indexes (NOT NULL only), as most entries, every job's, have neither.
- PointLot fillfactor 80 on PostgreSQL: room on each page for the new version of an updated
  lot, so debits and expiry write it next to the old one instead of at the end of the table.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE loyalty_pointlot SET (fillfactor = 80)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE loyalty_pointlot RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("loyalty", "0011_entry_program_posted_cover"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerentry",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="loyalty.pointsaccount",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="program",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="loyalty.program",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="reverses",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="reversals",
                to="loyalty.ledgerentry",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="subject_type",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="contenttypes.contenttype",
            ),
        ),
        migrations.AlterField(
            model_name="pointlot",
            name="expiry_entry",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="expired_lots",
                to="loyalty.ledgerentry",
            ),
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("actor__isnull", False)), fields=["actor"], name="entry_by_actor"
            ),
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("reverses__isnull", False)), fields=["reverses"], name="entry_reverses"
            ),
        ),
        migrations.RunPython(set_fillfactor, reset_fillfactor),
    ]
