"""The Ray cluster launcher for real, over loopback: `ray up`, `ray submit engine/run.py`, `ray job submit`, `ray down`.

Opt-in (`make test-cluster` = scripts/test-cluster.sh): the script creates the throwaway user and the loopback sshd
that configs/cluster-local.yaml names, sets the TASKDIV_CLUSTER_* variables, runs this file and removes it all
again. Without those variables every test here is skipped.

What is checked, on two nodes reached over ssh like remote machines — the head (ssh on 127.0.0.1, Ray on 127.0.0.3)
and a worker at 127.0.0.2 that shares no file with it (its own mount and pid namespaces):
- `ray up` syncs the repository (file_mounts), installs it into the head's venv (setup_commands) and starts Ray on
  127.0.0.1; `engine` then imports on the head from the mounted copy, with the venv's python;
- a Ray worker's environment is that of `ray start` on its node, not the driver's (where API keys must be set);
- `ray submit … engine/run.py -- --config …` runs the whole pipeline as a driver of that cluster (the dashboard
  lists it as a finished driver job, and no second, embedded Ray was started), leaves the run directory where
  docs/cluster.md says (relative run_dir: the head's home), and `ray rsync-down` fetches tables with the expected
  row counts;
- `ray job submit --working-dir .` through the `ray dashboard` port-forward runs the same config; the dashboard
  refuses requests without the cluster's token;
- nothing the test started listens on an address other than loopback;
- token authentication across nodes: the head makes the cluster's token, the launcher copies it to the worker
  (cluster_synced_files) before Ray starts there, and the worker joins with it; the driver (`ray submit`) and the
  job CLI (with the token fetched by `ray rsync-down`) find it, and the dashboard refuses requests without it;
- `ray down` leaves no Ray process of the cluster's user behind.
Each step's wall time is printed and written to $TASKDIV_CLUSTER_DIR/times.txt (the script prints it).
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("TASKDIV_CLUSTER_TEST") != "1",
        reason="needs the loopback sshd and throwaway user that scripts/test-cluster.sh sets up (make test-cluster)",
    ),
]

REPO = Path(__file__).resolve().parents[1]
# scripts/test-cluster.sh writes a copy naming its own folder (mktemp -d) for the ssh key.
CONFIG = os.environ.get("TASKDIV_CLUSTER_CONFIG", "configs/cluster-local.yaml")
RAY = str(Path(sys.executable).parent / "ray")
USER = os.environ.get("TASKDIV_CLUSTER_USER", "taskdiv-ray")
WORK = Path(os.environ.get("TASKDIV_CLUSTER_DIR", "/tmp/taskdiv-cluster-test"))
DASHBOARD_PORT = 28265     # configs/cluster-local.yaml: --dashboard-port
FORWARD_PORT = 28865       # local end of `ray dashboard`'s ssh forward
GCS_PORT = 26379           # configs/cluster-local.yaml: --port
# configs/cluster-smoke.yaml: 4 prompts, 2 strategies, n = 3, one generator, one judge.
EXPECTED_ROWS = {
    "prompts": 4, "classifications": 4, "checklists": 4,
    "samples": 8, "groups": 8, "components": 8, "metrics": 8,
    "responses": 24, "quality": 24,
}
MAX_JUDGMENTS = 8 * 3      # 3 pairs per group at most
UPLOAD_EXCLUDES = [".git", ".venv", ".venv-vllm", "runs", ".hypothesis", ".pytest_cache", "**/__pycache__"]

LOGS = WORK / "logs"       # each ray command's output; scripts/test-cluster.sh keeps a copy in runs/cluster-test/

TIMES: dict[str, float] = {}


def ray(*args: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True,
        step: str | None = None) -> subprocess.CompletedProcess:
    """Run the ray CLI from the repository root (file_mounts sync "."); time it under `step`."""
    start = time.perf_counter()
    proc = subprocess.run([RAY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if step:
        TIMES[step] = time.perf_counter() - start
        print(f"\n[{step}] {TIMES[step]:.1f} s")
    LOGS.mkdir(parents=True, exist_ok=True)
    name = "-".join(a.replace("/", "_") for a in args[:2] if not a.startswith("-"))
    with open(LOGS / f"{len(list(LOGS.iterdir())):02d}-ray-{name}.log", "w") as f:
        f.write(f"$ ray {' '.join(args)}\n# exit {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"ray {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                    f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


def head_home() -> Path:
    return Path(pwd.getpwnam(USER).pw_dir)


def user_processes() -> list[tuple[int, str]]:
    uid = pwd.getpwnam(USER).pw_uid
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    out.append((int(entry.name), (entry / "comm").read_text().strip()))
            except OSError:
                pass
    return out


def write_times() -> None:
    lines = [f"{step}: {seconds:.1f} s" for step, seconds in TIMES.items()]
    with open(WORK / "times.txt", "a") as f:
        f.write("".join(line + "\n" for line in lines))
    print("\n" + "\n".join(lines))


def read_tables(run_dir: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {p.stem: pq.read_metadata(p).num_rows for p in run_dir.glob("*.parquet")}


def check_run_dir(run_dir: Path) -> None:
    rows = read_tables(run_dir)
    for table, expected in EXPECTED_ROWS.items():
        assert rows.get(table) == expected, f"{table}: {rows.get(table)} rows, expected {expected} ({rows})"
    assert 0 < rows.get("judgments", 0) <= MAX_JUDGMENTS, rows
    report = (run_dir / "report.md").read_text()
    assert "Functionally unique responses" in report
    assert (run_dir / "config.yaml").is_file() and (run_dir / "report.json").is_file()


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"nothing accepts connections on 127.0.0.1:{port} after {timeout:.0f} s")


def dashboard_get(path: str, token: str | None, port: int = DASHBOARD_PORT):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def cluster():
    """`ray up` before the module's tests, `ray down` after them, whatever happens in between."""
    try:
        ray("up", "-y", "--no-config-cache", "--disable-usage-stats", "--log-style", "record", CONFIG,
            step="ray up")
        yield
    finally:
        ray("down", "-y", "--log-style", "record", CONFIG, check=False, step="ray down")
        write_times()
        # `ray down` stops Ray on the head; ssh sessions of the launcher may linger a few seconds.
        deadline = time.monotonic() + 30
        while (left := [p for p in user_processes() if p[1] != "sshd"]) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, f"processes of {USER} still running after ray down: {left}"


