"""Who may cause a command to run: one rule, checked by the API and the admin alike.

Running is its own permission (as Rundeck separates ``run`` from ``update``): changing a
schedule or a job does not let anyone run anything. Everything that makes a command
run needs ``workermanager.run_job``: execute, retry, run now, creating, enabling or
re-pointing a schedule, running a pipeline. A command the user writes (an ad-hoc one, or
a job's command overridden) also needs ``workermanager.run_command``, and receives the
job's secret variables only if the user may change that job."""

from hodei.exceptions import Forbidden

RUN = "workermanager.run_job"
RUN_COMMAND = "workermanager.run_command"
CHANGE_JOB = "orchestrator.change_job"


def require_run(user, *, own_command: bool = False) -> None:
    """Raise Forbidden (403) unless ``user`` may cause a command to run (one of their own
    writing, with ``own_command``)."""
    if not user.has_perm(RUN):
        raise Forbidden(
            "You may not run jobs: that needs the run permission (workermanager.run_job)."
        )
    if own_command and not user.has_perm(RUN_COMMAND):
        raise Forbidden(
            "You may not run a command of your own (ad hoc, or a job's command overridden): "
            "that needs workermanager.run_command."
        )


def may_run(user, *, own_command: bool = False) -> bool:
    try:
        require_run(user, own_command=own_command)
    except Forbidden:
        return False
    return True


def secrets_for_own_command(user) -> bool:
    """Whether a command this user wrote may receive the job's secret variables: only if
    they may change the job (and so could put the command there themselves)."""
    return user.has_perm(CHANGE_JOB)


class OperatePermissionMixin:
    """For a ModelAdmin of history (executions, pipeline runs): nobody edits one.
    Operators act on them (cancel) with the model's ``change`` permission; running
    again (retry) needs the run permission, as in the API; viewers only look."""

    def has_operate_permission(self, request, obj=None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_run_permission(self, request, obj=None) -> bool:
        return may_run(request.user)
