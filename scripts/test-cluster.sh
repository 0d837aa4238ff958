#!/usr/bin/env bash
# Opt-in cluster test (`make test-cluster`): the Ray cluster launcher for real, on this machine, over loopback.
#
#   scripts/test-cluster.sh [pytest arguments]          # as root, from anywhere; 4.5–7.5 minutes on 2 busy cores
#
# It starts, and on every exit (trap: success, failure, Ctrl-C) stops and removes again:
#   - a network namespace of its own, taskdiv-cluster, holding nothing but a loopback interface: the sshds, both
#     Ray nodes, the launcher and the tests all run in it, so whatever Ray binds (a multi-node Ray listens on its
#     node address, or on every interface) is unreachable from anywhere but this namespace;
#   - a throwaway user, taskdiv-ray (home /home/taskdiv-ray), allowed in with a key generated for this run only;
#   - its own sshd for the head node: `sshd -f` on a config in its own `mktemp -d` folder (/tmp/taskdiv-cluster.*), 127.0.0.1:28022 only, its
#     own host key, that user only, public keys only;
#   - a second sshd for the worker node, on 127.0.0.2:22, inside mount and pid namespaces of its own (unshare):
#     there the user's home is another folder and /dev/shm another tmpfs, so the worker shares no file with the head
#     (its Ray token must arrive the way the launcher copies it) and cannot see the head's processes;
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
WORK=                                    # this run's folder: mktemp -d (0700, a fresh name made atomically)
WORK_PREFIX=/tmp/taskdiv-cluster.        # each run's folder starts so; earlier runs' are found by it
CLUSTER_USER=taskdiv-ray                 # configs/cluster-local.yaml: auth.ssh_user
CLUSTER_NAME=taskdiv-loopback            # configs/cluster-local.yaml: cluster_name
CONFIG=                                  # $WORK/cluster-local.yaml: configs/cluster-local.yaml naming $WORK
KEEP=$REPO/runs/cluster-test             # logs and times of the last run (runs/ is not tracked)
USER_TAG="taskdiv cluster test (scripts/test-cluster.sh)"
# The cluster's fixed ports (configs/cluster-local.yaml) and the dashboard forward's (tests/test_cluster.py).
RAY_PORTS="26379 28001 28022 28076 28077 28265 28266 28267 28268 28269 28865 29076 29077 29266 29267 29268 29269"
SSH_PORT=28022                           # configs/cluster-local.yaml: ssh_proxy_command (both nodes)
WORKER_IP=127.0.0.2                      # configs/cluster-local.yaml: worker_ips
NETNS=taskdiv-cluster                    # the test's network namespace (loopback only)
NSX="ip netns exec $NETNS"
# The head's autoscaler starts the worker over plain ssh, port 22: the launcher keeps ssh_proxy_command for its own
# connections to the head and does not hand it to the head (measured: the bootstrap config's auth has none).
WORKER_SSH_PORT=22

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

