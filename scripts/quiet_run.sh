#!/bin/bash
# Time something on a shared development machine: run "$@" in its own session while every OTHER
# python process on the machine (a benchmark grid, other tests) is kept stopped (SIGSTOP, re-applied
# every second, so newly started ones stop too); continue them all afterwards. The figures marked
# "quiet" in docs/performance.md were taken this way. Launch it detached so that it outlives the
# shell that starts it:
#   nohup setsid scripts/quiet_run.sh python benchmarks/bench_contention.py > out.txt 2>&1 &
# Each scan is one `ps` call (a scan that spawned a process per python process cost the timed run
# a burst of CPU every second). Only for a machine you own: it pauses everyone's python processes.
setsid "$@" &
child=$!
sleep 0.2
mysid=$(ps -o sid= -p $child | tr -d ' ')
selfsid=$(ps -o sid= -p $$ | tr -d ' ')
stopped=$(mktemp)
while kill -0 $child 2>/dev/null; do
  pids=$(ps -eo pid=,sid=,stat=,comm= | awk -v a="$mysid" -v b="$selfsid" \
    '$4 ~ /^python/ && $2 != a && $2 != b && $3 !~ /^[TZ]/ {print $1}')
  if [ -n "$pids" ]; then kill -STOP $pids 2>/dev/null; echo $pids | tr ' ' '\n' >> $stopped; fi
  sleep 1
done
wait $child; rc=$?
[ -s $stopped ] && kill -CONT $(sort -u $stopped) 2>/dev/null
rm -f $stopped
exit $rc
