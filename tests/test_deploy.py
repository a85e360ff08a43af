"""The job specs in deploy/: they parse, the climml commands they run are valid invocations of
existing configs, and the Slurm script requeues exactly the runs stopped by SIGTERM."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from climml import config, jobs
from climml.cli import _parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _climml_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """The ``climml ...`` commands of a shell script, variables substituted from ``env``."""
    commands = []
    for line in script.splitlines():
        line = line.strip()
        if line.startswith("srun "):
            line = line[len("srun ") :]
        if not line.startswith("climml "):
            continue
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m[1]], line)
        commands.append(shlex.split(expanded)[1:])
    return commands


def _check_invocation(argv: list[str]) -> None:
    args = _parser().parse_args(argv)  # a valid command line (argparse exits otherwise)
    assert Path(args.config).is_file(), args.config
    config.load(args.config, args.overrides)  # an existing, valid config


def test_skypilot_task_is_a_spot_gpu_job_resuming_from_a_bucket():
    task = yaml.safe_load((DEPLOY / "skypilot.yaml").read_text())
    resources = task["resources"]
    assert resources["use_spot"] is True and resources["accelerators"]
    mount = task["file_mounts"]["/runs"]
    assert mount["source"] == "${RUNS}" and mount["mode"] == "MOUNT_CACHED"
    assert re.match(r"(gs|s3|r2)://", task["envs"]["RUNS"])
    env = {**task["envs"]}
    (command,) = _climml_commands(task["run"], env)
    _check_invocation(command)
    assert command[:2] == ["run", task["envs"]["CONFIG"]]
    assert command[command.index("--workdir") + 1].startswith("/runs/")  # in the bucket
    cache = re.search(rf"{jobs.CACHE_ENV}=(\S+)", task["run"])[1]
    assert cache.startswith("/runs/")  # the compilation cache survives the VM too


def test_slurm_script_parses_and_runs_a_valid_climml_command():
    script = (DEPLOY / "slurm.sbatch").read_text()
    subprocess.run(["bash", "-n", str(DEPLOY / "slurm.sbatch")], check=True)
    directives = re.findall(r"^#SBATCH (\S+)", script, flags=re.M)
    assert "--requeue" in directives
    (signal_at,) = [d for d in directives if d.startswith("--signal=")]
    assert re.fullmatch(r"--signal=(B:)?TERM@\d+", signal_at)
    env = {"CONFIG": "configs/quickstart.yaml", "RUNS": "/scratch/runs", "RUN_NAME": "quickstart"}
    (command,) = _climml_commands(script, env)
    _check_invocation(command)
    assert f"-eq {jobs.EXIT_SIGTERM} ]" in script


@pytest.mark.parametrize(
    ("status", "requeued", "exit_code"),
    [(143, True, 0), (0, False, 0), (2, False, 2), (130, False, 130)],
)
def test_slurm_script_requeues_only_a_run_stopped_by_sigterm(tmp_path, status, requeued, exit_code):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # stand-ins: srun records the command and exits as climml would; scontrol records its call
    (bin_dir / "srun").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/srun"\nexit {status}\n')
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/scontrol"\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42",
           "RUNS": str(tmp_path / "runs")}  # fmt: skip
    env.pop(jobs.CACHE_ENV, None)
    proc = subprocess.run(["bash", str(DEPLOY / "slurm.sbatch")], env=env, timeout=60)
    assert proc.returncode == exit_code
    ran = (tmp_path / "srun").read_text().split()
    assert ran == ["climml", "train", "configs/quickstart.yaml", "--workdir",
                   f"{tmp_path}/runs/quickstart"]  # fmt: skip
    assert (tmp_path / "scontrol").exists() == requeued
    if requeued:
        assert (tmp_path / "scontrol").read_text().split() == ["requeue", "42"]


def test_schedule_launches_the_skypilot_task_weekly():
    text = (DEPLOY / "schedule.yml").read_text()
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    (cron,) = [entry["cron"] for entry in triggers["schedule"]]
    minute, hour, day, month, weekday = cron.split()
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24 and (day, month) == ("*", "*")
    assert 0 <= int(weekday) <= 6
    steps = [s.get("run", "") for s in workflow["jobs"]["launch"]["steps"]]
    launch = next(s for s in steps if "sky jobs launch" in s)
    task = launch.split("sky jobs launch", 1)[1].split()[0]
    assert (DEPLOY.parent / task).is_file()
    crontab = re.search(r"#\s+(\S+ \S+ \S+ \S+ \S+)\s+cd ", text)[1]
    assert crontab == cron  # the crontab line in the header runs on the same schedule


def test_readme_documents_every_exit_status_and_file():
    readme = (DEPLOY / "README.md").read_text()
    for status in (jobs.EXIT_OK, jobs.EXIT_ERROR, jobs.EXIT_SIGINT, jobs.EXIT_SIGTERM):
        assert f"| {status} |" in readme
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
