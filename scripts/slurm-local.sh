#!/usr/bin/env bash
# A one-node SLURM on this machine, from Debian's packages, to run the workflow's SLURM profile
# for real (tests/test_slurm.py, README "SLURM on one machine"). Needs root and apt (Debian 12
# or later); everything is on localhost: munged, a MariaDB and slurmdbd for the accounting
# database that sacct reads, slurmctld and slurmd.
#
#     scripts/slurm-local.sh start     # installs what is missing, starts what is not running
#     scripts/slurm-local.sh status
#     scripts/slurm-local.sh stop      # stops the daemons it started; the state stays
#
# The daemons' state, logs and database live in $VGGREPRO_SLURM_DIR (/var/lib/vggrepro-slurm).
# The configuration goes where Debian's tools read it, /etc/slurm/slurm.conf and slurmdbd.conf,
# written only where no file is there or the one there is this script's.
set -euo pipefail

STATE=${VGGREPRO_SLURM_DIR:-/var/lib/vggrepro-slurm}
MY=$STATE/mysql  # MariaDB runs as mysql: its data, socket, pid file and log, that user's
DB_PORT=${VGGREPRO_SLURM_DB_PORT:-3307}  # not 3306: a MariaDB of the machine's own may hold it
CLUSTER=vggrepro
NODE=localhost
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# Written by vggrepro's scripts/slurm-local.sh"
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
WAIT_S=${VGGREPRO_SLURM_WAIT_S:-120}
CHANGED=  # the configuration files this run rewrote

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

running() {  # pid file -> true if its process is alive
    [[ -s $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null
}

wait_for() {  # description, command...: polls until the command succeeds, WAIT_S at most
    local what=$1; shift
    local t=0
    until "$@" >/dev/null 2>&1; do
        ((t++ < WAIT_S)) || die "$what: not ready after ${WAIT_S} s (logs: $STATE/log/)"
        sleep 1
    done
}

install_missing() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    # Debian starts a package's service on install; these daemons are started below, with this
    # script's configuration, so keep the packages' own from starting (the standard way).
    local policy=/usr/sbin/policy-rc.d made=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" \
        || { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } \
        || { [[ -z $made ]] || rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
    [[ -z $made ]] || rm -f "$policy"
}

write_conf() {  # path, mode, content: refuses to replace a file this script did not write
    local path=$1 mode=$2 content=$3
    if [[ -e $path ]] && ! grep -qF "$MARK" "$path"; then
        die "$path exists and is not this script's; move it away to use the local cluster"
    fi
    [[ -e $path && $(cat "$path") == "$content" ]] && return 0
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path.tmp" && chmod "$mode" "$path.tmp" && mv "$path.tmp" "$path"
    CHANGED+=" $path"
}

configure() {
    mkdir -p "$STATE"/{ctld,d,log,mysql}
    local cpus mem
    # What slurmd finds on this machine: a node configured with more is set invalid and never runs a job.
    cpus=$(slurmd -C | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
    mem=$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
    [[ -n $cpus && -n $mem ]] || die "slurmd -C did not report this machine's CPUs and memory"
    [[ -s $STATE/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass")
    write_conf "$CONF" 644 "$MARK (a one-node cluster on localhost)
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: containers often have none that slurmd may use. Jobs are tracked by their
# process tree; scancel still signals every process of a job.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
JobCompType=jobcomp/none
# sacct shows the job's comment: the plugin writes the rule there (rule_<name>)
AccountingStoreFlags=job_comment
# seconds a finished job stays in slurmctld (squeue); sacct keeps it for good
MinJobAge=300
# seconds between scancel's SIGTERM and its SIGKILL: a training stage saves its resume point
KillWait=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"
    write_conf "$DBD_CONF" 600 "$MARK
AuthType=auth/munge
DbdHost=$NODE
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/db.pass")
StorageLoc=slurm_acct_db"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # a munged is serving
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key; }
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$STATE/munged.pid"  # started here: `stop` ends it
    wait_for munged sh -c 'munge -n | unmunge'
}

db() { mariadb --no-defaults --socket="$MY/mysqld.sock" -u root "$@"; }

start_db() {
    running "$MY/mysqld.pid" && return 0
    chown mysql:mysql "$MY"
    if [[ ! -d $MY/data/mysql ]]; then
        runuser -u mysql -- mariadb-install-db --no-defaults --datadir="$MY/data" --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"
    fi
    setsid runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$MY/data" --skip-name-resolve \
        --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$MY/mysqld.sock" \
        --pid-file="$MY/mysqld.pid" --log-error="$MY/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for MariaDB db -e 'SELECT 1'
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
           ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/db.pass")';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_daemon() {  # name, pid file, command...: started unless running, then detached
    local name=$1 pid=$2; shift 2
    running "$pid" && return 0
    "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 || die "$name did not start (log: $STATE/log/$name.out, $name.log)"
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root: it installs packages and starts system daemons"
    install_missing
    configure
    start_munge
    start_db
    start_daemon slurmdbd "$STATE/slurmdbd.pid" slurmdbd
    wait_for slurmdbd sacctmgr -n list cluster
    # The cluster's record (and its root account) must exist before slurmctld registers
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    # Daemons already running read a rewritten configuration now (slurmdbd's: on a restart)
    if running "$STATE/slurmctld.pid" && [[ $CHANGED == *"$CONF"* ]]; then scontrol reconfigure; fi
    start_daemon slurmctld "$STATE/slurmctld.pid" slurmctld
    wait_for slurmctld scontrol ping
    start_daemon slurmd "$STATE/slurmd.pid" slurmd -N "$NODE"
    wait_for "node $NODE idle" sh -c "sinfo -h -n $NODE -o %t | grep -Eqx 'idle|mix|alloc'"
    say "up: $(sinfo -h -o '%P %D %t %c CPUs %m MB' | tr '\n' ' ')(SLURM $(sinfo -V | cut -d' ' -f2))"
}

stop_pid() {  # name, pid file: SIGTERM, then waits for the process to go
    local name=$1 pid=$2 t=0
    running "$pid" || { rm -f "$pid"; return 0; }
    kill "$(cat "$pid")"
    while running "$pid"; do
        ((t++ < WAIT_S)) || die "$name (pid $(cat "$pid")) did not stop"
        sleep 1
    done
    rm -f "$pid"
    say "stopped $name"
}

stop() {
    stop_pid slurmd "$STATE/slurmd.pid"
    stop_pid slurmctld "$STATE/slurmctld.pid"
    stop_pid slurmdbd "$STATE/slurmdbd.pid"
    stop_pid mariadbd "$MY/mysqld.pid"
    stop_pid munged "$STATE/munged.pid"  # only where this script started it
}

status() {
    local d
    local d pid
    for d in slurmd slurmctld slurmdbd mysql/mysqld munged; do
        pid=$STATE/$d.pid
        if running "$pid"; then echo "${d#*/}: running (pid $(cat "$pid"))"; else echo "${d#*/}: not running (from here)"; fi
    done
    sinfo 2>/dev/null || true
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