@pytest.fixture(scope="module")
def token(cluster, tmp_path_factory) -> Path:
    """The head's Ray token, fetched the way a user would (ray rsync-down), for the dashboard and `ray job`."""
    path = tmp_path_factory.mktemp("auth") / "auth_token"
    ray("rsync-down", CONFIG, "~/.ray/auth_token", str(path))
    assert path.read_text().strip()
    return path


WORKER_IP = "127.0.0.2"     # configs/cluster-local.yaml: worker_ips
HEAD_IP = "127.0.0.3"       # configs/cluster-local.yaml: the head's --node-ip-address
WORKER_HOME = Path(os.environ.get("TASKDIV_WORKER_HOME", WORK / "worker-home"))

# Waits (on the head, as a driver of the cluster) until two nodes are alive, then runs a task pinned to the worker.
NODES_PROBE = """
import json, os, socket, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
deadline = time.time() + 600
while time.time() < deadline and len([n for n in ray.nodes() if n["Alive"]]) < 2:
    time.sleep(3)
alive = [n for n in ray.nodes() if n["Alive"]]
worker = next((n for n in alive if n["NodeManagerAddress"] == "%s"), None)
seen = None
if worker is not None:
    probe = ray.remote(num_cpus=0)(lambda: {"home": os.path.expanduser("~"), "auth": os.environ.get("RAY_AUTH_MODE"),
                                            "token": open(os.path.expanduser("~/.ray/auth_token")).read().strip()})
    pinned = NodeAffinitySchedulingStrategy(worker["NodeID"], soft=False)
    seen = ray.get(probe.options(scheduling_strategy=pinned).remote())
print("NODES", json.dumps({"alive": sorted(n["NodeManagerAddress"] for n in alive), "worker": seen}))
""" % WORKER_IP


