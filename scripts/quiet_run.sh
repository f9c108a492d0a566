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
  # a process is spared when its session is the run's or ours, or when the run is among its
  # ancestors (a child that made its own session, e.g. the tests' zygote in tests/forkserver.py)
  pids=$(ps -eo pid=,ppid=,sid=,stat=,comm= | awk -v a="$mysid" -v b="$selfsid" -v c="$child" '
    { pp[$1] = $2; sid[$1] = $3; st[$1] = $4; cm[$1] = $5 }
    END { for (p in pp) {
      if (cm[p] !~ /^python/ || sid[p] == a || sid[p] == b || st[p] ~ /^[TZ]/) continue
      q = p; mine = 0
      for (n = 0; n < 64 && q > 1; n++) { if (q == c) { mine = 1; break }; q = pp[q] }
      if (!mine) print p } }')
  if [ -n "$pids" ]; then kill -STOP $pids 2>/dev/null; echo $pids | tr ' ' '\n' >> $stopped; fi
  sleep 1
done
wait $child; rc=$?
[ -s $stopped ] && kill -CONT $(sort -u $stopped) 2>/dev/null
rm -f $stopped
exit $rc
