#!/usr/bin/env bash
# Opt-in cluster test (`make test-cluster`): the Ray cluster launcher for real, on this machine, over loopback.
#
#   scripts/test-cluster.sh [pytest arguments]          # as root, from anywhere; 4.5–7.5 minutes on 2 busy cores
#
# It starts, and on every exit (trap: success, failure, Ctrl-C) stops and removes again:
#   - a throwaway user, taskdiv-ray (home /home/taskdiv-ray), allowed in with a key generated for this run only;
#   - its own sshd: `sshd -f` on a config in /tmp/taskdiv-cluster-test, 127.0.0.1 only, a free port, its own host
#     key, that user only, public keys only;
#   - the Ray cluster of configs/cluster-local.yaml, which tests/test_cluster.py starts with `ray up` and stops with
#     `ray down` (this script runs `ray down` again only if Ray is still running on exit).
# Then it ends what is left of that user's processes by pid, deletes the user with its home, and removes the temp
# folder, the user's leftovers in /tmp and /dev/shm and the launcher's ssh control sockets for this cluster.
# It never touches the system's sshd configuration, root's ~/.ssh, or any process it did not start.
#
# Why a user of its own rather than root over ssh: `ray stop`, which `ray up` and `ray down` run on the head, ends
# every Ray process on the machine that its user may signal; as root it would end the Ray instances of everything
# else running here. As taskdiv-ray it can only end its own.
#
# Installs openssh-server, rsync, netcat-openbsd (and python3.11-venv) with apt-get if they are missing (18 s here)
# and leaves them installed; the packaged sshd is not started (policy-rc.d).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${TASKDIV_PYTHON:-$REPO/.venv/bin/python}   # the project venv (not $PYTHON: make passes its own)
WORK=/tmp/taskdiv-cluster-test           # fixed: configs/cluster-local.yaml names the ssh key in it
CLUSTER_USER=taskdiv-ray                 # configs/cluster-local.yaml: auth.ssh_user
CLUSTER_NAME=taskdiv-loopback            # configs/cluster-local.yaml: cluster_name
CONFIG=configs/cluster-local.yaml
KEEP=$REPO/runs/cluster-test             # logs and times of the last run (runs/ is not tracked)
USER_TAG="taskdiv cluster test (scripts/test-cluster.sh)"
# The cluster's fixed ports (configs/cluster-local.yaml) and the dashboard forward's (tests/test_cluster.py).
RAY_PORTS="26379 28001 28076 28077 28265 28266 28267 28268 28269 28865"

# The launcher's ssh ControlPath folder for this cluster (ray/autoscaler/_private/command_runner.py).
sha10() { printf %s "$1" | sha256sum | cut -c1-10; }
CONTROL_DIR=/tmp/ray_ssh_$(sha10 "${LOGNAME:-${USER:-${LNAME:-${USERNAME:-$(id -un)}}}}")/$(sha10 "$CLUSTER_NAME")

