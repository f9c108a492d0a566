#!/bin/bash
# Time something on a shared development machine: run "$@" in its own session while every OTHER
# python process on the machine (a benchmark grid, other tests) is kept stopped (SIGSTOP, re-applied
# every second, so newly started ones stop too); continue them all afterwards. The figures marked
# "quiet" in docs/performance.md were taken this way. Launch it detached so that it outlives the
# shell that starts it:
#   nohup setsid scripts/quiet_run.sh python benchmarks/bench_contention.py > out.txt 2>&1 &
# Only for a machine you own: it pauses everyone's python processes for the whole run.
setsid "$@" &
child=$!
sleep 0.2
mysid=$(ps -o sid= -p $child | tr -d ' ')
selfsid=$(ps -o sid= -p $$ | tr -d ' ')
stopped=$(mktemp)
while kill -0 $child 2>/dev/null; do
  for pid in $(pgrep -x python3; pgrep -f '/bin/python'); do
    [ "$pid" = "$$" ] && continue
    comm=$(ps -o comm= -p $pid 2>/dev/null)
    case "$comm" in python*) ;; *) continue;; esac
    sid=$(ps -o sid= -p $pid 2>/dev/null | tr -d ' ')
    [ -z "$sid" ] && continue
    [ "$sid" = "$mysid" ] && continue
    [ "$sid" = "$selfsid" ] && continue
    st=$(ps -o stat= -p $pid | cut -c1)
    if [ "$st" != "T" ] && [ "$st" != "Z" ]; then kill -STOP $pid 2>/dev/null && echo $pid >> $stopped; fi
  done
  sleep 1
done
wait $child; rc=$?
for pid in $(sort -u $stopped); do kill -CONT $pid 2>/dev/null; done
rm -f $stopped
exit $rc
