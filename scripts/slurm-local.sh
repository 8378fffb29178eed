#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm executor's tests and
# benchmark (Debian, as root). Idempotent: installs slurm-wlm and munge if they
# are missing, writes /etc/slurm/slurm.conf for this machine's CPUs and memory,
# starts munged, slurmctld and slurmd unless they run already, and waits until
# `sinfo` shows the node idle. Exits non-zero with the reason if it cannot.
#
# No slurmdbd and no accounting: scalepipe's executor must not need `sacct`.
# Short intervals (scheduling, KillWait) so test jobs start within a second:
# batch_sched_delay=0 lets the controller start the next job on its next
# one-second cycle instead of batching submissions for 3 s (the default);
# MinJobAge keeps finished jobs in `scontrol show job` for 10 minutes.
set -euo pipefail

die() {
  echo "slurm-local: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurmctld/slurmd/munged missing and no apt-get to install them"
  echo "slurm-local: installing slurm-wlm and munge" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y slurm-wlm munge >/dev/null; } ||
    die "apt-get install slurm-wlm munge failed"
fi

# munge: a key, its directories, the daemon (it refuses to run as root).
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown munge:munge /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null 2>&1 || die "munged started but munge/unmunge fail"
fi

# slurm.conf for this node: slurmd -C prints its CPUs and memory.
host=$(hostname -s)
node=$(slurmd -C | head -n 1) # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
[ -n "$cpus" ] && [ -n "$mem" ] || die "cannot read CPUs and memory from \`slurmd -C\`: $node"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(
  cat <<EOF
# Written by scalepipe's scripts/slurm-local.sh: a one-node test cluster.
ClusterName=scalepipe
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_min_interval=0,default_queue_depth=10000,batch_sched_delay=0
MinJobAge=600
KillWait=2
OverTimeLimit=0
InactiveLimit=0
ReturnToService=2
MaxArraySize=100001
MaxJobCount=200000
MessageTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]; then
  printf '%s\n' "$conf" >/etc/slurm/slurm.conf
  changed=1
fi

running() { pgrep -x "$1" >/dev/null; }
if [ "$changed" = 1 ]; then
  # A new configuration: restart what runs with the old one.
  for d in slurmd slurmctld; do
    if running "$d"; then
      kill "$(cat /run/$d.pid 2>/dev/null || pgrep -x "$d")" 2>/dev/null || true
      for _ in $(seq 50); do running "$d" || break; sleep 0.1; done
    fi
  done
fi
running slurmctld || slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
running slurmd || slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"

# Wait for the node to be idle (or already running jobs).
state=""
for _ in $(seq 300); do
  state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle | mixed | allocated) break ;;
    down* | drain* | fail*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
case "$state" in
  idle | mixed | allocated) echo "slurm-local: node $host $state ($cpus CPUs, $mem MB)" >&2 ;;
  *) die "node $host is not idle after 60 s (state: '${state:-unknown}'); see /var/log/slurm/slurmctld.log and slurmd.log" ;;
esac
