#!/usr/bin/env bash
# Prepares this machine for the live Docker tests (conductor-docker / live crate).
#
# What it sets up, idempotently (safe to run again and again, also with CI=true on a fresh Debian machine as root):
#   1. Debian packages: busybox-static, openssh-server, openssh-client, python3, python3-venv (+ procps, iproute2),
#      and hcloud-cli (Hetzner's command-line tool, for the emulator fidelity test).
#   2. A local image conductor-test-mc:latest made with `docker import` from a busybox root file system; its default
#      command answers Minecraft Server List Ping on TCP $PORT (default 25565), players.online read from
#      /data/players (a test sets it with `docker exec`), and writes into /data. Rebuilt only when its content hash changes.
#   3. Under the state dir ($CONDUCTOR_TEST_DIR, default /tmp/conductor-live-test): an ed25519 client key, one host
#      key per simulated node, and one sshd per node on 127.0.0.2 to 127.0.0.6 (port 22, or 2200+last octet when 22
#      is taken), key-only root login, plus a known_hosts file and nodes.tsv (address TAB port). Tests that stop or
#      freeze a node's sshd own one node each (127.0.0.5: live/tests/docker.rs, 127.0.0.6: tests/live.rs), so that
#      tests running in parallel never lose a node they did not expect to lose.
#
# Usage:
#   prepare-live-tests.sh [prepare]        everything above (default)
#   prepare-live-tests.sh stop-node ADDR   kill that node's sshd and every session it forked (simulates node loss)
#   prepare-live-tests.sh start-node ADDR  start that node's sshd again (same port, same host key)
#   prepare-live-tests.sh freeze-node ADDR SIGSTOP that node's sshd and sessions (a hung node); thaw-node: SIGCONT
#   prepare-live-tests.sh status           one line per node
#   prepare-live-tests.sh teardown         stop all node sshds (keys and image are kept)
set -euo pipefail

STATE_DIR="${CONDUCTOR_TEST_DIR:-/tmp/conductor-live-test}"
NODE_ADDRS=(127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6)
IMAGE="conductor-test-mc:latest"
HASH_LABEL="conductor.test.hash"
SSHD=/usr/sbin/sshd

log() { echo "prepare-live-tests: $*" >&2; }
die() {
    echo "prepare-live-tests: ERROR: $*" >&2
    exit 1
}

valid_addr() {
    local a
    for a in "${NODE_ADDRS[@]}"; do [[ "$1" == "$a" ]] && return 0; done
    return 1
}

ensure_packages() {
    local missing=() pkg
    for pkg in busybox-static openssh-server openssh-client python3 python3-venv procps iproute2 hcloud-cli; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Some images ship without package lists; update once before installing.
    apt-get update -qq >/dev/null
    # policy-rc.d keeps the package's own sshd (0.0.0.0:22) from starting, it would take port 22 on all addresses.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        ((created_policy)) && rm -f "$policy"
        die "apt-get install ${missing[*]} failed"
    }
    ((created_policy)) && rm -f "$policy"
    return 0
}

ensure_docker() {
    command -v docker >/dev/null || die "docker CLI not found (Docker Engine must be installed)"
    local i
    for i in $(seq 1 30); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "Docker daemon not reachable at /var/run/docker.sock"
}

busybox_path() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        [[ -x "$b" ]] && file_is_static "$b" && { echo "$b"; return 0; }
    done
    die "static busybox not found (busybox-static)"
}

file_is_static() {
    # A dynamic busybox would need the host's libc inside the image; busybox-static's binary has no interpreter.
    ! grep -q "ld-linux" <(head -c 4096 "$1" | tr -c '[:print:]' '\n')
}

start_script() {
    cat <<'EOF'
#!/bin/sh
# Stand-in for a Minecraft server: answers Server List Ping on $PORT (one /slp.sh per connection), writes into
# /data, exits on SIGTERM.
PORT="${PORT:-25565}"
mkdir -p /data
date >>/data/started
echo "listening on ${PORT}" >>/data/log
busybox nc -ll -p "${PORT}" -e /slp.sh &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
wait "$child"
EOF
}

