from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_preference"),
    ]

    operations = [
        migrations.AddField(
            model_name="preference",
            name="language",
            field=models.CharField(blank=True, max_length=16),
        ),
    ]
