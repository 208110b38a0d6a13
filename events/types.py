"""Every event type, with what it tells (docs/events.md documents each payload). An event
of another type is a programming error: ``event_emit`` refuses it."""

EVENT_TYPES = {
    "execution.queued": "An execution is waiting for a worker (new, a retry, or released "
    "by its pipeline run).",
    "execution.started": "A worker started an execution's command.",
    "execution.finished": "An execution ended: succeeded, failed, timed_out, expired or "
    "skipped (status in the payload).",
    "execution.lost": "An execution's worker went silent; it is retried if its budget allows.",
    "execution.cancelled": "An execution was cancelled.",
    "pipeline_run.started": "A pipeline run's first job started.",
    "pipeline_run.finished": "A pipeline run ended: succeeded, failed or cancelled.",
    "schedule.fired": "A schedule slot queued its execution or started its pipeline run.",
    "schedule.skipped": "A slot was not run: the previous run was still active (forbid), "
    "or the pipeline is paused.",
    "schedule.missed": "Slots passed while no scheduler ran (misfire policy).",
    "schedule.late": "A schedule with alert_after_seconds turned down: a slot did not "
    "succeed in time.",
    "schedule.recovered": "A down schedule succeeded again and is up.",
    "worker.online": "A worker registered (or came back).",
    "worker.offline": "A worker stopped (gracefully).",
    "worker.lost": "A worker went silent and was declared lost.",
    "pool.scaled": "A worker pool started or stopped workers.",
    "webhook.test": "A test event sent from the admin or the API to one subscription.",
}