slp_script() {
    cat <<'EOF'
#!/bin/sh
# One Server List Ping exchange on stdin/stdout (the socket, from `nc -ll -e`): read the handshake and the status
# request, write a status response whose players.online is the number in /data/players (digits only; 0 when the
# file is absent or holds no digits), then answer an optional ping (09 01 + 8 bytes) with the same bytes.
PLAYERS_FILE="${PLAYERS_FILE:-/data/players}"
byte() { dd bs=1 count=1 2>/dev/null | od -An -tu1 | tr -d ' \n'; }
varint() {
    v=$1
    out=""
    while :; do
        b=$((v & 127))
        v=$((v >> 7))
        [ "$v" -ne 0 ] && b=$((b | 128))
        out="$out\\$(printf '%03o' "$b")"
        [ "$v" -eq 0 ] && break
    done
    printf "$out"
}
b0=$(byte)
[ -n "$b0" ] || exit 0
# 0xFE starts a legacy ping, which this stand-in does not speak.
[ "$b0" -eq 254 ] && exit 0
len=$b0
if [ "$b0" -ge 128 ]; then
    b1=$(byte)
    { [ -n "$b1" ] && [ "$b1" -lt 128 ]; } || exit 0
    len=$(((b0 & 127) | (b1 << 7)))
fi
# The handshake's body, then the status request (01 00).
dd bs=1 count="$len" 2>/dev/null >/dev/null
dd bs=1 count=2 2>/dev/null >/dev/null
online=$(head -c 16 "$PLAYERS_FILE" 2>/dev/null | tr -cd 0-9 | head -c 9)
online=$((${online:-0} + 0))
json="{\"version\":{\"name\":\"conductor-test\",\"protocol\":-1},\"players\":{\"max\":20,\"online\":$online},\"description\":{\"text\":\"conductor test server\"}}"
n=${#json}
# Frame: length (packet id + string length + JSON), packet id 0x00, the JSON string.
varint $((1 + $(varint "$n" | wc -c) + n))
printf '\000'
varint "$n"
printf '%s' "$json"
tmp=$(mktemp)
timeout 2 dd bs=1 count=10 of="$tmp" 2>/dev/null
if [ "$(wc -c <"$tmp")" -eq 10 ] && [ "$(od -An -tx1 -N2 "$tmp" | tr -d ' \n')" = "0901" ]; then
    cat "$tmp"
fi
rm -f "$tmp"
EOF
}

ensure_image() {
    local bb hash current tmp
    bb=$(busybox_path)
    hash=$({
        echo "image-v2"
        sha256sum "$bb" | cut -d' ' -f1
        start_script
        slp_script
    } | sha256sum | cut -c1-16)
    current=$(docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$IMAGE" 2>/dev/null || true)
    if [[ "$current" == "$hash" ]]; then
        return 0
    fi
    log "building $IMAGE ($hash)"
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    mkdir -p "$tmp/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,data,proc,sys,dev}
    chmod 1777 "$tmp/rootfs/tmp"
    cp "$bb" "$tmp/rootfs/bin/busybox"
    local applet
    for applet in $("$bb" --list); do
        [[ "$applet" == busybox ]] && continue
        ln -sf /bin/busybox "$tmp/rootfs/bin/$applet"
    done
    start_script >"$tmp/rootfs/start.sh"
    slp_script >"$tmp/rootfs/slp.sh"
    chmod 755 "$tmp/rootfs/start.sh" "$tmp/rootfs/slp.sh"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
    tar -C "$tmp/rootfs" --numeric-owner -cf - . | docker import \
        --change 'CMD ["/bin/sh", "/start.sh"]' \
        --change 'ENV PORT=25565' \
        --change 'EXPOSE 25565/tcp' \
        --change "LABEL $HASH_LABEL=$hash" \
        - "$IMAGE" >/dev/null
}

node_dir() { echo "$STATE_DIR/nodes/$1"; }

node_pid() {
    # Prints the pid of the node's running sshd listener, or nothing.
    local pidfile pid
    pidfile="$(node_dir "$1")/sshd.pid"
    [[ -f "$pidfile" ]] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    # A killed daemon can linger as a zombie when nothing reaps it; that counts as stopped.
    if kill -0 "$pid" 2>/dev/null && grep -q sshd "/proc/$pid/comm" 2>/dev/null &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
        echo "$pid"
    fi
}

port_free() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

ensure_keys() {
    mkdir -p "$STATE_DIR"
    chmod 700 "$STATE_DIR"
    if [[ ! -f "$STATE_DIR/id_ed25519" ]]; then
        ssh-keygen -q -t ed25519 -N "" -C conductor-live-test -f "$STATE_DIR/id_ed25519"
    fi
    cp "$STATE_DIR/id_ed25519.pub" "$STATE_DIR/authorized_keys"
    chmod 600 "$STATE_DIR/authorized_keys"
    local addr dir
    for addr in "${NODE_ADDRS[@]}"; do
        dir=$(node_dir "$addr")
        mkdir -p "$dir"
        if [[ ! -f "$dir/ssh_host_ed25519_key" ]]; then
            ssh-keygen -q -t ed25519 -N "" -C "conductor-node-$addr" -f "$dir/ssh_host_ed25519_key"
        fi
    done
}

choose_port() {
    # Keeps the port of a running node; otherwise 22 when free on that address, else 2200 + last octet.
    local addr=$1 dir port
    dir=$(node_dir "$addr")
    if [[ -n "$(node_pid "$addr")" && -f "$dir/port" ]]; then
        cat "$dir/port"
        return 0
    fi
    for port in 22 $((2200 + ${addr##*.})); do
        if port_free "$addr" "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free ssh port for node $addr (tried 22 and $((2200 + ${addr##*.})))"
}

write_sshd_config() {
    local addr=$1 port=$2 dir
    dir=$(node_dir "$addr")
    echo "$port" >"$dir/port"
    cat >"$dir/sshd_config" <<EOF
# Generated by prepare-live-tests.sh for simulated node $addr.
ListenAddress $addr:$port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $STATE_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
StreamLocalBindUnlink yes
MaxSessions 64
MaxStartups 64:30:128
ClientAliveInterval 5
ClientAliveCountMax 3
LogLevel ERROR
EOF
}

start_node() {
    local addr=$1 dir port i
    dir=$(node_dir "$addr")
    [[ -f "$dir/sshd_config" ]] || die "node $addr is not prepared; run $0 prepare first"
    if [[ -n "$(node_pid "$addr")" ]]; then
        return 0
    fi
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    rm -f "$dir/sshd.pid"
    "$SSHD" -t -f "$dir/sshd_config" || die "sshd config for $addr is invalid"
    "$SSHD" -f "$dir/sshd_config" -E "$dir/sshd.log"
    port=$(cat "$dir/port")
    for i in $(seq 1 50); do
        if [[ -n "$(node_pid "$addr")" ]] && ! port_free "$addr" "$port"; then
            return 0
        fi
        sleep 0.1
    done
    die "sshd for $addr did not start; see $dir/sshd.log"
}

descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        descendants "$child"
        echo "$child"
    done
}

stop_node() {
    # Kills the listener and every session process it forked: open connections (and so forwarded sockets) die too,
    # as they would when the host goes away.
    local addr=$1 pid pids
    pid=$(node_pid "$addr")
    [[ -n "$pid" ]] || return 0
    pids=$(descendants "$pid")
    kill -KILL "$pid" 2>/dev/null || true
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$(node_dir "$addr")/sshd.pid"
}

signal_node() {
    # SIGSTOP/SIGCONT on the listener and its sessions: a node that hangs instead of going away.
    local addr=$1 sig=$2 pid p
    pid=$(node_pid "$addr")
    [[ -n "$pid" ]] || return 0
    for p in "$pid" $(descendants "$pid"); do kill "-$sig" "$p" 2>/dev/null || true; done
}

write_known_hosts() {
    local addr port key tmp
    tmp="$STATE_DIR/known_hosts.tmp"
    : >"$tmp"
    for addr in "${NODE_ADDRS[@]}"; do
        port=$(cat "$(node_dir "$addr")/port")
        key=$(cut -d' ' -f1,2 "$(node_dir "$addr")/ssh_host_ed25519_key.pub")
        if [[ "$port" == 22 ]]; then
            echo "$addr $key" >>"$tmp"
        else
            echo "[$addr]:$port $key" >>"$tmp"
        fi
    done
    mv "$tmp" "$STATE_DIR/known_hosts"
    : >"$STATE_DIR/nodes.tsv.tmp"
    for addr in "${NODE_ADDRS[@]}"; do
        printf '%s\t%s\n' "$addr" "$(cat "$(node_dir "$addr")/port")" >>"$STATE_DIR/nodes.tsv.tmp"
    done
    mv "$STATE_DIR/nodes.tsv.tmp" "$STATE_DIR/nodes.tsv"
}

check_login() {
    local addr=$1 port
    port=$(cat "$(node_dir "$addr")/port")
    ssh -F /dev/null -i "$STATE_DIR/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$STATE_DIR/known_hosts" -o ConnectTimeout=5 \
        -p "$port" "root@$addr" true || die "ssh login to $addr:$port failed; see $(node_dir "$addr")/sshd.log"
}

status() {
    local addr pid
    for addr in "${NODE_ADDRS[@]}"; do
        pid=$(node_pid "$addr")
        echo "$addr port=$(cat "$(node_dir "$addr")/port" 2>/dev/null || echo '?') sshd=${pid:-stopped}"
    done
}

prepare() {
    [[ $EUID -eq 0 ]] || die "must run as root (sshd for root login, docker, apt-get)"
    ensure_packages
    ensure_docker
    ensure_image
    ensure_keys
    local addr ports=()
    for addr in "${NODE_ADDRS[@]}"; do
        write_sshd_config "$addr" "$(choose_port "$addr")"
        start_node "$addr"
        ports+=("$addr:$(cat "$(node_dir "$addr")/port")")
    done
    write_known_hosts
    for addr in "${NODE_ADDRS[@]}"; do check_login "$addr"; done
    echo "live test env ready: image $IMAGE, state $STATE_DIR, sshd nodes ${ports[*]}"
}

cmd="${1:-prepare}"
case "$cmd" in
prepare) prepare ;;
stop-node | start-node | freeze-node | thaw-node)
    [[ $# -eq 2 ]] && valid_addr "$2" || die "usage: $0 $cmd {${NODE_ADDRS[*]}}"
    case "$cmd" in
    stop-node) stop_node "$2" ;;
    start-node) start_node "$2" ;;
    freeze-node) signal_node "$2" STOP ;;
    thaw-node) signal_node "$2" CONT ;;
    esac
    ;;
status) status ;;
teardown)
    for addr in "${NODE_ADDRS[@]}"; do stop_node "$addr"; done
    echo "live test sshd nodes stopped (state kept in $STATE_DIR)"
    ;;
*) die "unknown command $cmd (prepare | stop-node ADDR | start-node ADDR | freeze-node ADDR | thaw-node ADDR | status | teardown)" ;;
esac
