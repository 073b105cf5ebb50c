from django.db import migrations, models

from loyalty.migration_ops import AddIndexConcurrently, RemoveIndexConcurrently


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run in a transaction; postings go on while the ledger is indexed.
    atomic = False

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("loyalty", "0013_lot_account_recent_index"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="ledgerentry", name="entry_subject"),
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(
                condition=models.Q(("subject_type__isnull", False)),
                fields=["subject_type", "subject_id"],
                name="entry_subject",
            ),
        ),
    ]
