"""Runs one ML strategy per file of a config directory and hot-swaps their configs.

At start every ``*.yaml`` in ``dir`` must be valid (else the start fails, naming the
file and field) and each starts an :class:`MLDirectionStrategy` named after the
file. Afterwards a reload — on a file change (``watchfiles``), SIGHUP or
``POST /admin/reload`` — re-reads the directory: a changed file is validated whole
and, if valid, swapped into its running strategy atomically (a new model is loaded
off the loop first); an invalid one is rejected with its field paths (logged,
counted, reported) and the old config keeps running; a new file starts a strategy, a
deleted one stops its strategy (``on_remove: close`` first sends a SELL for its
symbols). Reloads run one at a time.

Files are read and parsed off the loop, in daemon threads (a read stuck in a hung
file system can neither stall the loop nor keep a stopping process alive), and a
reload whose reading takes over :data:`READ_TIMEOUT_SECONDS` gives up, so later
reloads still run. A ``*.yaml`` that is no regular file (a FIFO, whose opening would
block; a directory) is skipped with a warning and never opened; a strategy running
under its name keeps running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from engine.component import Component, ComponentContext, ComponentState
from engine.config import ConfigError, StrictModel, shorten
from engine.config_paths import EXISTING_DIRECTORY
from engine.safe_files import NotARegularFileError, in_daemon_thread
from strategies.files import (
    SUFFIX,
    StrategyFileConfig,
    content_hash,
    instance_name,
    parse_strategy_file,
    read_config_dir,
)
from strategies.ml_direction import MLDirectionStrategy
from strategies.reload_report import TRIGGERS, ReloadCollector, ReloadReport
from strategies.watch import config_changes

READ_TIMEOUT_SECONDS = 10.0
ERROR_CHARS = 300  # an exception's text in a rejection is cut to this
_TAKING_CHANGES = (ComponentState.STARTING, ComponentState.RUNNING, ComponentState.DEGRADED)


class InvalidStrategyConfigsError(ValueError):
    """A strategy config is invalid at start: one line per problem, naming file and field."""


class StrategyHostConfig(StrictModel):
    dir: Annotated[str, EXISTING_DIRECTORY] = Field(
        "config/strategies", min_length=1, description="Directory of strategy configs, one each."
    )
    watch: bool = Field(True, description="Reload when a file in `dir` changes.")
    debounce_ms: int = Field(
        50, ge=1, le=5000, description="A change is applied once the files are quiet this long."
    )
    force_polling: bool = Field(
        False, description="Poll the directory instead of inotify (network file systems)."
    )


class StrategyHost(Component):
    """An `ml_direction` strategy per `dir/*.yaml` (+ `on_remove`), hot-swapped on change.

    A file holds `ml_direction` settings plus `on_remove: keep|close`; the instance is
    named after it. Reloaded on a file change, SIGHUP or `POST /admin/reload`.
    """

    Config = StrategyHostConfig

    def __init__(
        self,
        name: str,
        settings: StrategyHostConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.directory = Path(settings.dir)
        self._context = context
        self.instances: dict[str, MLDirectionStrategy] = {}
        self._files: dict[str, Path] = {}
        self.rejected: dict[str, dict[str, Any]] = {}  # files on disk not in force, by name
        self.reloads = dict.fromkeys(TRIGGERS, 0)
        self.failures = dict.fromkeys(TRIGGERS, 0)
        self.last_reload: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._stop_watching = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def on_start(self) -> None:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"strategy config directory {str(self.directory)!r} not found")
        self.register_collector(ReloadCollector(self.reloads, self.failures, self.config_versions))
        if self.settings.watch:
            # Watch before the first read, so no change can slip in between the two: the
            # task's first step sets the inotify watches up before its first await.
            self._watcher = asyncio.create_task(self._watch(), name=f"{self.name}.watch")
            await asyncio.sleep(0)
        report = await self._reload("start")
        if not report.ok:
            problems = [line for r in report.rejected for line in r["errors"]]
            raise InvalidStrategyConfigsError(
                "\n".join([report.error] if report.error else problems)
            )
        if not self.instances:
            self.log.warning("strategy_host.empty", dir=str(self.directory))

    async def on_all_started(self) -> None:
        for strategy in list(self.instances.values()):
            await strategy.on_all_started()

    async def on_stop(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        # Stopping the engine is not removing a strategy: positions stay as they are.
        for strategy in self.instances.values():
            await strategy.stop()

    async def _watch(self) -> None:
        try:
            async for changes in config_changes(
                self.directory,
                quiet_ms=self.settings.debounce_ms,
                stop=self._stop_watching,
                force_polling=self.settings.force_polling,
            ):
                self.log.debug("strategy_host.changed", files=sorted(p for _, p in changes))
                await self._reload("file_watch")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the strategies keep running; SIGHUP and admin still work
            self.degrade(f"file watch stopped: {type(exc).__name__}: {exc}")

    # -- reloading -----------------------------------------------------------------------

    async def reload_configs(self, trigger: str) -> dict[str, Any]:
        """Re-read the directory now (SIGHUP, admin); what was applied and rejected."""
        if self.state not in (ComponentState.RUNNING, ComponentState.DEGRADED):
            report = ReloadReport(trigger, error=f"{self.name} is {self.state}, not running")
            return report.as_dict()
        return (await self._reload(trigger)).as_dict()

    async def _reload(self, trigger: str) -> ReloadReport:
        async with self._lock:
            self.reloads[trigger] += 1
            report = ReloadReport(trigger)
            try:
                async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                    contents = await in_daemon_thread(read_config_dir, self.directory)
            except TimeoutError:  # before OSError, of which it is a subclass
                return self._fail(
                    report,
                    f"reading took over {READ_TIMEOUT_SECONDS:g} s (a hung file system?); "
                    "nothing changed",
                )
            except OSError as exc:
                return self._fail(report, f"cannot list: {exc.strerror or exc}")
            if not self._taking_changes():
                return self._fail(report, f"{self.name} is {self.state}: nothing changed")
            found: dict[str, tuple[Path, bytes | OSError]] = {}
            skipped: set[str] = set()
            for path, data in contents.items():
                if isinstance(data, NotARegularFileError):
                    skipped.add(path.name.removesuffix(SUFFIX))
                    self._skip(report, path, data)
                    continue
                try:
                    found[instance_name(path)] = (path, data)
                except ConfigError as exc:
                    digest = content_hash(data) if isinstance(data, bytes) else None
                    self._reject(report, path.name.removesuffix(SUFFIX), path, digest, exc)
            for name in [n for n in self.instances if n not in found and n not in skipped]:
                await self._remove(name, report)
            for name, (path, data) in found.items():
                if isinstance(data, OSError):
                    problem = ConfigError(str(path), [f"cannot read: {data.strerror or data}"])
                    self._reject(report, name, path, None, problem)
                    continue
                try:
                    await self._load(name, path, data, report)
                except Exception as exc:  # never let one file end the reload of the others
                    problem = ConfigError(str(path), [_exception_text(exc)])
                    self._reject(report, name, path, content_hash(data), problem)
            return self._finish(report)

    async def _load(self, name: str, path: Path, data: bytes, report: ReloadReport) -> None:
        digest = content_hash(data)
        current = self.instances.get(name)
        if current is not None and current.active.content_hash == digest:
            self.rejected.pop(name, None)
            report.unchanged.append(name)
            return
        if report.trigger == "file_watch" and self.rejected.get(name, {}).get("hash") == digest:
            return  # this very content was rejected already; a watch event repeats nothing
        try:
            candidate = await in_daemon_thread(parse_strategy_file, path, data)
        except ConfigError as exc:
            self._reject(report, name, path, digest, exc)
            return
        if not self._taking_changes():
            return
        if current is None:
            strategy = MLDirectionStrategy(
                name, candidate.settings, self._context, config_version=1, config_hash=digest
            )
            try:
                await strategy.start()
            except Exception as exc:
                await strategy.stop()
                self._reject(report, name, path, digest, _start_problem(path, exc))
                return
            if report.trigger != "start":
                await strategy.on_all_started()
            self.instances[name], self._files[name] = strategy, path
            entry = self._entry(name)
            report.started.append(entry)
            self.log.info("strategy_host.started", trigger=report.trigger, **entry)
        else:
            try:
                await current.apply_settings(
                    candidate.settings, version=current.active.version + 1, content_hash=digest
                )
            except Exception as exc:
                self._reject(report, name, path, digest, _start_problem(path, exc))
                return
            entry = self._entry(name)
            report.applied.append(entry)
            self.log.info("strategy_host.applied", trigger=report.trigger, **entry)
        self.rejected.pop(name, None)

    async def _remove(self, name: str, report: ReloadReport) -> None:
        strategy = self.instances.pop(name)
        path = self._files.pop(name)
        settings = strategy.settings
        on_remove = settings.on_remove if isinstance(settings, StrategyFileConfig) else "keep"
        closing = strategy.close_positions() if on_remove == "close" else []
        await strategy.stop()
        self.rejected.pop(name, None)
        entry = {
            "strategy": name,
            "file": str(path),
            "on_remove": on_remove,
            "sell_signals": [s.symbol for s in closing],
        }
        report.stopped.append(entry)
        self.log.info("strategy_host.stopped", trigger=report.trigger, **entry)

    def _reject(
        self, report: ReloadReport, name: str, path: Path, digest: str | None, exc: ConfigError
    ) -> None:
        errors = [f"{exc.source}: {problem}" for problem in exc.problems]
        entry = {"strategy": name, "file": str(path), "hash": digest, "errors": errors}
        report.rejected.append(entry)
        self.rejected[name] = entry
        self.failures[report.trigger] += 1
        in_force = self.instances.get(name)
        self.log.error(
            "strategy_host.rejected",
            trigger=report.trigger,
            strategy=name,
            file=str(path),
            errors=errors,
            kept_version=None if in_force is None else in_force.active.version,
        )

    def _skip(self, report: ReloadReport, path: Path, exc: NotARegularFileError) -> None:
        entry = {"file": str(path), "reason": str(exc)}
        report.skipped.append(entry)
        self.log.warning("strategy_host.skipped", trigger=report.trigger, **entry)

    def _fail(self, report: ReloadReport, error: str) -> ReloadReport:
        report.error = f"{self.directory}: {error}"
        self.failures[report.trigger] += 1
        self.log.error("strategy_host.reload_failed", trigger=report.trigger, error=report.error)
        return self._finish(report)

    def _taking_changes(self) -> bool:
        """False once stopping: a reload that was reading then must not start anything."""
        return self.state in (
            ComponentState.STARTING,
            ComponentState.RUNNING,
            ComponentState.DEGRADED,
        )

    def _finish(self, report: ReloadReport) -> ReloadReport:
        self.last_reload = {
            "trigger": report.trigger,
            "ok": report.ok,
            "applied": [e["strategy"] for e in report.applied],
            "started": [e["strategy"] for e in report.started],
            "stopped": [e["strategy"] for e in report.stopped],
            "rejected": [e["strategy"] for e in report.rejected],
        }
        self.log.info("strategy_host.reloaded", **self.last_reload)
        return report

    # -- reading -------------------------------------------------------------------------

    def _entry(self, name: str) -> dict[str, Any]:
        active = self.instances[name].active
        return {
            "strategy": name,
            "file": str(self._files[name]),
            "config_version": active.version,
            "config_hash": active.content_hash,
            "model_version": active.model.label,
        }

    def model_server(self, server_id: str) -> MLDirectionStrategy | None:
        """The strategy named ``server_id`` (its file's name), if running: the retrain
        supervisor and ``POST /predict`` reach its champion through it."""
        return self.instances.get(server_id)

    def config_versions(self) -> dict[str, int]:
        return {name: s.active.version for name, s in self.instances.items() if s.model is not None}

    def status(self) -> dict[str, Any]:
        """Each strategy's model and config in force, and the files currently rejected."""
        return {
            "dir": str(self.directory),
            "watch": self.settings.watch,
            "strategies": {
                name: {"file": str(self._files[name]), "state": str(s.state), **s.status()}
                for name, s in self.instances.items()
            },
            "rejected": dict(self.rejected),
            "reloads": dict(self.reloads),
            "reload_failures": dict(self.failures),
            "last_reload": self.last_reload,
        }


def _exception_text(exc: Exception) -> str:
    return shorten(f"{type(exc).__name__}: {exc}", ERROR_CHARS)


def _start_problem(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(str(path), [f"cannot start the strategy: {_exception_text(exc)}"])