def test_a_worker_node_joins_with_the_token_the_head_made(cluster, token, tmp_path):
    probe = tmp_path / "nodes_probe.py"
    probe.write_text(NODES_PROBE)
    proc = ray("submit", CONFIG, str(probe), step="worker node joined (ray submit, node probe)", timeout=900)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("NODES "))
    seen = json.loads(line[len("NODES "):])
    assert seen["alive"] == sorted([HEAD_IP, WORKER_IP]), seen
    head_token = token.read_text().strip()
    # The worker's own file (its home is another folder: nothing is shared with the head but the network) holds the
    # head's token, and a task running there reads it, under token auth.
    assert (WORKER_HOME / ".ray" / "auth_token").read_text().strip() == head_token
    assert seen["worker"]["token"] == head_token and seen["worker"]["auth"] == "token", seen["worker"]


def test_the_head_imports_the_mounted_copy_with_the_venv_python(cluster):
    proc = ray("exec", CONFIG, "python -c 'import engine, sys; print(\"IMPORT\", engine.__file__, sys.executable)'")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("IMPORT "))
    _, module, executable = line.split()
    assert module == f"{head_home()}/taskdiv/engine/__init__.py"
    assert executable == f"{head_home()}/venv/bin/python"


# API keys: an HTTP judge reads its key inside a Ray worker, and a worker's environment is that of `ray start` on its
# node (plus runtime_env), not the driver's: a key exported only in the shell that runs the driver never arrives.
PROBE = """
import json, os, ray
os.environ["TASKDIV_DRIVER_ONLY"] = "exported in the driver"
ray.init()
read = ray.remote(num_cpus=0)(lambda: {k: os.environ.get(k) for k in ("TASKDIV_DRIVER_ONLY", "RAY_AUTH_MODE")})
print("PROBE", json.dumps(ray.get(read.remote())))
"""


def test_workers_see_the_environment_of_ray_start_not_the_drivers(cluster, tmp_path):
    probe = tmp_path / "env_probe.py"
    probe.write_text(PROBE)
    proc = ray("submit", CONFIG, str(probe), step="ray submit (environment probe)")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("PROBE "))
    seen = json.loads(line[len("PROBE "):])
    assert seen["TASKDIV_DRIVER_ONLY"] is None, seen
    assert seen["RAY_AUTH_MODE"] == "token", seen   # from ~/.bashrc, which `ray start` ran under


# A key the driver has and the nodes that run the judge lack: preflight on the driver passed it, and every judge
# request failed on the workers. The run checks each model again on the nodes that may host it, before any call.
KEY_PROBE = """
import os
os.environ["TASKDIV_DRIVER_ONLY_KEY"] = "sk-driver-only-123"
from engine.cli import main
judge = ("[{name: api, backend: http, model: gpt-4o, options: {base_url: 'http://127.0.0.1:9/v1', "
         "api_key_env: TASKDIV_DRIVER_ONLY_KEY}}]")
code = main(["--config", "taskdiv/configs/cluster-smoke.yaml", "--quiet", "--allow-python-backends",
             "--run-dir", "runs/cluster-node-check", "--set", "judges=" + judge])
print("EXIT", code)
"""


def submitted(tmp_path, name: str, script: str, step: str) -> str:
    """A driver script run on the cluster's head by `ray submit`: what it printed, stdout and stderr."""
    path = tmp_path / name
    path.write_text(script)
    proc = ray("submit", CONFIG, str(path), step=step)
    return proc.stdout + proc.stderr


def test_a_key_only_the_driver_has_is_refused_naming_each_node_before_any_call(cluster, tmp_path):
    out = submitted(tmp_path, "key_probe.py", KEY_PROBE, "ray submit (models checked on the nodes)")
    assert "EXIT 2" in out, out[-3000:]
    assert "judges[0].options.api_key_env: the environment variable TASKDIV_DRIVER_ONLY_KEY is not set" in out
    assert f"(on node {WORKER_IP})" in out and "sk-driver-only" not in out, out[-3000:]
    assert not (head_home() / "runs" / "cluster-node-check" / "shards").exists()  # nothing was computed


# An API model is asked its first request (the endpoint probe) from a node that may host it — the workers' network,
# proxy and keys are the ones the run's requests will use — before any call: a model id the endpoint does not serve
# stops the run there, naming the node, not when the judging stage begins after sampling was paid for.
ENDPOINT_PROBE = """
from engine.cli import main
from tests.support.doubles import ScriptedChat
from tests.support.serve import ChatServer
with ChatServer(ScriptedChat(), model_name="served-model") as server:
    judge = "[{name: api, backend: http, model: scripted, options: {base_url: '" + server.base_url + "'}}]"
    code = main(["--config", "taskdiv/configs/cluster-smoke.yaml", "--quiet", "--allow-python-backends",
                 "--run-dir", "runs/cluster-endpoint-probe", "--set", "judges=" + judge])
print("EXIT", code)
"""


