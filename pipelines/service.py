"""`dataops serve`: the scheduler, the replay clock, metrics, monitors and incidents in one process.

APScheduler 3 with a persistent SQLAlchemy job store in the ops database (pipelines/service_scheduler.py) runs one
job per scheduled pipeline and a monitor timer; the replay clock is saved there too (pipelines/service_clock.py).
A job runs the pipeline from its watermark to the clock's now, never two at once (max_instances=1 plus a
cross-process file lock), coalescing missed fire times; transient failures
are retried with the platform's one backoff rule (pipelines/retry.py: `run_max_attempts`, waits from
`run_backoff_s` doubling, a source's Retry-After honoured), validation failures never (they are data, not luck). Findings from
runs and monitors become incidents. Each run marks the days it changed in its marts, and the last window of a firing
refreshes them, coalesced with what the marts' other inputs marked (pipelines/mart_refresh.py), so two pipelines
feeding one mart never race for it. After each successful firing of a forecast's `after` pipeline, a worker thread
issues the forecasts at the clock's now (coalesced; a refit takes seconds, so it never runs inside the pipeline's job),
and due upkeep waits for the greenest window of the forecast within DATAOPS_UPKEEP_GREEN_DEADLINE_HOURS
(pipelines/forecast/deferral.py). The log says one line per run (pipelines/run_log.py); conflicts that heal themselves
say one INFO line, and tracebacks are for bugs (or --verbose). SIGTERM waits for the running job to end: write-audit-publish means
an interrupted run leaves `main` valid anyway, but a clean stop leaves nothing to recover.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from config.errors import DataOpsError
from config.inventory import MonitorSpec
from pipelines import metrics
from pipelines.clock import Clock, ReplayClock
from pipelines.context import PlatformContext
from pipelines.control import PipelineBusyError
from pipelines.email_notifier import email_extension
from pipelines.forecast.deferral import Deferral
from pipelines.incidents import Incident
from pipelines.intensity_gauge import observe_intensity
from pipelines.monitors.checks import evaluate, source_covers
from pipelines.monitors.findings import findings_from_forecast, findings_from_run
from pipelines.promotion import day_floor, run_pipeline, split_windows
from pipelines.retry import retry, run_failure, scheduler_budget
from pipelines.run_log import RUN_LOG, forecast_line, run_line
from pipelines.run_result import RunResult
from pipelines.service_clock import save_clock, service_clock
from pipelines.service_scheduler import build_scheduler, shut_down
from pipelines.sources.base import Window

log = logging.getLogger(__name__)
_SERVICE: Service | None = None
IncidentHook = Callable[[Incident, bool], None]


def _run_job(pipeline: str) -> None:
    """Module-level job target (the SQLAlchemy job store stores a reference, not a closure)."""
    if _SERVICE is not None:
        _SERVICE.tick(pipeline)


def _upkeep_job() -> None:
    if _SERVICE is not None and not _SERVICE.stopping.is_set():
        _SERVICE.upkeep_tick()


def _deferred_upkeep_job() -> None:
    if _SERVICE is not None and not _SERVICE.stopping.is_set():
        _SERVICE.run_upkeep(_SERVICE.deferral)


def _monitor_job() -> None:
    if _SERVICE is not None:
        _SERVICE.monitor_tick()


class ServiceExtension(Protocol):
    """Something that runs alongside the service (the agent, the Slack app); registered by upper layers."""

    def on_incident(self, incident: Incident, opened: bool) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...


# What an upper layer hands the service to run alongside it (the agent: `dataops serve` in evals/cli.py
# passes it); the service never imports them, so the layers stay one-way.
ExtensionFactory = Callable[["Service"], ServiceExtension | None]


class Service:
    def __init__(
        self,
        ctx: PlatformContext,
        *,
        clock: Clock | None = None,
        on_incident: IncidentHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
        extensions: Sequence[ExtensionFactory] = (),
    ) -> None:
        self.ctx = ctx
        self.extension_factories = tuple(extensions)
        self.clock = clock or service_clock(ctx)
        self.on_incident = on_incident
        self.sleep = sleep
        self.stopping = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        self._monitor_lock = threading.Lock()
        self.results: list[RunResult] = []
        self.extensions: list[ServiceExtension] = []
        self._forecasts_due = threading.Event()
        self.deferral: Deferral | None = None  # the upkeep waiting for its greenest window, if any
        self._forecast_status: dict[str, str] = {}
        self._forecast_worker: threading.Thread | None = None

    # -- work ----------------------------------------------------------------------------------------
    def report(self, findings: list[Any], now: datetime) -> list[Incident]:
        incidents = []
        for finding in findings:
            incident, opened = self.ctx.incidents.report(finding, now=now)
            incidents.append(incident)
            if opened:
                log.info("incident %d opened: [%s] %s", incident.id, incident.severity, incident.title)
                metrics.INCIDENTS_OPENED.labels(incident.severity).inc()
            if self.on_incident is not None:
                self.on_incident(incident, opened)
            for extension in self.extensions:
                try:
                    extension.on_incident(incident, opened)
                except Exception:  # an extension must never stop the pipelines
                    log.exception("extension %s failed on incident %d", type(extension).__name__, incident.id)
        for severity, count in self.ctx.incidents.open_counts().items():
            metrics.OPEN_INCIDENTS.labels(severity).set(count)
        return incidents

    def run_window(self, pipeline: str, start: datetime, now: datetime) -> bool:
        """Run `pipeline` from `start` to `now` in request-sized windows; True if every window completed."""
        spec = self.ctx.inventory.pipeline(pipeline)
        days = self.ctx.inventory.source(spec.source).chunk_days
        windows = split_windows(start, now, days)
        for number, window in enumerate(windows, start=1):
            if self.stopping.is_set():
                return False
            # A catch-up over several windows marks its marts' days in each and refreshes them once, in the last
            # (pipelines/mart_refresh.py); days left marked by a window that failed wait for the next tick.
            refresh = number == len(windows)
            result, report = retry(
                partial(self._attempt, pipeline, window, now, refresh),
                run_failure,
                budget=scheduler_budget(self.ctx.settings),
                start=now,
                wait=self.sleep,  # real seconds: the settings say so, and the replay clock runs on meanwhile
                seed=f"{pipeline}:{window.start.isoformat()}",
            )
            RUN_LOG.log(logging.WARNING if result.status == "failed" else logging.INFO, "%s", run_line(result, len(report.attempts)))
            observe_intensity(self.ctx, result)
            self.report(findings_from_run(result, silver=spec.silver), now)
            if result.status == "failed":
                return False
        return True

    def _attempt(self, pipeline: str, window: Window, now: datetime, refresh_marts: bool, attempt: int, _at: datetime) -> RunResult:
        result = run_pipeline(self.ctx, pipeline, window, as_of=now, attempt=attempt, refresh_marts=refresh_marts)
        self.results.append(result)
        return result

    def tick(self, pipeline: str) -> None:
        """One scheduled firing: run from the watermark to now, then evaluate this pipeline's monitors."""
        now = self.clock.now()
        control = self.ctx.control
        if control.is_paused(pipeline):
            log.info("%s is paused; skipping", pipeline)
            return
        spec = self.ctx.inventory.pipeline(pipeline)
        if not source_covers(self.ctx, spec.silver, now):
            return
        try:
            with control.exclusive(pipeline):
                watermark = control.watermark(pipeline) or self._first_watermark(now)
                if now <= day_floor(watermark):
                    # The clock stands before what this pipeline already processed (a replay restarted at an earlier
                    # DATAOPS_REPLAY_START): nothing is new until it passes the watermark.
                    log.info(
                        "%s: the clock (%s) is before its watermark (%s); nothing new to run",
                        pipeline,
                        now.isoformat(),
                        watermark.isoformat(),
                    )
                    return
                if self.run_window(pipeline, day_floor(watermark), now):
                    control.set_watermark(pipeline, now)
                    if any(f.after == pipeline for f in self.ctx.inventory.forecasts.values()):
                        self._forecasts_due.set()  # the forecast worker issues at the clock's now, coalescing firings
        except PipelineBusyError as exc:
            log.info("%s", exc)
            return
        written = {spec.silver, spec.bronze, *(self.ctx.inventory.mart(m).table for m in spec.marts)}
        self.evaluate_monitors([m for m in self.ctx.inventory.monitors.values() if m.table in written], now)

    def _first_watermark(self, now: datetime) -> datetime:
        if self.ctx.settings.source_mode == "replay":
            return self.ctx.settings.replay_start
        return now - timedelta(days=1)

    def evaluate_monitors(self, monitors: list[MonitorSpec], now: datetime) -> list[Incident]:
        with self._monitor_lock:
            findings = evaluate(self.ctx, monitors, now)
            return self.report(findings, now)

    def forecast_tick(self) -> None:
        """Issue every forecast at the clock's now, then judge their realised accuracy (metrics and monitors)."""
        from pipelines.forecast.accuracy import observe_accuracy
        from pipelines.forecast.run import run_forecast

        now = self.clock.now()
        for name, spec in self.ctx.inventory.forecasts.items():
            try:
                result = run_forecast(self.ctx, name, as_of=now)
            except DataOpsError as exc:
                RUN_LOG.warning("forecast %s at %s failed: %s", name, now.isoformat(), exc)
                continue
            warming = result.status == "insufficient_history"
            if result.status != "skipped" and not (warming and self._forecast_status.get(name) == result.status):
                # while history builds up, one line says so, not one per carbon run
                RUN_LOG.log(logging.WARNING if result.status == "quarantined" else logging.INFO, "%s", forecast_line(result))
            self._forecast_status[name] = result.status
            self.report(findings_from_forecast(result, table=spec.table), now)
            try:
                observe_accuracy(self.ctx, name, until=now)
            except Exception:  # a metric must never stop the forecasts
                log.warning("could not compute the realised accuracy of %s", name, exc_info=log.isEnabledFor(logging.DEBUG))
            self.evaluate_monitors([m for m in self.ctx.inventory.monitors.values() if m.table == spec.table], now)

    def upkeep_tick(self) -> None:
        """Upkeep is due: run it now, or at the greenest window of the forecast within the deadline (a one-off job)."""
        from pipelines.forecast.deferral import plan_deferral

        s, now = self.ctx.settings, self.clock.now()
        if s.upkeep_green_deadline_hours > 0 and self.ctx.inventory.forecasts and self.scheduler is not None:
            deferral = plan_deferral(self.ctx, now=now, hours=s.upkeep_green_window_hours, deadline_hours=s.upkeep_green_deadline_hours)
            if deferral.deferred:
                real = self.clock.to_real(deferral.run_at) if isinstance(self.clock, ReplayClock) else deferral.run_at.timestamp()
                self.deferral = deferral
                self.scheduler.add_job(
                    _deferred_upkeep_job,
                    trigger=DateTrigger(run_date=datetime.fromtimestamp(real, UTC), timezone=UTC),
                    id="upkeep:deferred",
                    name="table upkeep at the greenest window",
                    replace_existing=True,
                )
                log.info("upkeep %s", deferral.reason)
                return
            self.run_upkeep(deferral)
            return
        self.run_upkeep(None)

    def run_upkeep(self, deferral: Deferral | None) -> None:
        """Compact, expire and clean every table, then record the carbon intensity it ran at."""
        from pipelines.forecast.deferral import record_upkeep_intensity
        from pipelines.lakehouse.upkeep import upkeep

        self.deferral = None
        for result in upkeep(self.ctx):
            if result.compaction and result.compaction.days_compacted:
                log.info("upkeep %s: compacted %s", result.table, ", ".join(result.compaction.days_compacted))
            if result.expiry and (result.expiry.snapshots_expired or result.expiry.files_deleted):
                log.info(
                    "upkeep %s: expired %d snapshots, deleted %d files",
                    result.table,
                    result.expiry.snapshots_expired,
                    result.expiry.files_deleted,
                )
        try:
            ran = record_upkeep_intensity(self.ctx, at=self.clock.now(), deferral=deferral)
        except Exception:  # the record must never fail the upkeep
            log.warning("could not record the intensity upkeep ran at", exc_info=log.isEnabledFor(logging.DEBUG))
            return
        if ran.value is not None:
            log.info("upkeep ran at %.0f gCO2/kWh (%s)", ran.value, ran.kind)

    def _forecast_loop(self) -> None:
        while not self.stopping.is_set():
            if not self._forecasts_due.wait(0.2):
                continue
            self._forecasts_due.clear()
            try:
                self.forecast_tick()
            except Exception:  # a bug in a forecast must not stop the pipelines; it is logged with its traceback
                log.exception("forecast tick failed")

    def monitor_tick(self) -> None:
        now = self.clock.now()
        metrics.CLOCK.set(now.timestamp())
        self.evaluate_monitors([m for m in self.ctx.inventory.monitors.values() if m.kind == "freshness"], now)
        save_clock(self.ctx, self.clock)
        for extension in self.extensions:
            try:
                extension.tick()
            except Exception:
                log.exception("extension %s failed on tick", type(extension).__name__)

    # -- lifecycle -------------------------------------------------------------------------------------
    def attach_extensions(self) -> None:
        """Create the registered extensions (once); `start()` does it, drivers without a scheduler call it."""
        if not self.extensions:
            # The email notifier first, and with or without the agent: the agent hands it its approval requests.
            self.extensions = [e for e in [self._extension(email_extension)] if e is not None]
            self.extensions += [e for e in (self._extension(factory) for factory in self.extension_factories) if e is not None]

    def _extension(self, factory: ExtensionFactory) -> ServiceExtension | None:
        """One extension, or None when it cannot start for a reason outside the platform (a neighbour down).

        A settings error still stops the service with its message: that is the operator's to fix now.
        """
        try:
            return factory(self)
        except DataOpsError:
            raise
        except Exception:
            log.exception(
                "extension %s could not start; the pipelines and monitors run without it", getattr(factory, "__qualname__", factory)
            )
            return None

    def start(self) -> BackgroundScheduler:
        global _SERVICE
        _SERVICE = self
        if isinstance(self.clock, ReplayClock):
            # Start the replay from its start instant now, not when the process began loading (seconds of
            # imports are hours of simulated time).
            self.clock = ReplayClock(start=self.clock.start, speed=self.clock.speed)
        s = self.ctx.settings
        # The job targets are this module's functions: the job store keeps a reference to each, not a closure.
        scheduler = build_scheduler(self.ctx, self.clock, run_job=_run_job, monitor_job=_monitor_job, upkeep_job=_upkeep_job)
        self.attach_extensions()
        if self.ctx.inventory.forecasts:
            # Import the models (scikit-learn) here, in one thread: two threads importing it at once can meet
            # Python's import-lock deadlock detection (seen: narwhals under scikit-learn, a monitor and the worker).
            import pipelines.forecast.models  # noqa: F401

            # Forecasts run beside the pipelines, not inside the run that triggers them: a refit takes seconds.
            self._forecast_worker = threading.Thread(target=self._forecast_loop, name="forecasts", daemon=True)
            self._forecast_worker.start()
        scheduler.start()
        if s.maintenance_interval_hours <= 0 and scheduler.get_job("upkeep") is not None:
            scheduler.remove_job("upkeep")  # switched off since the job store last saw it
        self.scheduler = scheduler
        return scheduler

    def stop(self) -> None:
        self.stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            shut_down(self.scheduler)
        if self._forecast_worker is not None:
            self._forecast_worker.join()
        for extension in self.extensions:
            try:
                extension.stop()
            except Exception:  # the clock is saved whatever an extension does on its way out
                log.exception("extension %s failed to stop", type(extension).__name__)
        save_clock(self.ctx, self.clock)

    def serve_forever(self, *, until: datetime | None = None, poll_s: float = 0.2) -> None:
        """Run until SIGTERM/SIGINT or until the clock passes `until`."""

        def handle(signum: int, _frame: Any) -> None:
            log.warning("signal %d: stopping after the running jobs finish", signum)
            self.stopping.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        if RUN_LOG.level == logging.NOTSET:  # a level the operator's logging configuration set wins
            RUN_LOG.setLevel(logging.INFO)
        try:
            self.start()
            while not self.stopping.wait(poll_s):
                if until is not None and self.clock.now() >= until:
                    break
        finally:
            self.stop()
            for sig, old in previous.items():
                signal.signal(sig, old)
