from django.db import models


class MetricValue(models.Model):
    """One cumulative series of a domain metric, shared by every process through the
    database: agents and qcluster add to it, every service's /metrics reads it.

    A counter is one row per label set; a histogram is one row per bucket (``le``) plus
    its ``_sum`` and ``_count``. Values only grow, so they are counters Prometheus can
    rate(), whatever process restarts and whatever retention deletes."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=255, blank=True, default="", help_text="k=v,k=v sorted")
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="metricvalue_series_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}} {self.value}"