def test_an_api_model_is_probed_from_a_node_that_may_run_it_before_any_call(cluster, tmp_path):
    out = submitted(tmp_path, "endpoint_probe.py", ENDPOINT_PROBE, "ray submit (endpoint probe from a node)")
    assert "EXIT 2" in out, out[-3000:]
    assert "judges[0].model: a first request to the endpoint failed" in out and "HTTP 404" in out, out[-3000:]
    assert re.search(r"\(from node 127\.0\.0\.[23]\)", out), out[-3000:]
    assert not (head_home() / "runs" / "cluster-endpoint-probe" / "shards").exists()  # nothing was computed


def test_ray_submit_runs_the_pipeline_on_the_cluster(cluster, token, tmp_path):
    home = head_home()
    # The smoke config's backends are the test doubles (python: backends): it opts in, as a user must.
    proc = ray("submit", CONFIG, "engine/run.py", "--", "--config", "taskdiv/configs/cluster-smoke.yaml", "--quiet",
               "--allow-python-backends",
               step="ray submit (engine/run.py, smoke config)")
    assert "taskdiv run finished" in proc.stdout, proc.stdout[-3000:]

    # Where the run directory is: the config's relative run_dir resolves against the head's home (ray submit runs
    # the copied script there), not against the mounted repository.
    run_dir = home / "runs" / "cluster-smoke"
    assert (run_dir / "report.md").is_file(), f"no report in {run_dir}"
    assert not (home / "taskdiv" / "runs").exists()

    # Fetched the documented way, then checked.
    fetched = tmp_path / "fetched"
    ray("rsync-down", CONFIG, "~/runs/cluster-smoke/", f"{fetched}/", step="ray rsync-down (run directory)")
    check_run_dir(fetched)

    # It ran as a driver of the cluster's Ray, not in an embedded Ray of its own: the cluster lists a finished
    # driver job for it, and the head's Ray temp folder holds the cluster's session only.
    jobs = dashboard_get("/api/jobs/", token.read_text().strip())
    drivers = [j for j in jobs if j.get("type") == "DRIVER" and "cluster-smoke.yaml" in (j.get("entrypoint") or "")]
    assert drivers, f"no driver job for the run among {[(j.get('type'), j.get('entrypoint')) for j in jobs]}"
    assert drivers[-1]["status"] == "SUCCEEDED", drivers[-1]
    sessions = [p for p in (home / "tmp" / "ray").glob("session_*") if p.name != "session_latest"]
    assert len(sessions) == 1, f"more than one Ray session on the head: {sessions}"