log() { echo "[test-cluster] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

ours() {  # the user exists and was created by this script
    [ "$(getent passwd "$CLUSTER_USER" | cut -d: -f5)" = "$USER_TAG" ]
}

user_pids() { ps -o pid= -u "$CLUSTER_USER" 2>/dev/null | tr -d ' ' || true; }

sshd_pid() {  # the pid of our sshd, only if that process really is sshd on our config
    local pid
    pid=$(cat "$WORK/sshd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-f $WORK/sshd_config" || return 1
    echo "$pid"
}

teardown() {
    local rc=$? start pid pids left
    start=$(now)
    set +e
    trap - EXIT INT TERM
    log "teardown"
    # The ray CLI's environment, also when cleaning up after an earlier run.
    export TASKDIV_SSH_PORT=${TASKDIV_SSH_PORT:-$(awk '/^Port /{print $2}' "$WORK/sshd_config" 2>/dev/null)}
    export RAY_TMPDIR="$WORK/local-tmp" TMPDIR="$WORK/local-tmp"
    # 1. The cluster, if the test did not get to `ray down` (needs our sshd, so before it stops).
    if ours && sshd_pid > /dev/null \
            && ps -o comm= -u "$CLUSTER_USER" 2>/dev/null | grep -q -E '^(raylet|gcs_server)$'; then
        log "Ray still runs on the head: ray down"
        mkdir -p "$WORK/local-tmp"
        (cd "$REPO" && timeout 180 "$(dirname "$PY")/ray" down -y --log-style record "$CONFIG") \
            > "$WORK/teardown-ray-down.log" 2>&1 \
            || log "ray down failed (see below); ending the user's processes by pid instead"
    fi
    # 2. Our sshd, by pid.
    if pid=$(sshd_pid); then
        kill "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null
    fi
    # 3. The launcher's ssh clients (and their nc) if a killed run left them: they are the only users of our key,
    #    and a backgrounded ssh master (ControlPersist) is named after this cluster's control socket folder.
    for pid in $(grep -l -s -F -e "$WORK/id_ed25519" -e "$CONTROL_DIR" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        case "$(cat "/proc/$pid/comm" 2>/dev/null)" in ssh|nc|rsync) kill "$pid" 2>/dev/null ;; esac
    done
    # 4. Whatever the throwaway user still runs (all of it started by this test), by pid, then the user.
    if ours; then
        pids=$(user_pids)
        if [ -n "$pids" ]; then
            log "ending the test user's leftover processes: $(echo $pids)"
            kill $pids 2>/dev/null
            for _ in $(seq 20); do [ -z "$(user_pids)" ] && break; sleep 0.5; done
            pids=$(user_pids); [ -n "$pids" ] && kill -9 $pids 2>/dev/null && sleep 1
        fi
        find /tmp /dev/shm /var/tmp -xdev -maxdepth 1 -user "$CLUSTER_USER" -exec rm -rf {} + 2>/dev/null
        userdel -r "$CLUSTER_USER" 2> "$WORK/userdel.log" || { log "userdel failed:"; cat "$WORK/userdel.log" >&2; }
    elif getent passwd "$CLUSTER_USER" > /dev/null; then
        log "a user named $CLUSTER_USER exists that this script did not create: left alone"
    fi
    # 5. The launcher's ssh control sockets for this cluster; their parent only if empty (other clusters' live there).
    rm -rf "$CONTROL_DIR"
    rmdir "$(dirname "$CONTROL_DIR")" 2>/dev/null
    # 6. What this script created outside its folder, then its folder.
    [ -f "$WORK/created-run-sshd" ] && rmdir /run/sshd 2>/dev/null
    [ -f "$WORK/created-policy-rc.d" ] && rm -f /usr/sbin/policy-rc.d
    if [ -d "$WORK" ]; then
        [ -s "$WORK/times.txt" ] && { log "measured:"; cat "$WORK/times.txt" >&2; }
        [ -s "$WORK/teardown-ray-down.log" ] && tail -20 "$WORK/teardown-ray-down.log" >&2
        # Keep the logs (each ray command's output, sshd's, apt's) and the times; not the keys.
        rm -rf "$KEEP" && mkdir -p "$KEEP" \
            && cp -r "$WORK"/logs "$WORK"/*.log "$WORK"/times.txt "$KEEP"/ 2>/dev/null
        [ -d "$KEEP" ] && log "logs and times kept in $KEEP"
        rm -rf "$WORK"
    fi
    left=""
    getent passwd "$CLUSTER_USER" > /dev/null && ours && left="$left user"
    [ -n "$(user_pids)" ] && ours && left="$left processes"
    [ -e "$WORK" ] && left="$left $WORK"
    if [ -n "$left" ]; then
        log "teardown left:$left"
        [ "$rc" -eq 0 ] && rc=1
    fi
    log "teardown done in $(since "$start") s"
    exit "$rc"
}

[ "$(id -u)" -eq 0 ] || { log "run as root: it creates a user and starts an sshd (all removed at the end)"; exit 2; }
[ -x "$PY" ] || { log "no $PY: run make install first"; exit 2; }
if getent passwd "$CLUSTER_USER" > /dev/null && ! ours; then
    log "a user named $CLUSTER_USER exists that this script did not create; not touching it"; exit 2
fi

# A previous run that could not clean up (killed with -9, machine rebooted) leaves its folder or user: clean first.
if [ -e "$WORK" ] || ours; then
    log "leftovers of an earlier run: cleaning them first"
    ( teardown ) || true
fi
mkdir -p "$WORK/local-tmp"
chmod 700 "$WORK"
trap teardown EXIT
trap 'exit 130' INT TERM

# Packages (apt-get waits for the dpkg lock other jobs may hold).
need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v rsync > /dev/null || need="$need rsync"
command -v nc > /dev/null || need="$need netcat-openbsd"
/usr/bin/python3.11 -c 'import ensurepip, venv' 2> /dev/null || need="$need python3.11-venv"
if [ -n "$need" ]; then
    start=$(now)
    log "installing with apt-get:$need"
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # never start the packaged sshd on 0.0.0.0:22
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        touch "$WORK/created-policy-rc.d"
    fi
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $need > "$WORK/apt.log" 2>&1 \
        || { apt-get -o DPkg::Lock::Timeout=600 update -qq && \
             apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $need; } >> "$WORK/apt.log" 2>&1 \
        || { tail -20 "$WORK/apt.log" >&2; log "apt-get failed"; exit 1; }
    if [ -f "$WORK/created-policy-rc.d" ]; then rm -f /usr/sbin/policy-rc.d "$WORK/created-policy-rc.d"; fi
    echo "apt-get install$need: $(since "$start") s" >> "$WORK/times.txt"
fi

start=$(now)
# The remote python (Debian's /usr/bin/python3.11) must match the minor version of the reused dependencies.
host_sp=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
minor='import sys; print(sys.version_info[:2])'
[ "$(/usr/bin/python3.11 -c "$minor")" = "$("$PY" -c "$minor")" ] \
    || { log "/usr/bin/python3.11 and $PY differ in their minor version"; exit 2; }

# Ports: the cluster's are fixed; fail clearly if another program holds one.
busy=$("$PY" - $RAY_PORTS <<'EOF'
import socket, sys
for port in sys.argv[1:]:
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", int(port))) == 0:
            print(port)
EOF
)
[ -z "$busy" ] || { log "ports in use on 127.0.0.1: $(echo $busy) (configs/cluster-local.yaml needs them)"; exit 2; }

# The throwaway user. Password '*' (no password works) rather than '!' (locked): sshd without PAM refuses locked
# accounts even for public keys.
useradd --create-home --shell /bin/bash --comment "$USER_TAG" "$CLUSTER_USER"
usermod -p '*' "$CLUSTER_USER"
HEAD_HOME=$(getent passwd "$CLUSTER_USER" | cut -d: -f6)
su -s /bin/sh "$CLUSTER_USER" -c "test -r '$host_sp/ray/__init__.py'" \
    || { log "$CLUSTER_USER cannot read $host_sp (the dependencies the cluster reuses)"; exit 2; }
echo "$host_sp" > "$HEAD_HOME/.host-site-packages"

# Keys: a client key for the launcher, a host key for our sshd; the user accepts the client key from 127.0.0.1 only.
ssh-keygen -q -t ed25519 -N '' -C "taskdiv-cluster-test" -f "$WORK/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "taskdiv-cluster-test host" -f "$WORK/ssh_host_ed25519_key"
install -d -m 700 -o "$CLUSTER_USER" -g "$CLUSTER_USER" "$HEAD_HOME/.ssh"
echo "from=\"127.0.0.1\",no-agent-forwarding,no-X11-forwarding $(cat "$WORK/id_ed25519.pub")" \
    > "$HEAD_HOME/.ssh/authorized_keys"
chown -R "$CLUSTER_USER:$CLUSTER_USER" "$HEAD_HOME/.ssh" "$HEAD_HOME/.host-site-packages"
chmod 600 "$HEAD_HOME/.ssh/authorized_keys"

# Our sshd.
SSH_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $WORK/ssh_host_ed25519_key
PidFile none
AllowUsers $CLUSTER_USER
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowAgentForwarding no
AllowTcpForwarding local
GatewayPorts no
PermitTunnel no
X11Forwarding no
PrintMotd no
MaxStartups 30:30:100
EOF
if [ ! -d /run/sshd ]; then install -d -m 755 /run/sshd; touch "$WORK/created-run-sshd"; fi
/usr/sbin/sshd -t -f "$WORK/sshd_config"
/usr/sbin/sshd -D -f "$WORK/sshd_config" -E "$WORK/sshd.log" &
echo $! > "$WORK/sshd.pid"
ssh_ok=""
for _ in $(seq 40); do
    if ssh -q -i "$WORK/id_ed25519" -p "$SSH_PORT" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
           -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 "$CLUSTER_USER@127.0.0.1" true 2> /dev/null; then
        ssh_ok=1; break
    fi
    sleep 0.25
done
[ -n "$ssh_ok" ] || { log "cannot ssh to $CLUSTER_USER@127.0.0.1:$SSH_PORT"; tail -20 "$WORK/sshd.log" >&2; exit 1; }
echo "user, keys and sshd on 127.0.0.1:$SSH_PORT: $(since "$start") s" >> "$WORK/times.txt"
log "sshd (pid $(cat "$WORK/sshd.pid")) on 127.0.0.1:$SSH_PORT for $CLUSTER_USER"

# The test. RAY_TMPDIR/TMPDIR keep the ray CLI's local state (cluster-$CLUSTER_NAME.state, its config cache) and
# pytest's temp files in our folder.
unset RAY_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH
export TASKDIV_CLUSTER_TEST=1 TASKDIV_SSH_PORT="$SSH_PORT" TASKDIV_CLUSTER_USER="$CLUSTER_USER"
export TASKDIV_CLUSTER_DIR="$WORK" TASKDIV_SSHD_PID="$(cat "$WORK/sshd.pid")"
export RAY_TMPDIR="$WORK/local-tmp" TMPDIR="$WORK/local-tmp"
cd "$REPO"
set +e
"$PY" -m pytest -m cluster tests/test_cluster.py -v -s -p no:cacheprovider "$@"
rc=$?
set -e
exit "$rc"
