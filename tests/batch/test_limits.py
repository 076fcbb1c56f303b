"""The limits a scoring child runs under, applied by the child itself (``python -m evaluator.batch.limits``).

Real processes: the limits read back from inside the child, the child killed with its parent, a child whose
parent is already gone refusing to run, and no Python run between fork and exec anywhere in edl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from evaluator.batch.limits import PARENT_GONE_EXIT, ChildLimits

ROOT = Path(__file__).parents[2]


def _module(folder: Path, name: str, body: str) -> dict[str, str]:
    """A module ``name`` in ``folder``, and the environment that finds it and edl."""
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return os.environ | {"PYTHONPATH": f"{folder}:{ROOT}"}


def test_the_child_runs_its_module_under_the_limits_with_its_arguments(tmp_path):
    env = _module(tmp_path, "report_limits", """
        import json, resource, sys
        print(json.dumps({"cpu": resource.getrlimit(resource.RLIMIT_CPU), "as": resource.getrlimit(resource.RLIMIT_AS),
                          "argv": sys.argv[1:], "name": __name__}))
        sys.exit(7)
    """)
    limits = ChildLimits(cpu_seconds=77, address_space_bytes=3 << 30)
    done = subprocess.run(limits.command("report_limits", "a b", "--c"), capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 7, done.stderr  # the module's own exit code comes back
    seen = json.loads(done.stdout)
    assert seen == {"cpu": [77, 87], "as": [3 << 30, 3 << 30], "argv": ["a b", "--c"], "name": "__main__"}


def test_no_limit_asked_leaves_the_child_unlimited(tmp_path):
    env = _module(tmp_path, "report_as", """
        import resource
        print(resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY)
    """)
    done = subprocess.run(ChildLimits(None, None).command("report_as"), capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.stdout.strip() == "True", done.stderr


def test_the_child_dies_with_its_parent_even_by_kill_9(tmp_path):
    env = _module(tmp_path, "sleeper", """
        import os, time
        print(os.getpid(), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys
        from evaluator.batch.limits import ChildLimits
        child = subprocess.Popen(ChildLimits(None, None).command("sleeper"), stdout=subprocess.PIPE, text=True)
        print(child.stdout.readline().strip(), flush=True)
        import time; time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, env=env)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the child outlived its parent"


def test_a_child_whose_parent_is_already_gone_runs_nothing(tmp_path):
    env = _module(tmp_path, "marker", f"""
        open({str(tmp_path / "ran")!r}, "w").close()
    """)
    not_its_parent = os.getppid()  # the launcher's parent is this test process, not the test's parent
    launch = json.dumps({"limits": {"cpu_seconds": None, "address_space_bytes": None}, "parent_pid": not_its_parent})
    done = subprocess.run([sys.executable, "-m", "evaluator.batch.limits", launch, "marker"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == PARENT_GONE_EXIT, done.stderr
    assert not (tmp_path / "ran").exists()


def test_no_python_runs_between_fork_and_exec_in_edl():
    """``preexec_fn`` runs Python in the forked child: a Ctrl-C to the batch's group there printed a traceback
    (CI, test_interrupts), and it is unsafe beside threads. The limits go through ``ChildLimits.command``."""
    users = [str(path.relative_to(ROOT)) for path in (ROOT / "evaluator").rglob("*.py")
             if "preexec_fn=" in path.read_text()]
    assert users == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_stop_after_the_child_exited_keeps_its_run():
    """The child finished (its run is whole) as the stop came: its exit is taken, not turned into a stop."""
    import threading

    from evaluator.batch.local import _wait

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write('done')"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    while child.poll() is None:
        time.sleep(0.01)
    stop = threading.Event()
    stop.set()
    assert _wait(child, 10.0, stop) == "done" and child.returncode == 0