def test_ray_job_submit_through_the_dashboard_forward(cluster, token):
    home = head_home()
    run_dir = home / "runs" / "job-smoke"
    forward = subprocess.Popen(
        [RAY, "dashboard", "-p", str(FORWARD_PORT), "--remote-port", str(DASHBOARD_PORT), CONFIG],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(FORWARD_PORT)
        address = f"http://127.0.0.1:{FORWARD_PORT}"

        # Token auth is on: without the token the dashboard refuses.
        with pytest.raises(urllib.error.HTTPError) as refused:
            dashboard_get("/api/jobs/", None, port=FORWARD_PORT)
        assert refused.value.code == 401
        no_token = ray("job", "list", "--address", address, check=False)
        assert no_token.returncode != 0 and "authentication token" in no_token.stderr

        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        submission = f"taskdiv-smoke-{int(time.time())}"
        proc = ray("job", "submit", "--address", address, "--submission-id", submission, "--working-dir", ".",
                   "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES}), "--",
                   "python", "engine/run.py", "--config", "configs/cluster-smoke.yaml", "--run-dir", str(run_dir),
                   "--quiet", "--allow-python-backends", env=auth, step="ray job submit (engine/run.py, smoke config)")
        assert "taskdiv run finished" in proc.stdout, proc.stdout[-3000:]
        status = ray("job", "status", "--address", address, submission, env=auth)
        assert "succeeded" in status.stdout.lower(), status.stdout

        # The listeners with the forward up (the next test checks them again without it).
        check_loopback_only(expect_ports={FORWARD_PORT})
    finally:
        end_forward(forward)
    # The run directory is on the head (the same filesystem here, so read in place).
    check_run_dir(run_dir)


def control_dir() -> str:
    """The launcher's ssh ControlPath folder for this cluster (ray/autoscaler/_private/command_runner.py)."""
    import yaml

    cluster_name = yaml.safe_load((REPO / CONFIG).read_text())["cluster_name"]
    digest = lambda s: hashlib.sha256(s.encode()).hexdigest()[:10]  # noqa: E731
    return f"/tmp/ray_ssh_{digest(getpass.getuser())}/{digest(cluster_name)}"


def launcher_pids() -> set[int]:
    """The launcher's processes on this side: ssh, rsync and nc name the test's key; a backgrounded ssh master
    (ControlPersist) renames itself after its control socket."""
    import psutil

    marks = (str(WORK / "id_ed25519"), control_dir())
    pids = set()
    for proc in psutil.process_iter(["cmdline"]):
        if any(mark in arg for arg in proc.info["cmdline"] or () for mark in marks):
            pids.add(proc.pid)
    return pids


def end_forward(forward: subprocess.Popen) -> None:
    """Stop `ray dashboard` and its ssh; with ControlMaster the forward lives in the launcher's ssh master, which
    outlives the `ray dashboard` that asked for it: end whichever of our ssh processes still listens on the port."""
    import psutil

    os.killpg(forward.pid, signal.SIGTERM)   # its own session, started above
    try:
        forward.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(forward.pid, signal.SIGKILL)
        forward.wait()
    ours = launcher_pids()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == FORWARD_PORT and conn.pid in ours:
            os.kill(conn.pid, signal.SIGTERM)


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 and ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1, how Ray's gRPC servers bind)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def private_loopback_namespace() -> bool:
    """Whether this process runs in a network namespace of its own that has no interface but loopback (what
    scripts/test-cluster.sh gives the test)."""
    name = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True).stdout
    if not name.strip():  # the machine's own namespace
        return False
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
    return [line.split(":")[1].strip() for line in links] == ["lo"]


def check_loopback_only(expect_ports: set[int] = frozenset()) -> None:
    """Every socket that a process the test started listens on (TCP) or is bound to (UDP) is reachable from loopback
    only: the cluster user's processes (all of Ray on both nodes), our sshd, and the launcher's ssh/nc on this side.
    A multi-node Ray binds its node address, or every interface; in the test's network namespace, which has no
    interface but loopback, every address is a loopback one — that namespace is checked, and then each socket."""
    import psutil

    private = private_loopback_namespace()
    assert private, "the cluster test must run in scripts/test-cluster.sh's loopback-only network namespace"

    ours = {pid for pid, _ in user_processes()} | launcher_pids() | {int(os.environ["TASKDIV_SSHD_PID"])}
    bound = []
    for conn in psutil.net_connections(kind="inet"):
        listening = conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM
        if conn.pid in ours and listening and conn.laddr:
            bound.append((conn.laddr.ip, conn.laddr.port, conn.pid))
    ports = {port for _, port, _ in bound}
    expected = {GCS_PORT, DASHBOARD_PORT, int(os.environ["TASKDIV_SSH_PORT"]), *expect_ports}
    assert expected <= ports, f"expected listeners missing: {sorted(expected - ports)} (have {sorted(ports)})"
    # In the loopback-only namespace a wildcard bind reaches loopback only; any other specific address would not.
    wide = [b for b in bound if not (is_loopback(b[0]) or b[0] in ("0.0.0.0", "::"))]
    print(f"\n[listeners] {len(bound)} sockets of the test, on {len(ports)} ports, in a loopback-only network "
          f"namespace; {sum(b[0] in ('0.0.0.0', '::') for b in bound)} wildcard binds; beyond loopback: {wide}")
    assert not wide, f"listening on a non-loopback address (ip, port, pid): {wide}"


def test_everything_listens_on_loopback_only(cluster):
    ss = subprocess.run(["ss", "-tulnpH"], capture_output=True, text=True).stdout
    print("\n[ss -tulnp]\n" + ss)
    check_loopback_only()