worker_pid() {  # the pid of the worker node's unshare, only if that process really is it
    local pid
    pid=$(cat "$WORK/worker.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$WORK/worker-node.sh" || return 1
    echo "$pid"
}

teardown() {
    local rc=$? start pid pids left
    start=$(now)
    set +e
    trap - EXIT INT TERM
    log "teardown"
    # The ray CLI's environment, also when cleaning up after an earlier run.
    export RAY_TMPDIR="$WORK/local-tmp" TMPDIR="$WORK/local-tmp"
    # 1. The cluster, if the test did not get to `ray down` (needs our sshd, so before it stops).
    if ours && sshd_pid > /dev/null \
            && ps -o comm= -u "$CLUSTER_USER" 2>/dev/null | grep -q -E '^(raylet|gcs_server)$'; then
        log "Ray still runs on the head: ray down"
        mkdir -p "$WORK/local-tmp"
        (cd "$REPO" && timeout 180 $NSX "$(dirname "$PY")/ray" down -y --log-style record "$CONFIG") \
            > "$WORK/teardown-ray-down.log" 2>&1 \
            || log "ray down failed (see below); ending the user's processes by pid instead"
    fi
    # 2. Our sshds, by pid: the worker's namespace goes with its unshare (--kill-child), with every process in it.
    if pid=$(sshd_pid); then
        kill "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null
    fi
    if pid=$(worker_pid); then
        kill -9 "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
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
    # 6. What this script created outside its folder (its network namespace), then its folder.
    [ -f "$WORK/created-netns" ] && ip netns del "$NETNS" 2>/dev/null
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
# Its folder is one this script made (root's, marked) — never a folder another user planted under the prefix.
for old in "$WORK_PREFIX"*; do
    [ -d "$old" ] && [ ! -L "$old" ] && [ -f "$old/.made-by-test-cluster" ] && [ "$(stat -c %u "$old")" = 0 ] \
        || continue
    log "leftovers of an earlier run in $old: cleaning them first"
    ( WORK=$old; CONFIG=$old/cluster-local.yaml; teardown ) || true
done
if ours; then
    log "leftovers of an earlier run (its user): cleaning them first"
    ( WORK=$(mktemp -d "${WORK_PREFIX}XXXXXXXX"); CONFIG=configs/cluster-local.yaml; teardown ) || true
fi
WORK=$(mktemp -d "${WORK_PREFIX}XXXXXXXX")
touch "$WORK/.made-by-test-cluster"
mkdir -p "$WORK/local-tmp"
# The cluster config names the ssh key in this folder and the repository by its absolute path.
CONFIG="$WORK/cluster-local.yaml"
sed -e "s#/tmp/taskdiv-cluster-test#$WORK#g" -e "s#\"~/taskdiv\": \"\.\"#\"~/taskdiv\": \"$REPO\"#" \
    "$REPO/configs/cluster-local.yaml" > "$CONFIG"
grep -q -F "$WORK/id_ed25519" "$CONFIG" && grep -q -F "\"~/taskdiv\": \"$REPO\"" "$CONFIG" \
    || { log "could not write $CONFIG from configs/cluster-local.yaml"; exit 1; }
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
# The network namespace: loopback only. Everything below runs in it.
if ip netns list | grep -q -w "$NETNS"; then log "a network namespace $NETNS exists already"; exit 2; fi
ip netns add "$NETNS" && touch "$WORK/created-netns"
ip -n "$NETNS" link set lo up
# The remote python (Debian's /usr/bin/python3.11) must match the minor version of the reused dependencies.
host_sp=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
minor='import sys; print(sys.version_info[:2])'
[ "$(/usr/bin/python3.11 -c "$minor")" = "$("$PY" -c "$minor")" ] \
    || { log "/usr/bin/python3.11 and $PY differ in their minor version"; exit 2; }

# Ports: the cluster's are fixed; fail clearly if another program holds one.
busy=$($NSX "$PY" - $RAY_PORTS <<'EOF'
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

# The worker node's home: a folder of its own, mounted over the user's home inside the worker's namespaces. The
# head's autoscaler reaches it with the launcher's key (from the head, so from 127.0.0.1).
WORKER_HOME="$WORK/worker-home"
install -d -m 755 -o "$CLUSTER_USER" -g "$CLUSTER_USER" "$WORKER_HOME"
install -d -m 700 -o "$CLUSTER_USER" -g "$CLUSTER_USER" "$WORKER_HOME/.ssh"
cp "$HEAD_HOME/.ssh/authorized_keys" "$WORKER_HOME/.ssh/authorized_keys"
cp "$HEAD_HOME/.host-site-packages" "$WORKER_HOME/"
for f in .bashrc .profile; do [ -f "$HEAD_HOME/$f" ] && cp "$HEAD_HOME/$f" "$WORKER_HOME/"; done
chown -R "$CLUSTER_USER:$CLUSTER_USER" "$WORKER_HOME"
chmod 600 "$WORKER_HOME/.ssh/authorized_keys"

# Our sshds: the head's on 127.0.0.1:28022, the worker's on 127.0.0.2:22.
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
sed -e "s/^ListenAddress 127.0.0.1$/ListenAddress $WORKER_IP/" -e "s/^Port $SSH_PORT$/Port $WORKER_SSH_PORT/" \
    "$WORK/sshd_config" > "$WORK/sshd_worker_config"
/usr/sbin/sshd -t -f "$WORK/sshd_config"
/usr/sbin/sshd -t -f "$WORK/sshd_worker_config"
$NSX /usr/sbin/sshd -D -f "$WORK/sshd_config" -E "$WORK/sshd.log" &
echo $! > "$WORK/sshd.pid"
# The worker node: in new mount and pid namespaces (its processes die with the unshare, --kill-child), the user's
# home replaced by the worker's folder and /dev/shm by a tmpfs of its own, then its sshd.
cat > "$WORK/worker-node.sh" <<WORKER
#!/bin/sh
set -e
mount --make-rprivate /
mount --bind "$WORKER_HOME" "$HEAD_HOME"
mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm
exec /usr/sbin/sshd -D -f "$WORK/sshd_worker_config" -E "$WORK/sshd-worker.log"
WORKER
chmod 700 "$WORK/worker-node.sh"
$NSX unshare --mount --pid --fork --mount-proc --kill-child=SIGKILL "$WORK/worker-node.sh" &
echo $! > "$WORK/worker.pid"
for node in "127.0.0.1 $SSH_PORT" "$WORKER_IP $WORKER_SSH_PORT"; do
    read -r ip port <<< "$node"
    ssh_ok=""
    for _ in $(seq 40); do
        if $NSX ssh -q -i "$WORK/id_ed25519" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
               -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 "$CLUSTER_USER@$ip" true 2> /dev/null; then
            ssh_ok=1; break
        fi
        sleep 0.25
    done
    [ -n "$ssh_ok" ] || { log "cannot ssh to $CLUSTER_USER@$ip:$port"; tail -20 "$WORK"/sshd*.log >&2; exit 1; }
done
echo "user, keys and sshds on 127.0.0.1:$SSH_PORT and $WORKER_IP:$WORKER_SSH_PORT: $(since "$start") s" >> "$WORK/times.txt"
log "sshd (pid $(cat "$WORK/sshd.pid")) on 127.0.0.1:$SSH_PORT, worker node (pid $(cat "$WORK/worker.pid")) on $WORKER_IP:$WORKER_SSH_PORT"

# The test. RAY_TMPDIR/TMPDIR keep the ray CLI's local state (cluster-$CLUSTER_NAME.state, its config cache) and
# pytest's temp files in our folder.
unset RAY_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH
export TASKDIV_CLUSTER_TEST=1 TASKDIV_SSH_PORT="$SSH_PORT" TASKDIV_CLUSTER_USER="$CLUSTER_USER"
export TASKDIV_CLUSTER_DIR="$WORK" TASKDIV_CLUSTER_CONFIG="$CONFIG" TASKDIV_SSHD_PID="$(cat "$WORK/sshd.pid")" TASKDIV_WORKER_HOME="$WORKER_HOME"
export RAY_TMPDIR="$WORK/local-tmp" TMPDIR="$WORK/local-tmp"
cd "$REPO"
set +e
$NSX "$PY" -m pytest -m cluster tests/test_cluster.py -v -s -p no:cacheprovider "$@"
rc=$?
set -e
exit "$rc"
