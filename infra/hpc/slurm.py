"""SLURM clusters through dask-jobqueue: a frozen config and the cluster it describes.

The Dask scheduler runs in the process that makes the cluster (the flow's driver: a login node, or a
small driver job that may itself submit jobs); every group of Dask workers is one SLURM batch job
submitted with ``sbatch``. dask-jobqueue is optional (``pip install 'eowatch[hpc]'``) and is imported only
when a cluster is made, so this module imports without it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dask.utils import format_bytes, parse_bytes

from eowatch.errors import InputError, ServiceError
from eowatch.infra.hpc._fields import check_keys, check_types

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster

_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MIN_WORKER_MEMORY = 256 * 2**20


@dataclass(frozen=True)
class SlurmConfig:
    """Dask workers as SLURM batch jobs: ``jobs`` jobs of ``processes`` worker processes each."""

    queue: str | None = None
    """Partition (``#SBATCH -p``); None submits to the site's default partition."""
    account: str | None = None
    """Account charged (``#SBATCH -A``); None uses the user's default account."""
    jobs: int = 1
    """SLURM jobs submitted when the cluster starts."""
    cores: int = 8
    """CPU cores per job (``#SBATCH --cpus-per-task``), split evenly among the job's worker processes."""
    processes: int = 4
    """Dask worker processes per job; each runs ``cores / processes`` threads."""
    memory: str = "16GiB"
    """Memory per job (``#SBATCH --mem``); each worker's Dask memory limit is ``memory / processes``."""
    walltime: str = "04:00:00"
    """Job time limit, ``[D-]HH:MM[:SS]`` (``#SBATCH -t``)."""
    job_extra_directives: tuple[str, ...] = ()
    """More ``#SBATCH`` options, each one option, e.g. ``("--qos=normal", "--constraint=avx512")``."""
    job_script_prologue: tuple[str, ...] = ()
    """Shell lines run before the workers start, e.g. ``("module load python/3.11",
    "source $HOME/eowatch/.venv/bin/activate")``."""
    interface: str | None = None
    """Network interface the scheduler listens on and workers use (e.g. ``ib0``); None: the default."""
    local_directory: str | None = None
    """Node-local scratch for worker spill files (e.g. ``$TMPDIR``); None: the job's working directory."""
    log_directory: str | None = None
    """Folder for the jobs' stdout/stderr files; None leaves SLURM's default (the submit directory)."""
    python: str | None = None
    """Python interpreter on the compute nodes; None uses the driver's ``sys.executable``."""
    job_name: str = "eowatch-dask"
    """Job name (``#SBATCH -J``)."""

    def __post_init__(self) -> None:
        check_types(self, "slurm")
        for name in ("jobs", "cores", "processes"):
            if getattr(self, name) < 1:
                raise InputError(f"slurm.{name} must be >= 1, got {getattr(self, name)}")
        if self.cores % self.processes:
            raise InputError(
                f"slurm.cores ({self.cores}) must be a multiple of slurm.processes ({self.processes}): "
                "every worker process gets the same number of threads"
            )
        if self.worker_memory_bytes() < _MIN_WORKER_MEMORY:
            raise InputError(
                f"slurm.memory {self.memory!r} leaves {format_bytes(self.worker_memory_bytes())} per worker "
                f"process; give each of the {self.processes} processes at least 256 MiB"
            )
        if not _WALLTIME.match(self.walltime):
            raise InputError(f"slurm.walltime must look like HH:MM:SS or D-HH:MM:SS, got {self.walltime!r}")
        if not _JOB_NAME.match(self.job_name):
            raise InputError(
                f"slurm.job_name may hold letters, digits, '_', '.', '-' only: {self.job_name!r}"
            )
        for option in self.job_extra_directives:
            if not option.startswith("-") or "\n" in option:
                raise InputError(
                    f"slurm.job_extra_directives entries are single sbatch options such as '--qos=normal', "
                    f"got {option!r}"
                )
        for line in self.job_script_prologue:
            if "\n" in line:
                raise InputError(f"slurm.job_script_prologue entries are single shell lines, got {line!r}")

    def worker_memory_bytes(self) -> int:
        """Dask memory limit of one worker process in bytes (``memory / processes``)."""
        try:
            total = parse_bytes(self.memory)
        except ValueError:
            raise InputError(f"slurm.memory must be a size such as '16GiB', got {self.memory!r}") from None
        return int(total // self.processes)

    def threads_per_worker(self) -> int:
        """Threads of one worker process."""
        return self.cores // self.processes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); inverse of :meth:`from_dict`."""
        out = asdict(self)
        out["job_extra_directives"] = list(self.job_extra_directives)
        out["job_script_prologue"] = list(self.job_script_prologue)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlurmConfig:
        """Build from a mapping (YAML, environment, :meth:`to_dict`); unknown keys are an error."""
        check_keys(cls, data, "slurm")
        fixed = dict(data)
        for key in ("job_extra_directives", "job_script_prologue"):
            if key in fixed:
                fixed[key] = _as_tuple(fixed[key], f"slurm.{key}")
        walltime = fixed.get("walltime")
        if isinstance(walltime, int) and not isinstance(walltime, bool):
            # YAML 1.1 reads an unquoted 04:00:00 as the sexagesimal number 14400: turn it back.
            fixed["walltime"] = f"{walltime // 3600:02d}:{walltime % 3600 // 60:02d}:{walltime % 60:02d}"
        return cls(**fixed)


def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise InputError(f"{where} must be a list of strings, got {value!r}")


def slurm_cluster_kwargs(config: SlurmConfig, *, dashboard: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for ``config`` (no I/O, no import of it)."""
    kwargs: dict[str, Any] = {
        "queue": config.queue,
        "account": config.account,
        "cores": config.cores,
        "processes": config.processes,
        "memory": config.memory,
        "walltime": config.walltime,
        "job_name": config.job_name,
        "job_extra_directives": list(config.job_extra_directives),
        "job_script_prologue": list(config.job_script_prologue),
        "scheduler_options": {"dashboard_address": ":8787" if dashboard else None},
    }
    optional = {
        "interface": config.interface,
        "local_directory": config.local_directory,
        "log_directory": config.log_directory,
        "python": config.python,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def make_slurm_cluster(config: SlurmConfig, *, dashboard: bool = True, submit: bool = True) -> SLURMCluster:
    """Start the scheduler here and, with ``submit``, ``config.jobs`` worker jobs through ``sbatch``.

    Args:
        config: The SLURM settings.
        dashboard: Serve the scheduler's dashboard on port 8787 (a free one when taken).
        submit: Submit the worker jobs; False only builds the cluster (e.g. to render its job script).

    Raises:
        InputError: dask-jobqueue is not installed.
        ServiceError: ``submit`` and no ``sbatch`` on PATH (not a SLURM login or compute node).
    """
    if submit and shutil.which("sbatch") is None:
        raise ServiceError(
            "kind='slurm' submits worker jobs with sbatch, which is not on PATH: run on a SLURM login "
            "or compute node"
        )
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError(
            "kind='slurm' needs the optional package dask-jobqueue: pip install 'eowatch[hpc]'"
        ) from None
    cluster = SLURMCluster(**slurm_cluster_kwargs(config, dashboard=dashboard))
    if submit:
        cluster.scale(jobs=config.jobs)
    return cluster


def slurm_job_script(config: SlurmConfig) -> str:
    """The batch script every worker job runs, as ``sbatch`` would receive it (no job is submitted).

    Builds the cluster (its scheduler starts on this machine for the time of the call) and closes it.
    """
    cluster = make_slurm_cluster(config, dashboard=False, submit=False)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
